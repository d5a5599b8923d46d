"""``pht-station keys show``: the station's name and the fingerprints of the keys it signs
and unseals with, as ``pht-station init`` printed them."""

from __future__ import annotations

import re

from station.cli import main
from trains.keys import Identity


def test_keys_show_prints_the_name_and_both_fingerprints(tmp_path, capsys):
    folder = tmp_path / "hospital-a"
    assert (
        main(["init", str(folder), "--name", "hospital-a", "--central", "http://127.0.0.1:1"]) == 0
    )
    printed_by_init = re.findall(
        r"(signing|sealing) key (sha256:[0-9a-f]{64})", capsys.readouterr().out
    )
    assert main(["keys", "show", "--config", str(folder / "station.toml")]) == 0
    out = capsys.readouterr().out
    public = Identity.load(folder / "keys").public
    assert out.startswith(f"station hospital-a (keys in {folder / 'keys'})")
    assert f"signing key {public.signing_fingerprint}" in out
    assert f"sealing key {public.sealing_fingerprint}" in out
    assert re.findall(r"(signing|sealing) key (sha256:[0-9a-f]{64})", out) == printed_by_init


def test_keys_show_without_a_config_says_what_to_do(tmp_path, capsys):
    assert main(["keys", "show", "--config", str(tmp_path / "station.toml")]) == 1
    err = capsys.readouterr().err
    assert "not found; create one with 'pht-station init'" in err and "Traceback" not in err
