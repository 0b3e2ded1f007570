"""The supervisor's pure parts: how many workers a pod may run, and one /metrics out of many."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from enforcer.supervisor import cgroup_cpu_quota, merge_metrics, usable_cpus


def cgroup(tmp_path: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    return tmp_path


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu.max": "150000 100000\n"}, 1.5),
        ({"cpu.max": "50000 100000\n"}, 0.5),
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "400000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 4.0),
        ({"cpu.max": "garbage"}, None),
        ({}, None),
    ],
)
def test_the_cgroup_quota_is_read_in_cores(
    tmp_path: Path, files: dict[str, str], quota: float | None
) -> None:
    assert cgroup_cpu_quota(cgroup(tmp_path, files)) == quota


def test_workers_default_to_the_cores_the_quota_and_affinity_allow(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    assert usable_cpus(cgroup(tmp_path / "none", {})) == cores
    assert usable_cpus(cgroup(tmp_path / "half", {"cpu.max": "50000 100000"})) == 1
    assert usable_cpus(cgroup(tmp_path / "big", {"cpu.max": "6400000 100000"})) == cores
    one_and_half = usable_cpus(cgroup(tmp_path / "1.5", {"cpu.max": "150000 100000"}))
    assert one_and_half == min(cores, 2)  # rounded up: two workers share 1.5 cores


WORKER = """# HELP enforcer_events_total Object events handled
# TYPE enforcer_events_total counter
enforcer_events_total{{action="none",mode="enforce",verdict="compliant"}} {events}
# HELP enforcer_paused 1 while paused
# TYPE enforcer_paused gauge
enforcer_paused {paused}
# HELP enforcer_step_duration_seconds Duration of each step
# TYPE enforcer_step_duration_seconds histogram
enforcer_step_duration_seconds_bucket{{le="0.005",step="head"}} {events}
enforcer_step_duration_seconds_bucket{{le="+Inf",step="head"}} {events}
enforcer_step_duration_seconds_count{{step="head"}} {events}
enforcer_step_duration_seconds_sum{{step="head"}} 0.5
"""


def test_the_workers_metrics_become_one_exposition_labelled_by_worker() -> None:
    merged = merge_metrics({0: WORKER.format(events=3, paused=0),
                            1: WORKER.format(events=5, paused=1)}).decode()  # fmt: skip
    families = {f.name: f for f in text_string_to_metric_families(merged)}
    events = {s.labels["worker"]: s.value for s in families["enforcer_events"].samples}
    assert events == {"0": 3.0, "1": 5.0}
    assert families["enforcer_events"].type == "counter"
    paused = {s.labels["worker"]: s.value for s in families["enforcer_paused"].samples}
    assert paused == {"0": 0.0, "1": 1.0}
    histogram = families["enforcer_step_duration_seconds"]
    assert histogram.type == "histogram"
    counts = [s for s in histogram.samples if s.name.endswith("_count")]
    assert {(s.labels["worker"], s.labels["step"], s.value) for s in counts} == {
        ("0", "head", 3.0), ("1", "head", 5.0)
    }  # fmt: skip
    assert merged.count("# TYPE enforcer_events_total counter") == 1  # one family, not two


def test_no_worker_answering_is_an_empty_exposition() -> None:
    assert merge_metrics({}) == b""


def test_the_supervisor_counts_its_running_workers_from_its_first_answer() -> None:
    merged = merge_metrics({}, workers=2).decode()  # no worker serves its metrics yet
    [family] = text_string_to_metric_families(merged)
    assert (family.name, family.type, family.samples[0].value) == ("enforcer_workers", "gauge", 2)
