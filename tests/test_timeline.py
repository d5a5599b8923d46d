"""Where a hop's time went (issue 15 item 1): the station's signed steps next to central's
times, summed over the route."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from station.timeline import Stopwatch
from train_builder.timeline import STEPS, hop_breakdown, timeline_lines
from trains.receipt import Phase


def at(seconds: float) -> str:
    return f"2026-01-01T00:00:{seconds:06.3f}+00:00"


def hop(index: int, queued: str, claimed: str, finished: str | None) -> dict:
    return {
        "index": index,
        "station": f"s{index}",
        "status": "done",
        "queued_at": queued,
        "claimed_at": claimed,
        "finished_at": finished,
    }


class Signed:
    """The part of a receipt's predicate the timeline reads."""

    def __init__(self, seconds: dict[str, float]) -> None:
        self.timeline = [Phase(step=s, seconds=v) for s, v in seconds.items()]  # type: ignore[arg-type]


def test_a_hop_splits_into_queue_station_steps_and_the_rest():
    h = hop(
        0, "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00.5+00:00", "2026-01-01T00:00:03+00:00"
    )
    parts = hop_breakdown(h, Signed({"verify": 0.1, "container": 2.0, "seal": 0.1}))  # type: ignore[arg-type]
    assert parts["queued"] == pytest.approx(0.5)
    assert parts["container"] == 2.0
    assert parts["claim_and_delivery"] == pytest.approx(2.5 - 2.2)


def test_the_route_summary_sums_each_step_with_its_share():
    hops = [
        hop(
            i, "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:01+00:00", "2026-01-01T00:00:03+00:00"
        )
        for i in range(2)
    ]
    signed = {i: Signed({"container": 1.5, "seal": 0.5}) for i in range(2)}
    lines = timeline_lines({"hops": hops}, signed)  # type: ignore[arg-type]
    assert lines[0].startswith("  hop 0 s0")
    total = {line.split()[0]: line.split()[1] for line in lines[3:]}
    assert total == {
        "queued": "2.000s",
        "container": "3.000s",
        "seal": "1.000s",
        "claim_and_delivery": "0.000s",  # claimed to finished: exactly the station's steps
    }


def test_a_hop_without_a_receipt_shows_only_centrals_times():
    h = hop(3, at(0), at(2), None)
    assert hop_breakdown(h, None) == {"queued": 2.0}


def test_the_steps_are_a_fixed_vocabulary_a_station_cannot_extend():
    assert STEPS[0] == "verify" and STEPS[-1] == "seal"
    with pytest.raises(ValidationError):
        Phase(step="patient 42 was here", seconds=1.0)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Phase(step="seal", seconds=-1.0)


def test_the_stopwatch_laps_in_order_and_takes_steps_timed_elsewhere():
    watch = Stopwatch()
    watch.lap("verify")
    watch.add("container", 1.25)
    watch.restart()
    phases = watch.last("seal")
    assert [p.step for p in phases] == ["verify", "container", "seal"]
    assert phases[1].seconds == 1.25 and all(p.seconds >= 0 for p in phases)
