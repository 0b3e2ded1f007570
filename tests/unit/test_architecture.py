"""The functional core stays free of clients (HOUSE_STYLE): importing it loads no I/O library."""

import subprocess
import sys

CORE = ["enforcer.events", "enforcer.keyref", "enforcer.policy", "enforcer.verdict",
        "enforcer.records", "enforcer.crypto.dare", "enforcer.crypto.chain",
        "enforcer.crypto.envelope"]  # fmt: skip
CLIENTS = ["aiokafka", "aiobotocore", "botocore", "httpx", "aiohttp"]


def test_core_imports_no_client_library() -> None:
    probe = (
        f"import sys; import {', '.join(CORE)}; "
        f"print(sorted(m for m in {CLIENTS!r} if m in sys.modules))"
    )
    result = subprocess.run(  # noqa: S603 - our interpreter, fixed code
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
