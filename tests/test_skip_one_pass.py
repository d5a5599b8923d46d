"""The skip path opens its input and seals it again in one pass (statepipe.open_and_reseal):
no plaintext file, no second read for the digests. The checks it made after writing the
archive still hold after the one pass: a state that must be the empty state (a skipped
first hop with no initial state) but holds a file, small or large, is never passed on and
leaves no sealed file behind. Real central app in-process, real keys and seals."""

from __future__ import annotations

import pytest

from station import passage
from station.queue import HopRecord, HopState
from tests import test_central_protocol as protocol
from tests.test_central_protocol import run_hop, submit
from tests.test_skip_commitment import state
from tests.test_station_passage import REASON, client_for, station_setup

database_url = protocol.database_url  # on SQLite and on PostgreSQL
world = protocol.world


@pytest.mark.parametrize("size", [10, 900_000], ids=["small", "900KB"])
def test_a_skipping_stop_does_not_pass_on_a_made_up_first_state(world, tmp_path, size):
    client, researcher, stations, tokens = world
    submit(client, researcher, stations, tokens["alice"], rounds=2, on_refusal="skip")
    made_up = state(tmp_path, '{"n": "' + "7" * size + '"}')
    run_hop(client, stations[0], tokens["hospital-a"], made_up, REASON)  # a "skip" of hop 0
    central = client_for(client.app, tokens["hospital-b"])
    offer = central.next_hop()
    assert offer is not None and offer.hop == 1
    config, queue, audit = station_setup(tmp_path, "hospital-b")
    record = queue.save(HopRecord.from_offer(offer, HopState.REJECTED, reason=REASON))
    record = passage.pass_on(record, config, stations[1], central, queue, audit)
    assert (record.state, record.passed_on) == (HopState.REJECTED, False)
    assert "skipped every hop before it and brought no initial" in (record.reason or "")
    assert not queue.sealed_path(record).with_suffix(".incoming").exists()
    assert not queue.sealed_path(record).exists()
