from aiokafka import TopicPartition

from enforcer.kafka.offsets import OffsetTracker

TP = TopicPartition("t", 0)
TP2 = TopicPartition("t", 1)


def test_commits_only_the_contiguous_done_prefix() -> None:
    t = OffsetTracker()
    for o in (10, 11, 12):
        t.started(TP, o)
    t.finished(TP, 11)
    t.finished(TP, 12)
    assert t.committable() == {}  # 10 still running: nothing after it is safe
    t.finished(TP, 10)
    assert t.committable() == {TP: 13}
    t.mark_committed({TP: 13})
    assert t.committable() == {}


def test_gaps_in_offsets_do_not_stall_commits() -> None:
    t = OffsetTracker()
    t.started(TP, 5)
    t.started(TP, 9)  # 6..8 were transaction markers or compacted away
    t.finished(TP, 5)
    assert t.committable() == {TP: 9}
    t.finished(TP, 9)
    assert t.committable() == {TP: 10}


def test_partitions_are_independent_and_forgettable() -> None:
    t = OffsetTracker()
    t.started(TP, 0)
    t.started(TP2, 0)
    t.finished(TP2, 0)
    assert t.committable() == {TP2: 1}
    assert t.in_flight() == 1 and t.in_flight({TP2}) == 0
    t.forget({TP2})
    assert t.committable() == {}
    t.finished(TP, 0)
    assert t.committable() == {TP: 1}
