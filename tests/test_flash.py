"""`make flash DRY_RUN=1` prints a complete, offline-installable plan."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import tools.flash as flash
from device.codec.bundle import WEIGHTS_FOLDER, device_files
from device.link.auth import write_keys
from tools.errors import UserError
from tools.flash import (
    REBOOT_MARK,
    device_requirements,
    interface_script,
    low_memory_script,
    plan,
    set_codec_size,
    settle_keys,
)

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
    config = tmp_path / "trap.toml"  # trap 250: no key of it in keys/ (KEYS=new would refuse)
    config.write_text((ROOT / "deploy" / "trap.toml").read_text().replace("id = 1 ", "id = 250 "))
    result = subprocess.run(
        [sys.executable, "-m", "tools.flash", "--pi", "pi@10.0.0.9", "--role", "trap", "--dry-run",
         "--config", str(config), "--keys", "new"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    lines = result.stdout.splitlines()
    assert len(lines) > 15
    assert lines[-1].startswith("ssh pi@10.0.0.9") and "status wildlink-trap.service" in lines[-1]
    assert "would write" in result.stderr and not (ROOT / "keys" / "keys-trap250.toml").exists()
    missing = subprocess.run(
        [sys.executable, "-m", "tools.flash", "--pi", "pi@x", "--role", "trap",
         "--config", str(tmp_path / "none.toml"), "--dry-run"],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert missing.returncode == 2 and "does not exist" in missing.stderr


# ---------------------------------------------------------------- keys (issue 16 item 3)


def _trap_config(tmp_path: Path, keys_line: str = 'file = "/etc/wildlink/keys.toml"') -> Path:
    path = tmp_path / "trap.toml"
    path.write_text(f"[trap]\nid = 4\n[radio]\ntype = \"sx1262\"\n[codec]\nsize = 1024\n"
                    f"[keys]\n{keys_line}\n")
    return path


def test_flash_without_keys_refuses_before_touching_the_pi(tmp_path, monkeypatch):
    config = _trap_config(tmp_path)
    ran = []
    monkeypatch.setattr(flash, "execute", lambda steps, dry: ran.append(steps))
    code = flash.main(["--pi", "pi@x", "--role", "trap", "--config", str(config)])
    assert code == 2 and ran == []
    with pytest.raises(UserError, match="KEYS=new"):
        settle_keys("trap", config, flash.read_config(config), None)
    # unsigned only on purpose: keys.allow_unsigned = true (the service refuses it otherwise)
    bare = tmp_path / "bare.toml"
    bare.write_text("[trap]\nid = 4\n")
    with pytest.raises(UserError, match="allow_unsigned = true"):
        settle_keys("trap", bare, flash.read_config(bare), None)
    bare.write_text("[trap]\nid = 4\n[keys]\nallow_unsigned = true\n")
    assert settle_keys("trap", bare, flash.read_config(bare), None) is None


def test_flash_keys_new_generates_a_trap_key_and_the_base_file(tmp_path, monkeypatch):
    monkeypatch.setattr(flash, "KEY_DIR", tmp_path / "keys")
    config = _trap_config(tmp_path)
    raw = flash.read_config(config)
    assert settle_keys("trap", config, raw, "new", dry_run=True) == tmp_path / "keys" / \
        "keys-trap4.toml"
    assert not (tmp_path / "keys").exists()
    path = settle_keys("trap", config, raw, "new")
    keys = flash.read_config(path)["traps"]
    base = flash.read_config(tmp_path / "keys" / "keys-base.toml")["traps"]
    assert list(keys) == ["4"] and base == keys
    assert (path.stat().st_mode & 0o777) == 0o600
    with pytest.raises(UserError, match="exists already"):  # never a second key for trap 4
        settle_keys("trap", config, raw, "new")


def test_flash_checks_a_given_key_file(tmp_path):
    config = _trap_config(tmp_path)
    raw = flash.read_config(config)
    other = tmp_path / "other.toml"
    write_keys(other, {5: bytes(16)})
    with pytest.raises(UserError, match="no key for trap 4"):
        settle_keys("trap", config, raw, str(other))
    both = tmp_path / "both.toml"
    write_keys(both, {4: bytes(16), 5: bytes(16)})
    with pytest.raises(UserError, match="only its own"):
        settle_keys("trap", config, raw, str(both))
    own = tmp_path / "own.toml"
    write_keys(own, {4: bytes(16)})
    assert settle_keys("trap", config, raw, str(own)) == own
    elsewhere = _trap_config(tmp_path, 'file = "/home/pi/keys.toml"')
    with pytest.raises(UserError, match="installs the key file"):
        settle_keys("trap", elsewhere, flash.read_config(elsewhere), str(own))
    with pytest.raises(UserError, match="base station"):
        settle_keys("base", config, raw, "new")


def test_staged_key_file_is_private_and_removed_from_the_pi(tmp_path):
    keys = tmp_path / "keys.toml"
    write_keys(keys, {1: bytes(16)})
    lines = _plan_text("trap", keys)
    text = "\n".join(lines)
    assert f"install -m 0600 {keys}" in text  # not cp: the staged copy is 0600 too
    install = next(line for line in lines if "/etc/wildlink/keys.toml" in line)
    assert "rm -f /tmp/wildlink-flash/keys.toml" in install
    assert text.index("rsync") < text.index("rm -f " + str(ROOT / "build/flash/trap/keys.toml"))


# ---------------------------------------------------------------- the Pi (issue 16 item 7)


def test_apt_installs_missing_packages_without_recommends():
    apt = next(line for line in _plan_text("trap") if "dpkg -s" in line)
    assert "apt-get install -y --no-install-recommends python3-venv" in apt


def _run(script: str, tmp_path: Path, state: dict[str, str]) -> tuple[str, list[str]]:
    """Run a plan script against a fake raspi-config that keeps its settings in files."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, value in state.items():
        (tmp_path / name).write_text(value)
    fake = bin_dir / "raspi-config"
    fake.write_text(f"""#!/bin/sh
echo "$*" >> {tmp_path}/calls
case "$2" in
  get_*) cat {tmp_path}/${{2#get_}} ;;
  do_*) echo "$3" > {tmp_path}/${{2#do_}} ;;
esac
""")
    fake.chmod(0o755)
    mark = tmp_path / "reboot"
    result = subprocess.run(["sh", "-c", script.replace(REBOOT_MARK, str(mark))],
                            env={"PATH": f"{bin_dir}:/usr/bin:/bin"}, capture_output=True,
                            text=True, check=True)
    calls = (tmp_path / "calls").read_text().split("\n") if (tmp_path / "calls").exists() else []
    return ("reboot" if mark.exists() else "") + result.stderr, [c for c in calls if c]


