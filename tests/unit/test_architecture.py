"""The engine and the functional core stay free of clients: importing them loads no I/O library.

The import contract in pyproject.toml (``make lint`` runs ``lint-imports``) keeps the floors in
order statically; this test catches what a static reading cannot, such as a lazy import."""

import pkgutil
import subprocess
import sys

import enforcer.core
import enforcer.crypto
import enforcer.engine

#: Every module of the engine and the pure packages, and the forwarder's pure translation.
INNER = [
    *(f"{pkg.__name__}.{m.name}" for pkg in (enforcer.core, enforcer.crypto, enforcer.engine)
      for m in pkgutil.iter_modules(pkg.__path__)),
    "enforcer.forward.messages",  # the forwarder's translation of SQS bodies
]  # fmt: skip
CLIENTS = ["aiokafka", "aiobotocore", "botocore", "httpx", "aiohttp"]


def test_the_list_holds_the_engine_and_the_core() -> None:
    wanted = {"enforcer.core.events", "enforcer.crypto.dare", "enforcer.engine.guard"}
    assert wanted <= set(INNER)


def test_the_engine_and_the_core_load_no_client_library() -> None:
    probe = (
        f"import sys; import {', '.join(INNER)}; "
        f"print(sorted(m for m in {CLIENTS!r} if m in sys.modules))"
    )
    result = subprocess.run(  # noqa: S603 - our interpreter, fixed code
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
