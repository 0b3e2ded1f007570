"""Progress display (enforcer.cli.progress): the rendered line, terminal vs log cadence."""

from __future__ import annotations

import io

from enforcer.cli.progress import Progress, render


def test_render_with_and_without_a_total() -> None:
    line = render(2500, 10.0, 10000, label="scan", bar=True)
    assert "2,500/10,000 objects" in line and "250/s" in line and "ETA 0:00:30" in line
    assert "[######" in line
    assert "ETA -" in render(5, 1.0, None, label="scan", bar=False)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_lines_every_interval_when_not_a_terminal() -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress(stream, interval=10.0, interactive=False, clock=clock)
    for second in range(1, 31):
        clock.now = float(second)
        progress.update(second * 100)
    progress.close()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 4 and "\r" not in stream.getvalue()  # at 10, 20, 30 s and the close
    assert lines[0].startswith("scan  1,000 objects  100/s")


def test_a_terminal_line_is_redrawn_in_place() -> None:
    stream, clock = io.StringIO(), FakeClock()
    progress = Progress(stream, total=10, interactive=True, clock=clock)
    clock.now = 1.0
    progress.update(5)
    progress.close()
    assert stream.getvalue().count("\r\x1b[2K") == 2 and stream.getvalue().endswith("\n")
