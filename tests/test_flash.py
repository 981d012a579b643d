"""`make flash DRY_RUN=1` prints a complete, offline-installable plan."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tools.errors import UserError
from tools.flash import device_requirements, plan

ROOT = Path(__file__).resolve().parent.parent


def _plan_text(role: str, keys: Path | None = None) -> list[str]:
    config = ROOT / "deploy" / f"{role}.toml"
    return [s.text() for s in plan("pi@trap1.local", role, config, keys=keys, python="python3")]


def test_requirements_leave_apt_packages_out():
    requirements = device_requirements()
    assert any(r.startswith("tflite-runtime") for r in requirements)
    assert any(r.startswith("numpy") for r in requirements)
    assert not any(r.startswith(("spidev", "crcmod")) for r in requirements)


def test_trap_plan_builds_copies_installs_offline_and_restarts():
    lines = _plan_text("trap")
    text = "\n".join(lines)
    order = [
        "pip wheel",
        "pip download",
        "rsync -az --delete",
        "venv --system-site-packages /opt/wildlink/venv",
        "--no-index --find-links /tmp/wildlink-flash/wheelhouse",
        "--no-index --no-deps --force-reinstall /tmp/wildlink-flash/wildlink-*.whl",
        "/etc/wildlink/trap.toml",
        "/etc/systemd/system/wildlink-trap.service",
        "systemctl daemon-reload",
        "systemctl enable wildlink-trap.service",
        "systemctl restart wildlink-trap.service",
    ]
    positions = [text.index(item) for item in order]
    assert positions == sorted(positions)
    download = next(line for line in lines if "pip download" in line)
    for flag in ("--only-binary=:all:", "--python-version 3.11", "--platform manylinux2014_aarch64",
                 "--abi cp311", "tflite-runtime==2.14.0"):
        assert flag in download
    assert "python3-picamera2" in text and "python3-spidev" in text
    assert all(line.startswith(("ssh pi@trap1.local", "rsync")) for line in lines
               if "/tmp/wildlink-flash" in line and "pip download" not in line)
    assert "keys" not in text


def test_base_plan_and_keys(tmp_path):
    keys = tmp_path / "keys.toml"
    keys.write_text("")
    text = "\n".join(_plan_text("base", keys))
    assert "wildlink-base.service" in text and "wildlink-trap" not in text
    assert "python3-picamera2" not in text
    assert "install -m 0600 -o wildlink -g wildlink /tmp/wildlink-flash/keys.toml" in text


def test_bad_arguments():
    with pytest.raises(UserError, match="ROLE"):
        plan("pi@x", "camera", ROOT / "deploy" / "trap.toml")
    with pytest.raises(UserError, match="user@host"):
        plan("x", "trap", ROOT / "deploy" / "trap.toml")


def test_dry_run_command_prints_and_runs_nothing(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "tools.flash", "--pi", "pi@10.0.0.9", "--role", "trap", "--dry-run"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    lines = result.stdout.splitlines()
    assert len(lines) > 15
    assert lines[-1].startswith("ssh pi@10.0.0.9") and "status wildlink-trap.service" in lines[-1]
    missing = subprocess.run(
        [sys.executable, "-m", "tools.flash", "--pi", "pi@x", "--role", "trap",
         "--config", str(tmp_path / "none.toml"), "--dry-run"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr
