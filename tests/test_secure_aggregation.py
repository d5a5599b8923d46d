"""Secure aggregation, proved by attack: a curious station on the way and a curious
aggregator open what they receive and try to recover one site's values; a statistical test
that masked values look uniform in the ring; a tampered masked vector is refused.

Every attack has a control run with the stations' masks switched off
(``masking=False``): there the same attack recovers the site's values, so these tests can
fail (and did, before station.secure_masking masked anything).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from station import secure_masking
from tests.secure_route import SecureRun, make_route, run_secure_route, secure_copy
from trains.errors import StateInvalid
from trains.keys import Identity
from trains.manifest import Hop
from trains.runtime.core import TrainCodeError
from trains.runtime.masking import (
    SECURE_FILE,
    RingOverflow,
    SecureParts,
    decode_sum,
    encode,
    expand,
)

REFERENCE = Path(__file__).resolve().parents[1] / "trains" / "reference"


def sites(train: str) -> list[pd.DataFrame]:
    return [pd.read_csv(p) for p in sorted((REFERENCE / train / "sample").glob("*.csv"))]


def attempts(run: SecureRun, station: str, parts: SecureParts, round_: int) -> list[SecureParts]:
    """Everything ``station`` can try on a masked vector: read it as it is, and take off
    every mask it can derive itself (its own pinned key against each stop's, this train,
    this round, as its own position or any other)."""
    me = run.identities[station].sealing
    stops = run.manifest.route.stops
    tries = [parts]
    for mine in range(len(stops)):
        for other in range(len(stops)):
            if mine != other:
                key = secure_masking.pair_key(me, run.manifest, round_, mine, other)
                tries += [secure_masking.mask(parts, key, -1), secure_masking.mask(parts, key, +1)]
    return tries


def recovered(tries: list[SecureParts], part: str, contributions: int) -> list[float]:
    """What the attacker reads as the value of ``part`` wherever it decodes into range."""
    found = []
    for parts in tries:
        with contextlib.suppress(RingOverflow):
            found.append(float(decode_sum(parts.parts[part][1], contributions)[0]))
    return found


@pytest.mark.parametrize("masking", [True, False], ids=["masked", "control-unmasked"])
def test_a_curious_station_on_the_way_cannot_read_the_first_sites_sums(tmp_path, masking):
    frames = sites("linreg")
    train = secure_copy(REFERENCE / "linreg", tmp_path / "t")
    run = run_secure_route(train, frames, masking=masking)
    received = run.received[1]  # hop 1: site-1 opens what site-0 sealed to it
    state = json.loads(received["state.json"])
    assert set(state) == {"columns", "stations"}  # nothing of site-0's data in the clear
    parts = SecureParts.loads(received[SECURE_FILE])
    found = recovered(attempts(run, "site-1", parts, 0), "n", parts.contributions)
    if masking:
        assert found == []  # nothing it can compute lands in range, let alone on site-0's n
    else:
        assert len(frames[0]) in found  # the control: without masks the attack works


def test_what_a_station_on_the_way_sees_does_not_depend_on_the_first_sites_data(tmp_path):
    """Two routes that differ only in site-0's rows: site-1's state.json is byte for byte
    the same, and its secure.json is uniform either way (below)."""
    train = secure_copy(REFERENCE / "linreg", tmp_path / "t")
    frames = sites("linreg")
    other = [frames[0].sample(frac=0.5, random_state=1), *frames[1:]]
    a, b = run_secure_route(train, frames), run_secure_route(train, other)
    assert a.received[1]["state.json"] == b.received[1]["state.json"]
    assert a.state is not None and b.state is not None
    assert a.state["n"] != b.state["n"]  # the release point does see the difference


@pytest.mark.parametrize("masking", [True, False], ids=["masked", "control-unmasked"])
def test_a_curious_aggregator_cannot_read_one_sites_partial(tmp_path, masking):
    frames = sites("fedavg")
    train = secure_copy(REFERENCE / "fedavg", tmp_path / "t")
    run = run_secure_route(train, frames, rounds=3, parallel=True, masking=masking)
    aggregate = 3 + 4  # round 1's aggregate hop: n stops + 1 per round
    received = run.received[aggregate]
    partial = json.loads(received["0/state.json"])
    assert "n" not in partial and "evaluation" not in partial and "weights" not in partial
    parts = SecureParts.loads(received[f"0/{SECURE_FILE}"])
    found = recovered(attempts(run, "aggregator", parts, 1), "n", parts.contributions)
    n_train = len(frames[0]) - round(0.25 * len(frames[0]))
    if masking:
        assert found == []
    else:
        assert n_train in found
    # what it may learn: the sum over the round, where the pairwise masks cancel
    total = SecureParts.loads(received[f"1/{SECURE_FILE}"])
    assert total.parts["n"][0] == ()


def test_when_the_first_stop_is_skipped_the_next_one_masks(tmp_path):
    """Stop 0 refuses and is skipped: stop 1 is the first to contribute, so its station
    masks (with the key it shares with the last stop), and stop 2 still reads nothing."""
    frames = sites("linreg")
    frames = [frames[0], frames[1], frames[2], frames[0].sample(frac=0.5, random_state=3)]
    train = secure_copy(REFERENCE / "linreg", tmp_path / "t")
    run = run_secure_route(train, frames, skip=frozenset({0}))
    parts = SecureParts.loads(run.received[2][SECURE_FILE])
    assert parts.masked_by == 1
    assert recovered(attempts(run, "site-2", parts, 0), "n", parts.contributions) == []
    assert run.state is not None
    assert run.state["n"] == sum(len(f) for f in frames[1:])


def test_only_the_first_and_last_stop_derive_the_sequential_mask():
    researcher = Identity.generate("researcher")
    manifest, ids = make_route(["state.json", SECURE_FILE], 3, 1, False, researcher)
    first = secure_masking.pair_key(ids["site-0"].sealing, manifest, 0, 0, 2)
    last = secure_masking.pair_key(ids["site-2"].sealing, manifest, 0, 2, 0)
    middle = {
        secure_masking.pair_key(ids["site-1"].sealing, manifest, 0, a, b)
        for a in range(3)
        for b in range(3)
        if a != b
    }
    assert first == last and first not in middle
    assert secure_masking.pair_key(ids["site-0"].sealing, manifest, 1, 0, 2) != first  # per round


def test_masked_values_are_uniform_in_the_ring():
    """Small counts masked by the first stop's station under 40 fresh trains: the top and
    bottom byte of every element is uniform (chi-square over 256 cells); unmasked counts
    would put everything in one cell."""
    researcher = Identity.generate("researcher")
    clear = SecureParts({"counts": ((500,), encode(np.arange(500) % 7))}, 1)
    top, bottom = [], []
    for _ in range(40):
        manifest, ids = make_route(["state.json", SECURE_FILE], 3, 1, False, researcher)
        key = secure_masking.pair_key(ids["site-0"].sealing, manifest, 0, 0, 2)
        ring = secure_masking.mask(clear, key, +1).parts["counts"][1]
        top.append(ring.hi >> np.uint64(56))
        bottom.append(ring.lo & np.uint64(0xFF))
    for sample in (np.concatenate(top), np.concatenate(bottom)):
        observed = np.bincount(sample.astype(np.int64), minlength=256)
        assert stats.chisquare(observed).pvalue > 1e-6
    unmasked_top = np.bincount((clear.parts["counts"][1].hi >> np.uint64(56)).astype(np.int64))
    assert stats.chisquare(np.pad(unmasked_top, (0, 256 - unmasked_top.size))).pvalue < 1e-6


def flip(name: str, at_hop: int) -> object:
    def tamper(hop: Hop, input_dir: Path) -> None:
        if hop.index == at_hop:
            path = input_dir / name
            raw = json.loads(path.read_text())
            ring = raw["parts"]["n"]["ring"]
            raw["parts"]["n"]["ring"] = ring[:24] + ("0" if ring[24] != "0" else "1") + ring[25:]
            path.write_text(json.dumps(raw))

    return tamper


def test_a_tampered_masked_sum_is_refused_at_the_release_point(tmp_path):
    train = secure_copy(REFERENCE / "linreg", tmp_path / "t")
    with pytest.raises(StateInvalid, match="did not unmask into their range"):
        run_secure_route(train, sites("linreg"), tamper=flip(SECURE_FILE, 2))  # type: ignore[arg-type]


def test_a_tampered_partial_is_refused_at_the_aggregator(tmp_path):
    train = secure_copy(REFERENCE / "fedavg", tmp_path / "t")
    with pytest.raises(StateInvalid, match="did not unmask into their range"):
        run_secure_route(
            train,
            sites("fedavg"),
            rounds=3,
            parallel=True,
            tamper=flip(f"1/{SECURE_FILE}", 3),  # type: ignore[arg-type]
        )


def test_a_small_change_to_the_low_bits_is_not_detectable(tmp_path):
    """The honest limit: a change that keeps the sum in range (here +1 in the last place,
    2^-32) goes through, as a station lying about its own data would. The range check
    catches what a blind tamperer does (any change to the high bits), nothing more."""

    def nudge(hop: Hop, input_dir: Path) -> None:
        if hop.index == 2:
            path = input_dir / SECURE_FILE
            parts = SecureParts.loads(path.read_bytes())
            one = SecureParts({"sum_y": ((), encode(2.0**-32))}, 0).parts["sum_y"][1]
            changed = parts.map(lambda name, ring: ring + one if name == "sum_y" else ring)
            path.write_text(changed.dumps())

    train = secure_copy(REFERENCE / "linreg", tmp_path / "t")
    a = run_secure_route(train, sites("linreg")).state
    b = run_secure_route(train, sites("linreg"), tamper=nudge).state
    assert a is not None and b is not None
    assert a["n"] == b["n"]


def test_a_train_whose_state_is_not_a_sum_is_refused_under_secure(tmp_path):
    """SGD carries a model from stop to stop: not a sum, so it cannot be masked."""
    train = secure_copy(REFERENCE / "sgd", tmp_path / "t")
    with pytest.raises(TrainCodeError, match="not a sum"):
        run_secure_route(train, sites("sgd"), rounds=3)


def test_values_beyond_the_fixed_point_range_are_refused_not_wrapped():
    with pytest.raises(RingOverflow, match="fixed-point range"):
        encode([2.0**48])
    assert decode_sum(encode([-(2.0**48) + 1]), 1)[0] == -(2.0**48) + 1
    with pytest.raises(RingOverflow):
        encode([float("nan")])


def test_the_ring_is_exact_to_the_stated_precision():
    rng = np.random.default_rng(7)
    values = rng.normal(scale=1e6, size=(50, 200))
    total = encode(values[0])
    for row in values[1:]:
        total = total + encode(row)
    mask = expand(b"k" * 32, "x", 200)
    got = decode_sum((total + mask) - mask, 50)
    assert np.abs(got - values.sum(0)).max() <= 50 * 2.0**-33 + 1e-16 * np.abs(values).sum(0).max()


@pytest.mark.parametrize(
    "text",
    [
        b"[]",
        b'{"format": 2, "contributions": 1, "parts": {}}',
        b'{"format": 1, "contributions": -1, "parts": {}}',
        b'{"format": 1, "contributions": 1, "parts": {"a": {"shape": [2], "ring": "00"}}}',
        b'{"format": 1, "contributions": 1, "parts": {"a": {"shape": [99999999999], "ring": ""}}}',
        b'{"format": 1, "contributions": 1, "parts": {"a": 5}}',
    ],
)
def test_the_station_parses_a_secure_file_with_bounds(tmp_path, text):
    (tmp_path / SECURE_FILE).write_bytes(text)
    with pytest.raises(StateInvalid):
        secure_masking._read(tmp_path / SECURE_FILE, "test")


def test_the_station_never_follows_a_planted_link(tmp_path):
    target = tmp_path / "elsewhere"
    target.write_text('{"format": 1, "contributions": 1, "parts": {}}')
    (tmp_path / SECURE_FILE).symlink_to(target)
    with pytest.raises(StateInvalid, match="not a plain file"):
        secure_masking._read(tmp_path / SECURE_FILE, "test")
