"""Envelope encryption and decryption throughput, as a ratio of raw AES-256-GCM on one core.

What is measured (the enforcer's own code, nothing re-implemented):

- ``encrypt single``: :func:`enforcer.crypto.envelope.encrypt_chunks` without ``part_size`` (one
  DARE 2.0 stream under the OEK: objects up to the multipart threshold);
- ``encrypt parts``: the same with ``part_size`` (one stream per part under
  ``derive_part_key(oek, n)``: the multipart path);
- ``decrypt single`` / ``decrypt parts``: :func:`enforcer.crypto.envelope.decrypt_chunks` of those
  bodies.

The plaintext arrives in 1 MiB chunks (``--chunk``), as ``S3Storage.read_chunks`` hands it over;
ciphertext for decryption is cut at 1 MiB too, so packages straddle chunk boundaries as they do
when a body is read from S3.

Baseline, measured in the same process and interleaved round by round with ours: the same total
bytes through ``cryptography``'s ``AESGCM.encrypt`` (``.decrypt``) over 64 KiB buffers (a DARE
package's payload), with a fixed nonce and 4 bytes of associated data: the cost of the AEAD alone
on one core, which no implementation of the format in Python can beat. The ratio ours/baseline is
what the target (default 0.8) applies to. Times are the thread's CPU time by default (``--clock
cpu``), so time lost to other processes on a shared machine counts against neither side;
``--clock wall`` uses wall time instead.

Each side's figure is its best round (``--stat best``, as ``timeit`` advises: interference from
other work only ever adds time) or its median round (``--stat median``); the spread column shows
the ours/baseline ratio of every round, so the noise is visible either way.

Exit status: 0, or 1 with ``--check`` when a ratio is below the target.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from enforcer.crypto import envelope

MiB = 1024 * 1024
HEADER = 16
PAYLOAD = 64 * 1024
TAG = 16


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="Defaults finish in well under a minute on one core.",
    )
    parser.add_argument("--size", type=int, default=256, help="MiB per run (default 256)")
    parser.add_argument("--chunk", type=int, default=1024, help="KiB per input chunk (1024)")
    parser.add_argument(
        "--part-size", type=int, default=64, help="MiB per part (64, as S3Settings)"
    )
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    parser.add_argument("--stat", choices=("best", "median"), default="best")
    parser.add_argument("--target", type=float, default=0.8, help="minimum ratio (default 0.8)")
    parser.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU")
    parser.add_argument("--check", action="store_true", help="exit 1 if a ratio is below target")
    return parser.parse_args(argv)


# ---------------------------------------------------------------- workloads


@dataclass
class Workload:
    """Everything a run needs, prepared once outside the timed region."""

    size: int
    chunk: bytes
    part_size: int
    key: bytes = field(default_factory=lambda: os.urandom(32))
    bodies: dict[str, list[bytes]] = field(default_factory=dict)

    @property
    def chunks(self) -> int:
        return self.size // len(self.chunk)

    def plaintext(self) -> Iterator[bytes]:
        chunk = self.chunk
        return (chunk for _ in range(self.chunks))

    def prepare_bodies(self) -> None:
        """The ciphertext of both layouts, cut at the input chunk size like an S3 read.

        Each body is one contiguous buffer; the chunks are views into it, so the baseline can
        run the raw AEAD over exactly the same bytes in memory (same cache behaviour).
        """
        for name, part_size in (("single", None), ("parts", self.part_size)):
            body = b"".join(
                envelope.encrypt_chunks(self.key, self.plaintext(), part_size=part_size)
            )
            view, step = memoryview(body), len(self.chunk)
            self.bodies[name] = [view[i : i + step] for i in range(0, len(body), step)]


def baseline_encrypt(work: Workload) -> None:
    aead = AESGCM(work.key)
    nonce, aad = os.urandom(12), b"\x20\x00\xff\xff"
    view = memoryview(work.chunk)
    offsets = range(0, len(view), PAYLOAD)
    for _ in range(work.chunks):
        for offset in offsets:
            aead.encrypt(nonce, view[offset : offset + PAYLOAD], aad)


def baseline_decrypt_factory(work: Workload) -> Callable[[Workload], None]:
    """Raw AESGCM.decrypt of every package of the single-stream body, in place in its buffer."""
    aead = AESGCM(work.key)
    body = work.bodies["single"][0].obj  # the contiguous buffer the chunks are views of
    plan = []
    for seq, start in enumerate(range(0, len(body), HEADER + PAYLOAD + TAG)):
        header = body[start : start + HEADER]
        last = int.from_bytes(header[12:16], "little") ^ seq
        plan.append((header[4:12] + last.to_bytes(4, "little"), header[:4], start + HEADER))

    def run(work: Workload) -> None:
        view = memoryview(body)
        for nonce, aad, start in plan:
            aead.decrypt(nonce, view[start : start + PAYLOAD + TAG], aad)

    return run


def ours_encrypt(part_size: int | None) -> Callable[[Workload], None]:
    def run(work: Workload) -> None:
        for _ in envelope.encrypt_chunks(work.key, work.plaintext(), part_size=part_size):
            pass

    return run


def ours_decrypt(name: str, part_size: int | None) -> Callable[[Workload], None]:
    def run(work: Workload) -> None:
        for _ in envelope.decrypt_chunks(work.key, iter(work.bodies[name]), part_size=part_size):
            pass

    return run


# ---------------------------------------------------------------- measurement


def timed(clock: Callable[[], float], run: Callable[[Workload], None], work: Workload) -> float:
    gc.collect()
    start = clock()
    run(work)
    return clock() - start


def measure(args: argparse.Namespace, work: Workload) -> list[tuple[str, list[float], list[float]]]:
    """Per row: (name, baseline seconds per round, ours seconds per round), interleaved."""
    clock = time.thread_time if args.clock == "cpu" else time.perf_counter
    base_dec = baseline_decrypt_factory(work)
    rows = [
        ("encrypt single", baseline_encrypt, ours_encrypt(None)),
        ("encrypt parts", baseline_encrypt, ours_encrypt(work.part_size)),
        ("decrypt single", base_dec, ours_decrypt("single", None)),
        ("decrypt parts", base_dec, ours_decrypt("parts", work.part_size)),
    ]
    results: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name, _, _ in rows}
    for _name, base, ours in rows:  # warm-up: first touches, allocator growth
        base(work)
        ours(work)
    for _ in range(args.rounds):
        for name, base, ours in rows:
            results[name][0].append(timed(clock, base, work))
            results[name][1].append(timed(clock, ours, work))
    return [(name, *results[name]) for name, _, _ in rows]


def report(
    args: argparse.Namespace, work: Workload, rows: list[tuple[str, list[float], list[float]]]
) -> bool:
    mib = work.size / MiB
    print(
        f"envelope throughput: {mib:.0f} MiB per run in {len(work.chunk) // 1024} KiB chunks, "
        f"parts of {work.part_size // MiB} MiB, {args.rounds} rounds, "
        f"{args.stat} of {args.clock} time, python {sys.version.split()[0]}"
    )
    header = (
        f"{'path':<15} {'baseline MiB/s':>15} {'ours MiB/s':>12} {'ratio':>6} "
        f"{'per-round ratios':>21} {'target':>6}  result"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for name, base, ours in rows:
        pick = min if args.stat == "best" else statistics.median
        base_rate = mib / pick(base)
        ours_rate = mib / pick(ours)
        ratios = sorted(b / o for b, o in zip(base, ours, strict=True))  # per-round ratio
        ratio = ours_rate / base_rate
        passed = ratio >= args.target
        ok = ok and passed
        spread = f"{statistics.median(ratios):.2f} ({ratios[0]:.2f}-{ratios[-1]:.2f})"
        print(
            f"{name:<15} {base_rate:>15.0f} {ours_rate:>12.0f} {ratio:>6.2f} {spread:>21} "
            f"{args.target:>6.2f}  {'PASS' if passed else 'FAIL'}"
        )
    print(
        f"ratio = {args.stat} ours MiB/s / {args.stat} baseline MiB/s; "
        "per-round ratios: median (min-max)"
    )
    return ok


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    chunk = os.urandom(args.chunk * 1024)
    work = Workload(size=args.size * MiB, chunk=chunk, part_size=args.part_size * MiB)
    if work.chunks < 1:
        raise SystemExit("--size must be at least one --chunk")
    work.size = work.chunks * len(chunk)
    work.prepare_bodies()
    ok = report(args, work, measure(args, work))
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
