"""The station's hop queue keeps ended records out of the loop's way (issue 15 item 5).

A station keeps the record of every hop it was offered, for years; the daemon's loop reads
``hops/`` only, where the records it still acts on are, and ended ones (done, quarantined,
a refusal or failure central has heard of) live in ``ended/``, still found by ``get``,
``knows`` and every listing. That the loop does not parse them is checked with a damaged
ended record: reading it would set it aside, and the loop's scan leaves it be.
(benchmarks/station_queue.py measures the cost; no test here times anything.)
"""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest

from central.messages import HopOffer
from station.audit import AuditLog
from station.daemon import Heartbeat, Station
from station.queue import HopQueue, HopRecord, HopState, now
from station.service import StationService
from station.state_version import open_state, read_version, write_version
from tests.factories import make_offer, manual_station


@pytest.fixture
def world(tmp_path):
    config, envelope, here = manual_station(tmp_path)

    def offer() -> HopOffer:
        return make_offer(str(uuid.uuid4()), 0, envelope)

    queue = HopQueue(open_state(config.state_dir))
    station = Station(config, here, queue, AuditLog(queue.root / "audit.jsonl"))
    return station, offer


def _ended_and_open(queue: HopQueue, offer) -> dict[str, HopRecord]:
    made = {
        "done": HopRecord.from_offer(offer(), HopState.DONE),
        "quarantined": HopRecord.from_offer(offer(), HopState.QUARANTINED, reason="x"),
        "heard": HopRecord.from_offer(offer(), HopState.FAILED, reason="x", reported=True),
        "unheard": HopRecord.from_offer(offer(), HopState.REJECTED, reason="x"),
        "to_give_back": HopRecord.from_offer(
            offer(), HopState.DONE, pulled_image="127.0.0.1:5000/pht/x@sha256:" + "a" * 64
        ),
        "pending": HopRecord.from_offer(offer(), HopState.PENDING),
        "sealed": HopRecord.from_offer(offer(), HopState.SEALED),
    }
    for record in made.values():
        queue.save(record)
    return made


def test_ended_records_are_kept_apart_and_the_loop_never_reads_them(world):
    station, offer = world
    queue = station.queue
    made = _ended_and_open(queue, offer)
    ended = {"done", "quarantined", "heard"}
    assert {p.stem for p in queue.ended.glob("*.json")} == {made[k].id for k in ended}
    assert {p.stem for p in queue.hops.glob("*.json")} == {
        made[k].id for k in made if k not in ended
    }
    # the loop's scans: open hops, and what it still owes central or Docker
    assert {r.id for r in queue.live()} == {made[k].id for k in made if k not in ended}
    assert [r.id for r in Heartbeat(station).held()] == [made["pending"].id, made["sealed"].id]
    # a damaged ended record: the loop's scans and a step never parse it
    damaged = queue.ended / f"{made['done'].id}.json"
    damaged.write_text("{not json")
    queue.live()
    Heartbeat(station).held()
    assert damaged.exists()
    # listing and look-ups still see every record (and the damaged one is set aside then)
    assert {r.id for r in queue.all()} == {made[k].id for k in made} - {made["done"].id}
    assert not damaged.exists() and damaged.with_suffix(".unreadable").exists()
    assert queue.get(made["heard"].id[:20]).state == HopState.FAILED
    assert queue.knows(made["quarantined"].offer)
    service = StationService(station.config)
    assert {r.id for r in service.history()} == {r.id for r in queue.all()}
    assert made["quarantined"].id in {r.id for r in service.waiting()}


def test_a_refusal_central_offers_again_comes_back_to_the_loop(world):
    """Central re-offers a hop whose lease ran out: a refusal it had heard of is told
    again, so its record leaves ended/ for the loop (Station._take)."""
    station, offer = world
    queue = station.queue
    heard = queue.save(HopRecord.from_offer(offer(), HopState.FAILED, reason="x", reported=True))
    assert heard.id not in {r.id for r in queue.live()}
    assert station._take(heard.offer) is None
    (back,) = queue.live(HopState.FAILED)
    assert back.id == heard.id and not back.reported
    assert not (queue.ended / f"{heard.id}.json").exists()


def test_a_crash_between_the_two_writes_of_a_move_resolves_to_the_last_save(world):
    """A save writes the new place, then removes the old: a crash between leaves two
    copies; the one saved last is the record, and the loop's scan settles it to one."""
    station, offer = world
    queue = station.queue
    record = queue.save(HopRecord.from_offer(offer(), HopState.SEALED))
    later = record.model_copy(
        update={"state": HopState.DONE, "updated_at": record.updated_at + timedelta(seconds=1)}
    )
    (queue.ended / f"{record.id}.json").write_text(later.model_dump_json())  # crash here
    assert queue.get(record.id).state == HopState.DONE
    assert [r.id for r in queue.all()] == [record.id]
    assert queue.live() == []
    assert not (queue.hops / f"{record.id}.json").exists()
    # the other way (a re-offer moving a record back), and a tie goes to the live copy
    again = later.model_copy(update={"state": HopState.FAILED, "reported": False})
    (queue.hops / f"{record.id}.json").write_text(again.model_dump_json())
    assert queue.get(record.id).state == HopState.FAILED
    assert [r.id for r in queue.live()] == [record.id]
    assert not (queue.ended / f"{record.id}.json").exists()


def test_a_version_1_folder_is_migrated_with_its_ended_records_moved(world, tmp_path):
    """Version 1 kept every record in hops/: opening the folder moves the ended ones."""
    _, offer = world
    state = tmp_path / "old-state"
    queue = HopQueue(state)
    made = _ended_and_open(queue, offer)
    for path in queue.ended.glob("*.json"):  # as version 1 left them
        path.rename(queue.hops / path.name)
    queue.ended.rmdir()
    write_version(state, 1)
    assert read_version(open_state(state)) == 2
    assert {p.stem for p in queue.ended.glob("*.json")} == {
        made[k].id for k in ("done", "quarantined", "heard")
    }
    assert {r.id for r in HopQueue(state).all()} == {r.id for r in made.values()}


def test_an_updates_change_is_made_to_the_record_as_it_is_now(world):
    """update re-reads under the lock: a caller holding an old copy loses nothing."""
    station, offer = world
    queue = station.queue
    stale = queue.save(HopRecord.from_offer(offer(), HopState.PENDING))
    fresh = queue.get(stale.id)
    fresh.state = HopState.APPROVED
    queue.save(fresh)

    def prepared(record: HopRecord) -> bool:
        record.prepared_at = now()
        return True

    kept = queue.update(stale.id, prepared)
    assert kept.state == HopState.APPROVED and kept.prepared_at is not None


def test_a_daemon_stops_when_a_newer_release_migrates_its_folder_under_it(world, monkeypatch):
    """An admin command of a newer pht-station migrates the folder while this daemon runs:
    the daemon's loop stops with the reason, rather than misread the new layout."""
    from station import daemon
    from station.state_version import StateTooNew

    station, _ = world
    token = station.config.token_path
    token.parent.mkdir(parents=True, exist_ok=True)
    token.write_text("pht_sta_" + "t" * 40 + "\n")
    token.chmod(0o600)
    steps = []
    monkeypatch.setattr(Station, "step", lambda self, central, wait: steps.append(wait))
    daemon._loop(station, True, 0.01, 0.01)  # the folder as opened: one step
    assert len(steps) == 1
    write_version(station.queue.root, 3)
    with pytest.raises(StateTooNew, match="migrated it"):
        daemon._loop(station, True, 0.01, 0.01)
    assert len(steps) == 1
