"""The systemd unit runs the daemon as an unprivileged user with no capabilities
(compose/station/pht-station.service, CapabilityBoundingSet=): preparing a hop's folders
must not need any (security review, MEDIUM 2: it chowned the output folder to the
container's uid, a PermissionError that killed every hop).

Really run as another user: a forked child of the (root) test drops to uid/gid 65534."""

from __future__ import annotations

import os
import shutil
import tempfile
import traceback
from pathlib import Path

import pytest

from station.hop import _open_for_container

NOBODY = 65534


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to fork a child as another user")
def test_preparing_a_hop_needs_no_privilege() -> None:
    # not pytest's tmp_path: its parent is root's 0700 folder, closed to the child
    tmp_path = Path(tempfile.mkdtemp(prefix="pht-fixes-unpriv-"))
    try:
        _prepare_as_nobody(tmp_path)
    finally:
        shutil.rmtree(tmp_path)


def _prepare_as_nobody(tmp_path: Path) -> None:
    work = tmp_path / "hop-0-x"
    for name in ("input", "data", "output"):
        (work / name).mkdir(parents=True)
    (work / "input" / "state.json").write_text("{}")
    for path in [tmp_path, *tmp_path.rglob("*")]:
        os.chown(path, NOBODY, NOBODY)
    report = tmp_path / "child-error"
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 0
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            _open_for_container(work)
            (work / "output" / "written-by-the-station").write_text("ok")
        except BaseException:
            report.write_text(traceback.format_exc())
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0, report.read_text()[-1500:]
    assert (work / "output" / "written-by-the-station").read_text() == "ok"
