import asyncio

from enforcer.engine.outage import OutageGate


async def test_opens_after_threshold_and_closes_on_success() -> None:
    gate = OutageGate(threshold=3, probe_interval=0.01)
    gate.record_failure("x")
    gate.record_failure("x")
    assert not gate.is_open
    gate.record_failure("x")
    assert gate.is_open
    gate.record_success()
    assert not gate.is_open


async def test_without_a_probe_one_waiter_is_let_through_as_the_probe() -> None:
    gate = OutageGate(threshold=1, probe_interval=0.01)
    gate.record_failure("x")
    waiters = [asyncio.create_task(gate.wait_until_closed()) for _ in range(5)]
    done, pending = await asyncio.wait(waiters, timeout=0.1, return_when=asyncio.FIRST_COMPLETED)
    assert len(done) == 1  # exactly one probe at a time
    gate.record_success()
    await asyncio.wait_for(asyncio.gather(*pending), timeout=1)


async def test_probe_function_closes_the_gate() -> None:
    answers = [False, False, True]

    async def probe() -> bool:
        return answers.pop(0)

    gate = OutageGate(threshold=1, probe_interval=0.01, probe=probe)
    gate.record_failure("x")
    await asyncio.wait_for(gate.wait_until_closed(), timeout=1)
    assert not gate.is_open and answers == []


async def test_failing_probe_keeps_it_open() -> None:
    async def probe() -> bool:
        raise ConnectionError

    gate = OutageGate(threshold=1, probe_interval=0.01, probe=probe)
    gate.record_failure("x")
    waiter = asyncio.create_task(gate.wait_until_closed())
    await asyncio.sleep(0.05)
    assert gate.is_open and not waiter.done()
    gate.record_success()
    await asyncio.wait_for(waiter, timeout=1)
