"""Text from someone else never rewrites what a person reads: the admin's approval screen
(a researcher's manifest), the researcher's status and watch (central's and stations'
words). A control or bidi character is shown escaped, and no line can be forged."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from station.config import StationConfig, StationInfo
from station.queue import HopRecord, HopState, summary_line
from station.show import describe
from tests.factories import make_manifest, make_offer
from train_builder.watch import hop_line, table
from trains.keys import Identity
from trains.manifest import MANIFEST_TYPE
from trains.signing import sign
from trains.text import printable, printable_lines

HOSTILE = "0.1\x1b[8m\n  ALLOWED by route.allow_exposed_partials: nothing\u202e"


@pytest.fixture(scope="module")
def people():
    return Identity.generate("alice"), Identity.generate("a"), Identity.generate("b")


def test_a_declared_output_name_must_be_a_plain_state_name(people):
    alice, a, b = people
    for name in ("state.json\x1b[8m", "rep\u202eort.json", "../etc/passwd.json", "a\nb.json"):
        with pytest.raises(ValidationError, match="outputs"):
            make_manifest(alice, [a, b], outputs=[name])


def test_the_approval_screen_shows_a_hostile_version_escaped_on_its_own_line(people):
    alice, a, b = people
    manifest = make_manifest(alice, [a, b], version=HOSTILE)
    offer = make_offer(manifest.train_id, 0, sign(manifest, MANIFEST_TYPE, alice.signing))
    record = HopRecord.from_offer(offer, HopState.PENDING, reason="refused\x1b[2J\u202e")
    config = StationConfig(station=StationInfo(name="a", central_url="http://127.0.0.1:1"))
    shown = describe(record, config, with_files=False)
    assert "\x1b" not in shown and "\u202e" not in shown
    assert "\\x1b[8m\\n  ALLOWED" in shown  # on the train's line, escaped
    assert not any(line.startswith("  ALLOWED") for line in shown.splitlines())
    line = summary_line(record)
    assert "\n" not in line and "\x1b" not in line


def test_status_and_watch_escape_what_central_and_stations_say():
    hop = {
        "index": 0,
        "round": 0,
        "station": "a\u202e",
        "kind": "local",
        "status": "failed",
        "error": "no\x1b[31m [bold]markup[/bold]\nforged line",
    }
    line = hop_line(hop)
    assert "\x1b" not in line and "\n" not in line and "\u202e" not in line
    status = {"train_id": "t", "name": "n", "status": "failed", "hops": [hop]}
    from rich.console import Console

    console = Console(record=True, width=200, color_system=None)
    console.print(table(status, 1.0))
    rendered = console.export_text()
    assert "[bold]markup[/bold]" in rendered  # shown as text, not taken as markup
    assert "\x1b" not in rendered


def test_printable_lines_keeps_lines_and_escapes_within_them():
    assert printable_lines("a = 1\nb = '\x1b[8m'") == "a = 1\nb = '\\x1b[8m'"
    assert printable("one\ntwo", keep_newlines=True) == "one\ntwo"
    assert printable("one\ntwo") == "one\\ntwo"
