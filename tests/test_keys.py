"""`wildlink keys`: trap key files, the base station's collection, fingerprints only."""

from __future__ import annotations

import pytest

from device.link.auth import load_keys
from tools.cli import main
from tools.commands.keys import fingerprint


def test_new_add_list(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["keys", "new", "3", "--base", "base.toml"]) == 0
    assert main(["keys", "new", "4"]) == 0
    trap3, trap4 = load_keys("keys-trap3.toml"), load_keys("keys-trap4.toml")
    assert list(trap3) == [3] and list(trap4) == [4] and trap3[3] != trap4[4]
    assert main(["keys", "add", "base.toml", "keys-trap4.toml"]) == 0
    assert load_keys("base.toml") == {**trap3, **trap4}
    for name in ("base.toml", "keys-trap3.toml", "keys-trap4.toml"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o600
    capsys.readouterr()
    assert main(["keys", "list", "base.toml"]) == 0
    out = capsys.readouterr().out
    assert f"trap   3  {fingerprint(trap3[3])}" in out and "mode 0600" in out
    assert trap3[3].hex() not in out  # never the key itself


def test_refuses_to_lose_a_key(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["keys", "new", "3", "--base", "base.toml"]) == 0
    old = load_keys("base.toml")
    assert main(["keys", "new", "3"]) == 2
    assert "exists" in capsys.readouterr().err
    assert main(["keys", "new", "3", "--out", "again.toml", "--base", "base.toml"]) == 2
    assert "already has another key for trap 3" in capsys.readouterr().err
    assert load_keys("base.toml") == old
    assert main(["keys", "new", "300"]) == 2
    assert "0..255" in capsys.readouterr().err


def test_refuses_a_readable_key_file(tmp_path, capsys):
    path = tmp_path / "open.toml"
    path.write_text('[traps]\n1 = "000102030405060708090a0b0c0d0e0f"\n')
    path.chmod(0o644)
    assert main(["keys", "list", str(path)]) == 2
    assert "chmod 600" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["keys"], ["keys", "new"]])
def test_usage_errors(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
