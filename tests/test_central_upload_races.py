"""Central's uploads and completions under concurrency, on SQLite and on a real PostgreSQL
(two central processes over one database and one blob folder; the fixture and helpers are
``tests/test_central_races.py``'s). The blob on disk, and what the next station
downloads, must always be the one whose digest the stored receipt (or the recorded initial
state digest) names, with no 5xx:

* racing completions: eight ``/result`` calls for one hop with two different outputs; the
  first completion wins, its identical repeats are accepted, the other output is refused;
* upload vs completion: ``/result`` calls whose bytes are not the ones their receipt names
  (staged, then refused) and one with another output, while a ``/result`` completes the
  hop; the blob that stays is the receipt's;
* racing initial-state uploads with different bytes: the digest recorded is the blob's.
"""

from __future__ import annotations

import os

from tests.test_central_races import (
    STATE_BYTES,
    TRAINS,
    Call,
    Net,
    auth,
    hop_url,
    net,
    no_server_errors,
    output_of,
    race,
)
from trains.receipt import HopReceipt
from trains.sealing import digest_bytes, digest_file
from trains.signing import Envelope

__all__ = ["net"]  # the fixture, shared


def check_output_stored(net: Net, train_id: str) -> str | None:
    """Hop 0 done with one receipt; the blob on disk, the stored receipt, the digest hop 1
    reads and what hop 1's station downloads all agree. None if so, else what is wrong."""
    status = net.status(train_id)
    receipts = net.client(1).get(
        f"/api/v1/trains/{train_id}/receipts", headers=auth(net.tokens["alice"])
    )
    if [h["status"] for h in status["hops"]] != ["done", "running"] or receipts.status_code != 200:
        return f"hops {[h['status'] for h in status['hops']]}, receipts {receipts.status_code}"
    (stored,) = [Envelope.model_validate(r) for r in receipts.json()]
    named = HopReceipt.model_validate_json(stored.payload_bytes).predicate.output_state_digest
    if digest_file(net.blob(train_id, "output-00000.sealed")) != named:
        return "the stored receipt does not name the blob on disk"
    return None


def read_input(net: Net, train_id: str, offer: dict) -> str | None:
    got = net.client(1).get(
        f"{hop_url(train_id, offer['hop'])}/inputs/0", headers=auth(net.tokens["hospital-b"])
    )
    if got.status_code != 200:
        return f"hop 1 cannot read its input: {got.status_code} {got.text[:200]}"
    if digest_bytes(got.content) != offer["inputs"][0]["digest"]:
        return "hop 1 downloads other bytes than the digest it was offered"
    return None


def test_racing_completions_of_one_hop_keep_the_first_and_refuse_the_other(net):
    a = net.stations["hospital-a"]
    trains = [net.submit(["hospital-a", "hospital-b"]) for _ in range(TRAINS)]
    offers = net.claim_all("hospital-a")
    outputs = {
        m.train_id: [output_of(m, d, offers[m.train_id], a, tag) for tag in (b"A", b"B")]
        for m, d in trains
    }
    calls: list[tuple[str, int, Call]] = []
    for i, (train_id, pair) in enumerate(outputs.items()):
        for n in range(8):
            calls.append(
                (
                    train_id,
                    n,
                    lambda t=train_id, o=pair[n % 2], c=i + n: net.client(c).post(
                        f"{hop_url(t, 0)}/result",
                        content=o.body(),
                        headers=auth(net.tokens[a.name]),
                    ),
                )
            )
    answers = race(calls)
    problems = no_server_errors(answers)
    next_offers = net.claim_all("hospital-b")
    for m, _ in trains:
        pair = outputs[m.train_id]
        codes = [answers[(m.train_id, n)].status_code for n in range(8)]
        winners = {n % 2 for n, code in enumerate(codes) if code == 200}
        wrong = None
        if len(winners) != 1:
            wrong = f"answers {codes}: not exactly one output accepted"
        else:
            (w,) = winners
            if any(codes[n] != (200 if n % 2 == w else 409) for n in range(8)):
                wrong = f"answers {codes}: the winner's repeats must be 200, the other's 409"
            elif next_offers[m.train_id]["inputs"][0]["digest"] != pair[w].digest:
                wrong = "hop 1 was offered another digest than the accepted output's"
            else:
                wrong = check_output_stored(net, m.train_id) or read_input(
                    net, m.train_id, next_offers[m.train_id]
                )
        if wrong:
            problems.append(f"{m.train_id}: {wrong}")
    assert problems == [], f"{len(problems)} of {len(trains)} trains:\n" + "\n".join(problems)


