"""The audit log is append-only by hash chain: every kind of tampering is found."""

import json

import pytest

from station.audit import AuditLog, verify


@pytest.fixture
def log(tmp_path):
    audit = AuditLog(tmp_path / "audit.jsonl")
    for i in range(5):
        audit.append("run_finished", train_id="t1", hop=i, exit_code=0, seconds=1.5)
    return audit


def lines(audit):
    return audit.path.read_text().splitlines(keepends=True)


def test_intact_log_verifies_and_links_each_line(log):
    assert verify(log.path) == []
    entries = log.entries()
    assert [e["hop"] for e in entries] == [0, 1, 2, 3, 4]
    assert len({e["prev"] for e in entries}) == 5
    assert oct(log.path.stat().st_mode & 0o777) == "0o600"


def test_edited_line_is_found(log):
    content = lines(log)
    entry = json.loads(content[2])
    entry["exit_code"] = 1  # hide a failure
    content[2] = json.dumps(entry, sort_keys=True, separators=(",", ":")) + "\n"
    log.path.write_text("".join(content))
    problems = verify(log.path)
    assert [p.line for p in problems] == [4]


def test_inserted_line_is_found(log):
    content = lines(log)
    forged = json.loads(content[1])
    forged["hop"] = 99
    content.insert(2, json.dumps(forged) + "\n")
    log.path.write_text("".join(content))
    assert [p.line for p in verify(log.path)] == [3, 4]


def test_deleted_line_is_found(log):
    content = lines(log)
    del content[1]
    log.path.write_text("".join(content))
    assert [p.line for p in verify(log.path)] == [2]


def test_cut_off_tail_is_found(log):
    content = lines(log)
    log.path.write_text("".join(content[:-1]))
    problems = verify(log.path)
    assert problems and "cut off" in problems[-1].message


def test_appending_after_verify_keeps_the_chain(log):
    log.append("uploaded", train_id="t1", hop=5, output_digest="sha256:" + "0" * 64)
    assert verify(log.path) == []


def test_cli_audit_verify_exit_codes(log, tmp_path, capsys):
    from station.cli import main

    config = tmp_path / "station.toml"
    config.write_text(
        '[station]\nname = "s"\ncentral_url = "http://127.0.0.1:1"\nstate_dir = "."\n'
    )
    assert main(["audit", "verify", "--config", str(config)]) == 0
    content = lines(log)
    del content[0]
    log.path.write_text("".join(content))
    assert main(["audit", "verify", "--config", str(config)]) == 1
    assert "NOT intact" in capsys.readouterr().out
