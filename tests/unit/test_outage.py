import asyncio
import logging

import pytest
from doubles.time import ManualTime, settle

from enforcer.engine.outage import Blame, OutageGate
from enforcer.engine.outcome import Dependency
from enforcer.errors import (
    AccessDenied,
    CredentialsRejected,
    KeyDisabled,
    KeyMissing,
    KmsNotAuthorized,
    KmsUnavailable,
    StorageRejected,
    StorageUnavailable,
)

STORAGE, KMS = Dependency.STORAGE, Dependency.KMS


async def test_opens_after_threshold_of_one_dependency_and_closes_on_a_real_success() -> None:
    gate = OutageGate(threshold=3, probe_interval=0.01)
    gate.record_failure(STORAGE, StorageUnavailable("x"))
    gate.record_failure(STORAGE, StorageUnavailable("x"))
    assert not gate.is_open
    gate.record_failure(STORAGE, StorageUnavailable("x"))
    assert gate.is_open and gate.describe() == "paused: outage of storage (StorageUnavailable)"
    gate.record_success({KMS})  # proves nothing about the storage
    assert gate.is_open
    gate.record_success({STORAGE, KMS})
    assert not gate.is_open


async def test_a_success_resets_only_its_own_dependency() -> None:
    gate = OutageGate(threshold=2, probe_interval=0.01)
    gate.record_failure(KMS, KmsUnavailable("x"))
    gate.record_success({STORAGE})  # a compliant object: HEAD only
    gate.record_failure(KMS, KmsUnavailable("x"))
    assert gate.is_open


async def test_the_failed_dependency_is_probed_and_a_passing_probe_lets_one_trial_through() -> None:
    probed: asyncio.Queue[str] = asyncio.Queue()
    storage_up = asyncio.Event()

    async def storage_probe() -> None:
        probed.put_nowait("storage")
        if not storage_up.is_set():
            raise StorageUnavailable("down")

    async def kms_probe() -> None:
        probed.put_nowait("kms")

    time = ManualTime()
    probes = {STORAGE: storage_probe, KMS: kms_probe}
    gate = OutageGate(threshold=1, probe_interval=5, probes=probes, sleep=time.sleep)
    gate.record_failure(STORAGE, StorageUnavailable("x"))
    entered: list[int] = []
    trial_began, hold = asyncio.Event(), asyncio.Event()

    async def waiter(i: int) -> None:
        async with gate.admitted():
            entered.append(i)
            trial_began.set()
            await hold.wait()

    tasks = [asyncio.create_task(waiter(i)) for i in range(5)]
    for _ in range(2):  # each probe interval: one probe of the storage, none of the KMS
        await settle()
        time.advance(5)
        assert await asyncio.wait_for(probed.get(), timeout=2) == "storage"
    await settle()
    assert entered == [] and probed.empty()
    storage_up.set()
    time.advance(5)
    await asyncio.wait_for(trial_began.wait(), timeout=2)
    await settle()
    assert len(entered) == 1 and gate.is_open  # half-open: one trial at a time
    gate.record_success({STORAGE})
    hold.set()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=2)
    assert len(entered) == 5 and not gate.is_open


async def test_trials_take_turns_so_an_event_that_keeps_failing_cannot_hold_the_gate() -> None:
    async def kms_answers_us() -> None:  # the enforcer's own KMS access works
        return None

    gate = OutageGate(threshold=1, probe_interval=0.01, probes={KMS: kms_answers_us})
    trials: list[str] = []
    three_refused = asyncio.Event()

    async def handle(name: str, refused: bool) -> None:
        """The handler's loop: one attempt per turn until the event is done."""
        while True:
            async with gate.admitted():
                trials.append(name)
                if trials.count("refused") == 3:
                    three_refused.set()
                if not refused:
                    gate.record_success({STORAGE, KMS})
                    return
                gate.record_failure(KMS, KmsNotAuthorized("kms:NotAuthorized"))
            # no await in between: the handler goes straight back to the gate

    gate.record_failure(KMS, KmsNotAuthorized("kms:NotAuthorized"))  # the refused key's event
    refused = asyncio.create_task(handle("refused", refused=True))
    await asyncio.wait_for(three_refused.wait(), timeout=2)  # it alone has had the trials
    working = asyncio.create_task(handle("working", refused=False))
    await asyncio.wait_for(working, timeout=2)
    refused.cancel()
    await asyncio.gather(refused, return_exceptions=True)
    first = trials.index("working")
    assert first >= 2 and trials[first - 1] == "refused"
    assert trials[:first].count("refused") == first  # until the other event joined the queue


