"""The warm parser child (station.parse_child): one spare started ahead, used for one
output only, replaced when it died while waiting; isolation as with a child started cold.

Real child processes throughout; a spare "dying while it waits" is caused for real (SIGKILL).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from station import output_parse, parse_child
from station.config import DisclosurePolicy
from station.disclosure import check_output
from trains.errors import StateInvalid

MB = 1024 * 1024


def alive(pid: int) -> bool:
    """True while ``pid`` runs (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def small_output(folder: Path) -> list[str]:
    folder.mkdir(exist_ok=True)
    (folder / "table.counts.csv").write_text("group,n\na,50\nb,2\n")
    (folder / "state.json").write_text('{"w": [1, 2]}')
    return ["table.counts.csv", "state.json"]


def spare_pid() -> int:
    """The waiting spare's pid, after one check made sure there is one."""
    pid = parse_child.SPARE.pid()
    assert pid is not None, "no spare waits after a check"
    return pid


def test_each_output_is_checked_by_its_own_child_and_the_spare_is_used_once(tmp_path):
    check_output(tmp_path, small_output(tmp_path), MB, DisclosurePolicy())  # leaves a spare
    seen = []
    for _ in range(3):
        waiting = spare_pid()
        result = check_output(tmp_path, small_output(tmp_path), MB, DisclosurePolicy())
        assert result.suppressed_cells == 1
        assert not alive(waiting), "the spare served one output and must be gone"
        seen.append(waiting)
    assert len(set(seen)) == 3
    assert spare_pid() not in seen  # the next output gets a new child


def test_the_spare_has_its_limits_before_any_request(tmp_path):
    check_output(tmp_path, small_output(tmp_path), MB, DisclosurePolicy())
    limits = Path(f"/proc/{spare_pid()}/limits")
    deadline = time.monotonic() + 30
    while "Max address space" not in _set_limit(limits) and time.monotonic() < deadline:
        time.sleep(0.02)  # still importing: it sets its limits before it reads stdin
    assert str(output_parse.MEMORY_BYTES) in _set_limit(limits)


def _set_limit(limits: Path) -> str:
    line = next(x for x in limits.read_text().splitlines() if x.startswith("Max address space"))
    return line if "unlimited" not in line else ""


def test_a_spare_killed_while_waiting_is_replaced_not_used(tmp_path):
    check_output(tmp_path, small_output(tmp_path), MB, DisclosurePolicy())
    dead = spare_pid()
    os.kill(dead, signal.SIGKILL)
    while alive(dead):
        time.sleep(0.01)
    result = check_output(tmp_path, small_output(tmp_path), MB, DisclosurePolicy())
    assert result.suppressed_cells == 1  # checked by a live child, not failed as "SIGKILL"
    assert spare_pid() != dead


def test_a_child_that_hits_its_limit_ends_that_check_only(tmp_path):
    """The JSON bomb of test_station_disclosure, through the warm path: the check fails
    with a reason, and the next output is checked by a fresh child as if nothing happened."""
    check_output(tmp_path, small_output(tmp_path), MB, DisclosurePolicy())
    bomb_dir = tmp_path / "bomb"
    bomb_dir.mkdir()
    count = output_parse.JSON_BYTES // 3 - 1
    (bomb_dir / "bomb.counts.json").write_text("[" + "[]," * (count - 1) + "[]]")
    hostile = spare_pid()
    with pytest.raises(StateInvalid, match=r"count file bomb\.counts\.json cannot be checked"):
        check_output(bomb_dir, ["bomb.counts.json"], 100 * MB, DisclosurePolicy())
    assert not alive(hostile)
    good = tmp_path / "good"
    good.mkdir()
    assert check_output(good, small_output(good), MB, DisclosurePolicy()).suppressed_cells == 1


def test_a_check_over_its_time_is_ended_and_the_next_check_works(tmp_path, monkeypatch):
    small = tmp_path / "small"
    check_output(small, small_output(small), MB, DisclosurePolicy())
    slow = tmp_path / "slow"
    slow.mkdir()
    (slow / "big.counts.csv").write_text("a,b\n" + "7,8\n" * 4_000_000)  # seconds to check
    monkeypatch.setattr(parse_child, "PARSE_TIMEOUT_S", 0.2)
    used = spare_pid()
    with pytest.raises(StateInvalid, match="took too long"):
        check_output(slow, ["big.counts.csv"], 100 * MB, DisclosurePolicy())
    assert not alive(used)  # killed, not left running
    monkeypatch.undo()
    assert check_output(small, small_output(small), MB, DisclosurePolicy()).files


def test_the_cold_path_uses_no_spare(tmp_path):
    check_output(tmp_path, small_output(tmp_path), MB, DisclosurePolicy())
    waiting = spare_pid()
    request = {"folder": str(tmp_path), "files": [], "min_cell": 5, "refuse": False}
    child = parse_child.run_parser(request, "too slow", warm=False)
    assert child.returncode == 0
    assert parse_child.SPARE.pid() == waiting and alive(waiting)