def test_an_upload_racing_a_completion_never_replaces_the_receipts_blob(net):
    a = net.stations["hospital-a"]
    trains = [net.submit(["hospital-a", "hospital-b"]) for _ in range(TRAINS)]
    offers = net.claim_all("hospital-a")
    outputs = {
        m.train_id: [output_of(m, d, offers[m.train_id], a, tag) for tag in (b"A", b"B")]
        for m, d in trains
    }
    headers = auth(net.tokens[a.name])
    calls: list[tuple[str, int, Call]] = []
    for i, (train_id, (first, other)) in enumerate(outputs.items()):
        url = hop_url(train_id, 0)
        # the honest receipt with other bytes: staged while it streams, then refused (422)
        mismatched = first.receipt.model_dump_json().encode() + b"\n" + other.sealed
        calls.append(
            (
                train_id,
                0,
                lambda o=first, u=url, c=i: net.client(c).post(
                    f"{u}/result", content=o.body(), headers=headers
                ),
            )
        )
        calls += [
            (
                train_id,
                n,
                lambda b=mismatched, u=url, c=i + n: net.client(c).post(
                    f"{u}/result", content=b, headers=headers
                ),
            )
            for n in (1, 2, 3)
        ]
        calls.append(
            (
                train_id,
                4,
                lambda o=other, u=url, c=i + 4: net.client(c).post(
                    f"{u}/result", content=o.body(), headers=headers
                ),
            )
        )
    answers = race(calls)
    problems = no_server_errors(answers)
    next_offers = net.claim_all("hospital-b")
    for m, _ in trains:
        first, other = outputs[m.train_id]
        result, last = answers[(m.train_id, 0)], answers[(m.train_id, 4)]
        accepted = [o for o, r in ((first, result), (other, last)) if r.status_code == 200]
        offered = next_offers[m.train_id]["inputs"][0]["digest"]
        if len(accepted) != 1:
            wrong = f"/result {result.status_code}, the other /result {last.status_code}"
        elif offered != accepted[0].digest:
            wrong = "hop 1 was offered another digest than the accepted output's"
        else:
            wrong = check_output_stored(net, m.train_id) or read_input(
                net, m.train_id, next_offers[m.train_id]
            )
        if wrong:
            problems.append(f"{m.train_id}: {wrong}")
    assert problems == [], f"{len(problems)} of {len(trains)} trains:\n" + "\n".join(problems)


def test_racing_initial_state_uploads_record_the_digest_of_the_blob_kept(net):
    trains = [net.submit(["hospital-a"], has_initial_state=True)[0] for _ in range(TRAINS)]
    states = {m.train_id: [os.urandom(STATE_BYTES) for _ in range(2)] for m in trains}
    calls: list[tuple[str, int, Call]] = []
    for i, (train_id, pair) in enumerate(states.items()):
        calls += [
            (
                train_id,
                n,
                lambda t=train_id, s=pair[n % 2], c=i + n: net.client(c).put(
                    f"/api/v1/trains/{t}/initial-state",
                    content=s,
                    headers=auth(net.tokens["alice"]),
                ),
            )
            for n in range(6)
        ]
    answers = race(calls)
    problems = no_server_errors(answers)
    offers = net.claim_all("hospital-a")
    for train_id, pair in states.items():
        codes = [answers[(train_id, n)].status_code for n in range(6)]
        status = net.status(train_id)
        on_disk = digest_file(net.blob(train_id, "initial.sealed"))
        if codes.count(204) != 1 or set(codes) != {204, 409}:
            problems.append(f"{train_id}: answers {codes}")
        elif status["initial_state_digest"] != on_disk or on_disk not in map(digest_bytes, pair):
            problems.append(f"{train_id}: the recorded digest is not the blob's")
        elif offers[train_id]["inputs"][0]["digest"] != on_disk:
            problems.append(f"{train_id}: hop 0 was offered another digest than the blob's")
    assert problems == [], f"{len(problems)} of {len(states)} trains:\n" + "\n".join(problems)