def test_interface_script_enables_spi_once_and_asks_for_a_reboot(tmp_path):
    script = interface_script("sx1262")
    out, calls = _run(script, tmp_path, {"spi": "1"})
    assert "nonint do_spi 0" in calls and out.startswith("reboot")
    (tmp_path / "reboot").unlink()
    (tmp_path / "calls").unlink()
    out, calls = _run(script, tmp_path, {})  # already on: nothing to do, no reboot
    assert calls == ["nonint get_spi"] and out == ""
    assert interface_script("sim") is None
    steps = _plan_text("trap")
    assert any("raspi-config nonint do_spi 0" in line for line in steps)
    notice = next(i for i, line in enumerate(steps) if "reboot the Pi" in line)
    assert notice < next(i for i, line in enumerate(steps) if "systemctl restart" in line)


def test_interface_script_turns_the_uart_on_and_its_console_off(tmp_path):
    out, calls = _run(interface_script("e22"), tmp_path, {"serial_hw": "1", "serial_cons": "0"})
    assert "nonint do_serial_hw 0" in calls and "nonint do_serial_cons 1" in calls
    assert out.startswith("reboot")


def test_small_pi_gets_768_px(tmp_path):
    config = tmp_path / "trap.toml"
    config.write_text((ROOT / "deploy" / "trap.toml").read_text())
    meminfo = tmp_path / "meminfo"
    for kb, size in ((426_000, 768), (3_900_000, 1024)):
        meminfo.write_text(f"MemTotal:       {kb} kB\nMemFree: 1 kB\n")
        config.write_text((ROOT / "deploy" / "trap.toml").read_text())
        script = low_memory_script(str(config)).replace("/proc/meminfo", str(meminfo))
        subprocess.run(["sh", "-c", script], check=True, capture_output=True)
        assert flash.transmit_size(flash.read_config(config)) == size
        assert flash.read_config(config)["codec"]["budget"] == 3000  # nothing else changed
    assert any("MemTotal" in line for line in _plan_text("trap"))


