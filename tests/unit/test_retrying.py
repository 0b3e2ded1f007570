import pytest

from enforcer.errors import PreconditionFailed, StorageRejected, StorageUnavailable
from enforcer.retrying import RetryPolicy, retry_transient


def failing(*errors: Exception) -> tuple[list[int], object]:
    """A call that raises ``errors`` one per attempt, then returns "ok"; and its call log."""
    calls: list[int] = []
    pending = list(errors)

    async def call() -> str:
        calls.append(1)
        if pending:
            raise pending.pop(0)
        return "ok"

    return calls, call


async def test_first_attempt_success_is_one_attempt() -> None:
    calls, call = failing()
    assert await retry_transient(call) == ("ok", 1)  # type: ignore[arg-type]
    assert len(calls) == 1


async def test_transient_failures_are_retried_and_counted() -> None:
    calls, call = failing(StorageUnavailable("a"), StorageUnavailable("b"))
    assert await retry_transient(call) == ("ok", 3)  # type: ignore[arg-type]
    assert len(calls) == 3  # the first failure is not run twice


async def test_gives_up_after_the_attempts() -> None:
    calls, call = failing(*[StorageUnavailable(str(i)) for i in range(5)])
    with pytest.raises(StorageUnavailable, match="2"):
        await retry_transient(call, RetryPolicy(attempts=3))  # type: ignore[arg-type]
    assert len(calls) == 3


@pytest.mark.parametrize("error", [StorageRejected("no"), PreconditionFailed("changed")])
async def test_permanent_errors_and_preconditions_are_not_retried(error: Exception) -> None:
    calls, call = failing(error)
    with pytest.raises(type(error)):
        await retry_transient(call)  # type: ignore[arg-type]
    assert len(calls) == 1


async def test_one_attempt_means_no_retry() -> None:
    calls, call = failing(StorageUnavailable("a"))
    with pytest.raises(StorageUnavailable):
        await retry_transient(call, RetryPolicy(attempts=1))  # type: ignore[arg-type]
    assert len(calls) == 1
