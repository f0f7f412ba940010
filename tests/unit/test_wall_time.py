"""Wall time and compute time kept apart: trials of one pack (or of parallel workers) overlap,
so the wall-clock time in trials is the union of their spans, not the sum of their durations."""

from __future__ import annotations

from datetime import datetime, timedelta

from sweeper.report.collect import wall_seconds

T0 = datetime(2026, 12, 5, 12, 0, 0)


def span(start_s: float, end_s: float) -> tuple[datetime, datetime]:
    return T0 + timedelta(seconds=start_s), T0 + timedelta(seconds=end_s)


def test_a_pack_of_eight_overlapping_trials_is_its_own_wall_time() -> None:
    pack = [span(0, 80 + i / 10) for i in range(8)]  # eight members told one after another
    assert abs(wall_seconds(pack) - 80.7) < 1e-9
    assert sum((e - s).total_seconds() for s, e in pack) > 640  # what the summary used to show


def test_gaps_and_nested_spans() -> None:
    assert wall_seconds([span(0, 10), span(2, 5), span(20, 30), span(25, 40), (None, None)]) == 30.0
    assert wall_seconds([]) == 0.0