def test_size_given_is_written_into_the_staged_config():
    text = (ROOT / "deploy" / "trap.toml").read_text()
    for size in (640, 2048):
        changed = set_codec_size(text, size)
        assert flash.tomllib.loads(changed)["codec"]["size"] == size
        assert "# long side of the transmitted picture" in changed
    assert flash.tomllib.loads(set_codec_size("[trap]\nid = 1\n", 512))["codec"]["size"] == 512
    bare = set_codec_size("[codec]\nbudget = 2000\n[keys]\n", 512)
    assert flash.tomllib.loads(bare)["codec"] == {"budget": 2000, "size": 512}
    steps = [s.text() for s in plan("pi@t", "trap", ROOT / "deploy" / "trap.toml", size=640,
                                    python="python3")]
    assert not any("MemTotal" in line for line in steps)
    assert any("size = 640" in line for line in steps)


# ------------------------------------------- what goes to the Pi: never a bundle's weights


def _bundle_with_weights(folder: Path) -> Path:
    """A bundle folder (empty files) carrying its float weights, as `export --weights` does."""
    for name in ("manifest.json", "analysis.tflite", "entropy.npz", "MODEL_CARD.md",
                 f"{WEIGHTS_FOLDER}/weights.npz", f"{WEIGHTS_FOLDER}/model_config.json"):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"")
    return folder


def test_flash_stages_the_bundle_without_its_float_weights(tmp_path):
    bundle = _bundle_with_weights(tmp_path / "bundle")
    steps = plan("pi@trap1.local", "trap", ROOT / "deploy" / "trap.toml", bundle=bundle,
                 python="python3", build=tmp_path / "build")
    local = [s.argv for s in steps if s.argv[0] in ("cp", "mkdir", "rm", "install")]
    staged = [a for a in local if a[0] == "cp" and a[-1].endswith("bundle")]
    assert staged == [("cp", *(str(f) for f in device_files(bundle)),
                       str(tmp_path / "build" / "trap" / "bundle"))]
    assert {Path(f).name for f in staged[0][1:-1]} == {
        "manifest.json", "analysis.tflite", "entropy.npz", "MODEL_CARD.md"}
    assert not any(WEIGHTS_FOLDER in word for argv in local for word in argv)


def test_flash_refuses_a_folder_that_is_no_bundle(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert flash.main(["--pi", "pi@x", "--role", "trap", "--bundle", str(tmp_path / "empty"),
                       "--dry-run"]) == 2
    assert "no model bundle at" in capsys.readouterr().err


def _wheel_models(project: Path, egg_base: Path) -> set[Path]:
    """The files under device/models that `pip wheel` puts in the wheel, from setup.cfg as
    setuptools' build_py reads it (no build, no network; egg-info goes to `egg_base`)."""
    from setuptools.dist import Distribution

    cwd = Path.cwd()
    os.chdir(project)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # setuptools' notes on data folders as packages
            dist = Distribution({"script_name": "setup.py"})
            dist.parse_config_files()
            dist.get_command_obj("egg_info").egg_base = str(egg_base)
            build_py = dist.get_command_obj("build_py")
            build_py.ensure_finalized()
            found = {project / src / name for package, src, _, names in build_py.data_files
                     if package == "device" for name in names}
    finally:
        os.chdir(cwd)
    return {p for p in found if p.is_relative_to(project / "device" / "models")}


def _assert_wheel_carries_device_files(project: Path, egg_base: Path) -> set[Path]:
    shipped = _wheel_models(project, egg_base)
    bundles = {p.parent for p in shipped if p.name == "manifest.json"}
    assert shipped == {f for b in bundles for f in device_files(b)}
    assert not any(WEIGHTS_FOLDER in p.parts for p in shipped)
    return bundles


def test_the_wheel_carries_no_bundle_weights(tmp_path):
    project = tmp_path / "project"
    models = project / "device" / "models"
    for name in ("setup.cfg", "README.md"):
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text((ROOT / name).read_text())
    (project / "device" / "__init__.py").parent.mkdir(parents=True)
    (project / "device" / "__init__.py").write_text("")
    _bundle_with_weights(models / "default")
    _bundle_with_weights(models / "sites" / "peru" / "full")
    _bundle_with_weights(models / "retired" / "0a1b2c3d")
    (tmp_path / "egg").mkdir()
    # every bundle the base's registry would find, so a base installed from the wheel decodes
    # the site examples and the earlier defaults too
    from device.codec.registry import find_bundles

    assert _assert_wheel_carries_device_files(project, tmp_path / "egg") == set(
        find_bundles(models))
    # the project's own tree: the shipped default, as make flash would copy it
    (tmp_path / "egg-root").mkdir()
    assert (ROOT / "device" / "models" / "default") in _assert_wheel_carries_device_files(
        ROOT, tmp_path / "egg-root")