async def test_a_cancellation_that_meets_a_change_of_the_gate_is_not_lost() -> None:
    """A shutdown cancels the handlers waiting at the gate, maybe just as another event changes
    it (Python 3.11's wait_for would return the change and drop the cancellation)."""

    async def down() -> None:
        raise KmsUnavailable("still down")

    for prober in (True, False):
        gate = OutageGate(threshold=1, probe_interval=60, probes={KMS: down})
        gate.record_failure(KMS, KmsUnavailable("down"))
        first = asyncio.create_task(gate.admitted().__aenter__())  # probes, then waits
        waiting = asyncio.create_task(gate.admitted().__aenter__())  # waits for a change
        await settle()
        task = first if prober else waiting
        gate.record_failure(KMS, KmsUnavailable("another event"))  # sets the event...
        task.cancel()  # ...and the shutdown comes before the waiter runs again
        done, _ = await asyncio.wait([task], timeout=1)
        assert done and task.cancelled(), "the cancellation was lost"
        for other in (first, waiting):
            other.cancel()
        await asyncio.gather(first, waiting, return_exceptions=True)


async def test_probes_never_count_as_successes() -> None:
    async def probe() -> None:
        return None

    gate = OutageGate(threshold=1, probe_interval=0.01, probes={STORAGE: probe})
    mark = gate.mark()
    gate.record_failure(STORAGE, StorageUnavailable("x"))
    trial = asyncio.create_task(gate.admitted().__aenter__())
    await asyncio.wait_for(trial, timeout=1)
    assert gate.served_since(mark, STORAGE) == 0 and gate.is_open


async def test_a_trial_that_did_not_use_the_dependency_hands_the_turn_on() -> None:
    gate = OutageGate(threshold=1, probe_interval=0.01)
    gate.record_failure(KMS, KmsUnavailable("x"))
    async with gate.admitted():
        gate.record_success({STORAGE})  # a compliant object needs no KMS
    assert gate.is_open
    async with gate.admitted():
        gate.record_failure(KMS, KmsUnavailable("x"))  # failed trial: back to probing
    assert gate.is_open
    async with gate.admitted():
        gate.record_success({STORAGE, KMS})
    assert not gate.is_open


async def test_refused_credentials_open_at_once_and_say_so() -> None:
    gate = OutageGate(threshold=5, probe_interval=0.01)
    gate.record_failure(STORAGE, CredentialsRejected("InvalidAccessKeyId"))
    assert gate.is_open and gate.describe().startswith("paused: credentials refused by storage")


