"""KMS adapters behind one port (:class:`Kms`): KES and AWS KMS.

The in-memory fake used by unit tests lives with the tests (``tests/doubles/kms.py``).

The adapters are imported lazily so that importing the port (as :mod:`enforcer.crypto` does)
does not pull httpx or aiobotocore into the functional core.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from enforcer.kms.base import DataKey, KeyInfo, KeyState, Kms, encode_context

if TYPE_CHECKING:
    from enforcer.kms.aws import AwsKms, open_aws_kms
    from enforcer.kms.kes import KesKms

__all__ = [
    "AwsKms",
    "DataKey",
    "KesKms",
    "KeyInfo",
    "KeyState",
    "Kms",
    "encode_context",
    "open_aws_kms",
]

_LAZY = {"AwsKms": "aws", "open_aws_kms": "aws", "KesKms": "kes"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"enforcer.kms.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'enforcer.kms' has no attribute {name!r}")
