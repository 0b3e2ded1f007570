"""``enforcer status``: where the enforcer's consumer group stands — lag per partition, members,
and whether the service is paused (asked from its readiness endpoint: ``--health-url``, or the
local ``ENFORCER_HEALTH_PORT`` when run inside the service's pod).

Prints a table (or ``--json``); exits 1 when ``--max-lag N`` is given and the total lag is above
it, so a probe or a runbook can use it as a check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from dataclasses import replace
from typing import Any

import httpx

from enforcer.cli.args import EXIT_FAILURE, EXIT_OK, add_command, non_negative_int
from enforcer.config import Settings
from enforcer.kafka.backfill import as_json as as_json_text
from enforcer.kafka.backfill import read_progress, render, summarize
from enforcer.kafka.lag import read_group_status, render_table
from enforcer.logs import NOISY_LOGGERS, muted


def add_status_command(commands: Any) -> None:
    status = add_command(
        commands,
        "status",
        "consumer group lag per partition, members, paused (exit 1 over --max-lag)",
        description="Where the enforcer's consumer group stands: lag per partition, members, "
        "and whether the service is paused by an outage (asked from its readiness endpoint). "
        "With --max-lag N it exits 1 when the total lag is above N, for probes and runbooks.",
        examples=["enforcer status",
                  "enforcer status --json --max-lag 10000 | jq '{total_lag, paused}'",
                  "enforcer status --health-url http://sse-enforcer.sse-enforcer:8080",
                  "enforcer status --backfill 3f2a9c0d1e4b5a67 --json"],
    )  # fmt: skip
    status.add_argument("--json", action="store_true", help="print JSON instead of a table")
    status.add_argument(
        "--max-lag", type=non_negative_int, metavar="N", help="exit 1 when the total lag is above N"
    )
    status.add_argument(
        "--health-url",
        metavar="URL",
        help="the enforcer's health endpoint, to tell whether it is paused (default: "
        "http://127.0.0.1:$ENFORCER_HEALTH_PORT when that is set, as inside its pod)",
    )
    status.add_argument("--group", help="the consumer group (default: ENFORCER_KAFKA__GROUP_ID)")
    status.add_argument(
        "--backfill",
        nargs="?",
        const="",
        metavar="ID",
        help="instead: the progress of distributed backfills (scan --split --enqueue) across "
        "the group, or of the one with this id: ranges done, objects classified, rate, ETA",
    )


def run_status(settings: Settings, args: argparse.Namespace) -> int:
    if args.backfill is not None:
        return show_backfills(settings, args.backfill, as_json=args.json)
    with muted(*NOISY_LOGGERS):  # Kafka unreachable: the one error line says so
        group = args.group or settings.kafka.group_id
        status = asyncio.run(read_group_status(settings.kafka.options(), group))
    health_url = args.health_url or (
        f"http://127.0.0.1:{settings.health_port}" if settings.health_port else None
    )
    if health_url:
        paused, health = asyncio.run(ask_readiness(health_url))
        status = replace(status, paused=paused, health=health)
    print(json.dumps(status.as_dict(), indent=2) if args.json else render_table(status))
    if args.max_lag is not None and status.total_lag > args.max_lag:
        return EXIT_FAILURE
    return EXIT_OK


def show_backfills(settings: Settings, backfill_id: str, *, as_json: bool) -> int:
    """The committed progress of every backfill (or of ``backfill_id``); exit 1 when an id
    was asked for and no range of it has reported yet."""
    with muted(*NOISY_LOGGERS):
        progress = asyncio.run(read_progress(settings.kafka.options()))
    statuses = [s for s in summarize(progress.values())
                if not backfill_id or s.backfill_id == backfill_id]  # fmt: skip
    print(as_json_text(statuses) if as_json else render(statuses))
    return EXIT_FAILURE if backfill_id and not statuses else EXIT_OK


async def ask_readiness(base_url: str) -> tuple[bool | None, str]:
    """``/readyz`` of a running enforcer: (paused?, its reason); (None, why) if unreachable."""
    url = base_url.rstrip("/") + "/readyz"
    try:
        async with httpx.AsyncClient(timeout=3.0) as client:
            answer = (await client.get(url)).json()
    except (httpx.HTTPError, ValueError) as exc:
        return None, f"unknown: {url}: {type(exc).__name__}"
    reason = str(answer.get("reason", ""))
    if isinstance(answer.get("paused"), bool):  # an explicit flag wins over the wording
        return bool(answer["paused"]), reason
    return reason.startswith("paused"), reason