async def test_logging_is_open_close_and_rate_limited_still_down_lines(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [0.0]
    hundred_probes = asyncio.Event()

    async def probe() -> None:
        now[0] += 1.0  # every probe is one "second" later
        if now[0] >= 100:
            hundred_probes.set()
        raise StorageUnavailable("down")

    gate = OutageGate(
        threshold=1,
        probe_interval=0.001,
        probes={STORAGE: probe},
        log_interval=10,
        clock=lambda: now[0],
    )
    caplog.set_level(logging.INFO, logger="enforcer.engine.outage")
    gate.record_failure(STORAGE, StorageUnavailable("x"))
    waiter = asyncio.create_task(gate.admitted().__aenter__())
    await asyncio.wait_for(hundred_probes.wait(), timeout=5)
    gate.record_success({STORAGE})
    await asyncio.wait_for(waiter, timeout=1)
    lines = [r.getMessage() for r in caplog.records]
    assert sum("pausing consumption" in line for line in lines) == 1
    assert sum("resuming consumption" in line for line in lines) == 1
    assert 8 <= sum(line.startswith("still paused") for line in lines) <= 11


async def test_a_failure_confirmed_by_the_probe_opens_at_once() -> None:
    gate = OutageGate(threshold=3, probe_interval=0.01)
    gate.record_failure(KMS, KmsUnavailable("x"), confirmed=True)
    assert gate.is_open


REFUSED = KmsNotAuthorized("kms:NotAuthorized")


async def test_a_key_the_kms_says_is_missing_or_disabled_is_that_keys_problem() -> None:
    gate = OutageGate(threshold=1, probe_interval=0.01)
    mark = gate.mark()
    assert await gate.blame(KeyMissing("gone", key_name="a"), mark, "a") is Blame.KEY
    assert await gate.blame(KeyDisabled("off", key_name="a"), mark, "a") is Blame.KEY
    assert await gate.blame(StorageRejected("bad"), mark, "a") is Blame.EVENT


async def test_a_refused_key_is_its_own_problem_once_another_event_used_the_kms() -> None:
    gate = OutageGate(threshold=1, probe_interval=0.01)
    mark = gate.mark()
    assert await gate.blame(REFUSED, mark, "a") is Blame.KEY_UNPROVEN  # nothing else yet
    gate.record_success({STORAGE, KMS})  # another key works
    assert await gate.blame(REFUSED, mark, "a") is Blame.KEY
    assert not gate.is_open


async def test_other_keys_refused_too_prove_nothing_and_pause_nothing() -> None:
    """Pausing on a guess would stop the events that could show another key working."""
    gate = OutageGate(threshold=1, probe_interval=0.01)
    for key in ("a", "b", "c"):
        assert await gate.blame(REFUSED, gate.mark(), key) is Blame.KEY_UNPROVEN
    assert not gate.is_open
    mark = gate.mark()
    gate.record_success({STORAGE, KMS})
    assert await gate.blame(REFUSED, mark, "a") is Blame.KEY


async def test_a_pause_for_a_refusal_says_what_the_evidence_was() -> None:
    gate = OutageGate(threshold=3, probe_interval=0.01)
    gate.record_failure(KMS, REFUSED, confirmed=True,
                        detail="key a refused for 900s and no other key used since")  # fmt: skip
    assert gate.describe() == (
        "paused: credentials refused by kms (KmsNotAuthorized: key a refused for 900s and no "
        "other key used since)"
    )


async def test_a_refused_key_while_the_kms_status_call_fails_is_about_us() -> None:
    calls = 0

    async def kms_refuses_us() -> None:
        nonlocal calls
        calls += 1
        raise KmsNotAuthorized("status: 403")

    gate = OutageGate(threshold=1, probe_interval=0.01, probes={KMS: kms_refuses_us})
    outage = await gate.blame(REFUSED, gate.mark(), "a")
    assert isinstance(outage, KmsNotAuthorized) and str(outage) == "status: 403"
    await gate.blame(REFUSED, gate.mark(), "a")
    assert calls == 1, "the status is asked once per key newly refused"


async def test_access_denied_asks_the_storage_probe() -> None:
    refused = CredentialsRejected("ListBuckets: InvalidAccessKeyId")

    async def identity_refused() -> None:
        raise refused

    gate = OutageGate(threshold=1, probe_interval=0.01, probes={STORAGE: identity_refused})
    assert await gate.blame(AccessDenied("x"), gate.mark()) is refused
    fine = OutageGate(threshold=1, probe_interval=0.01)
    assert await fine.blame(AccessDenied("x"), fine.mark()) is Blame.EVENT
