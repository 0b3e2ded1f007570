"""The functional core stays free of clients: importing it loads no I/O library, and the
package tree has no import cycle between its rooms."""

import pkgutil
import subprocess
import sys

import enforcer.core
import enforcer.crypto

#: Every module of the pure packages, plus the records (models and their pure builders).
CORE = [
    *(f"{pkg.__name__}.{m.name}" for pkg in (enforcer.core, enforcer.crypto)
      for m in pkgutil.iter_modules(pkg.__path__)),
    "enforcer.records",
    "enforcer.forward.messages",  # the forwarder's translation of SQS bodies
]  # fmt: skip
CLIENTS = ["aiokafka", "aiobotocore", "botocore", "httpx", "aiohttp"]


def test_core_lists_the_pure_modules() -> None:
    assert {"enforcer.core.events", "enforcer.core.verdict", "enforcer.crypto.dare"} <= set(CORE)


def test_core_imports_no_client_library() -> None:
    probe = (
        f"import sys; import {', '.join(CORE)}; "
        f"print(sorted(m for m in {CLIENTS!r} if m in sys.modules))"
    )
    result = subprocess.run(  # noqa: S603 - our interpreter, fixed code
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
