"""`make flash PI=user@host ROLE=trap|base [CONFIG=file] [KEYS=file] [DRY_RUN=1]`.

Installs wildlink on a Raspberry Pi that has no internet: everything the Pi needs is prepared on
the workstation and copied over ssh/rsync, then installed offline.

1. a wheel of the project (`pip wheel --no-deps`), which carries the default model bundle;
2. a wheelhouse of aarch64 wheels for CPython 3.11 (Raspberry Pi OS bookworm), downloaded with
   `pip download --platform manylinux2014_aarch64 --only-binary=:all:` for the `device` extra.
   spidev and crcmod publish no aarch64 wheels (sdists only), so they come from Raspberry Pi OS
   apt (`python3-spidev`, `python3-crcmod`), as picamera2 does (`python3-picamera2`); the venv is
   made with `--system-site-packages` so it sees them;
3. the model bundle, the config (and the key file, mode 0600), the systemd unit.

On the Pi it creates the `wildlink` user and `/opt/wildlink/venv`, installs offline, then
enables and restarts `wildlink-<role>.service`. `--dry-run` (DRY_RUN=1) prints every command
instead of running it. `wheelhouse()` is shared with `make pi-check`.
"""

from __future__ import annotations

import argparse
import configparser
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tools.errors import UserError

ROOT = Path(__file__).resolve().parent.parent
PYTHON_VERSION = "3.11"
PLATFORMS = tuple(
    f"manylinux_2_{minor}_aarch64" for minor in (17, 28, 31, 34, 36)
) + ("manylinux2014_aarch64",)  # bookworm has glibc 2.36; tflite-runtime 2.14 needs 2_34
#: Installed from Raspberry Pi OS apt instead of the wheelhouse (no aarch64 wheels on PyPI).
FROM_APT = ("spidev", "crcmod")
APT_PACKAGES = {  # python3-lgpio: gpiozero 2's pin factory on bookworm (a C extension too)
    "trap": ("python3-venv", "python3-spidev", "python3-crcmod", "python3-lgpio",
             "python3-picamera2"),
    "base": ("python3-venv", "python3-spidev", "python3-crcmod", "python3-lgpio"),
}
REMOTE_STAGE = "/tmp/wildlink-flash"
PREFIX = "/opt/wildlink"


@dataclass(frozen=True)
class Step:
    """One command of the plan; `remote` ones run on the Pi through ssh."""

    argv: tuple[str, ...]
    why: str

    def text(self) -> str:
        return shlex.join(self.argv)


def device_requirements(setup_cfg: Path = ROOT / "setup.cfg") -> list[str]:
    """The `device` extra of setup.cfg, minus the packages that come from apt."""
    parser = configparser.ConfigParser()
    parser.read(setup_cfg)
    lines = parser["options.extras_require"]["device"].strip().splitlines()
    keep = []
    for line in lines:
        requirement = line.split(";")[0].strip()
        name = requirement.split("<")[0].split(">")[0].split("=")[0].split("!")[0].strip()
        if requirement and name.lower() not in FROM_APT:
            keep.append(requirement)
    return keep


def wheelhouse_steps(python: str, wheelhouse: Path, requirements: list[str]) -> list[Step]:
    """pip download of aarch64 cp311 wheels for the device extra (no sdists)."""
    argv = [python, "-m", "pip", "download", "--quiet", "--dest", str(wheelhouse),
            "--only-binary=:all:", "--python-version", PYTHON_VERSION,
            "--implementation", "cp", "--abi", "cp311", "--abi", "abi3", "--abi", "none"]
    for platform in PLATFORMS:
        argv += ["--platform", platform]
    argv += requirements
    return [Step(tuple(argv), "aarch64 wheels for Python 3.11 (offline install on the Pi)")]


def plan(
    pi: str,
    role: str,
    config: Path,
    keys: Path | None = None,
    bundle: Path | None = None,
    python: str = sys.executable,
    build: Path = ROOT / "build" / "flash",
) -> list[Step]:
    """Every command `make flash` runs, in order (local first, then on the Pi)."""
    if role not in APT_PACKAGES:
        raise UserError(f"ROLE must be trap or base, got {role!r}")
    if not pi or "@" not in pi:
        raise UserError(f"PI must be user@host, got {pi!r}")
    bundle = bundle or ROOT / "device" / "models" / "default"
    stage = build / role
    wheelhouse = ROOT / "build" / "wheelhouse-aarch64-cp311"
    requirements = device_requirements()
    unit = f"wildlink-{role}.service"
    venv = f"{PREFIX}/venv"
    remote = REMOTE_STAGE
    state = "/var/lib/wildlink" if role == "trap" else "/var/lib/wildlink-base"

    def ssh(*words: str, why: str) -> Step:
        return Step(("ssh", pi, shlex.join(words)), why)

    steps = [
        Step(("rm", "-rf", str(stage)), "fresh staging folder"),
        Step(("mkdir", "-p", str(stage), str(wheelhouse)), "staging folders"),
        Step((python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
              "-w", str(stage), str(ROOT)), "a wheel of the project"),
        *wheelhouse_steps(python, wheelhouse, requirements),
        Step(("cp", "-r", str(wheelhouse), str(stage / "wheelhouse")), "stage the wheelhouse"),
        Step(("cp", "-r", str(bundle), str(stage / "bundle")), "stage the model bundle"),
        Step(("cp", str(config), str(stage / f"{role}.toml")), "stage the config"),
        Step(("cp", str(ROOT / "deploy" / unit), str(stage / unit)), "stage the systemd unit"),
    ]
    if keys is not None:
        steps.append(Step(("cp", str(keys), str(stage / "keys.toml")), "stage the key file"))
    packages = " ".join(APT_PACKAGES[role])
    steps += [
        Step(("ssh", pi, f"dpkg -s {packages} >/dev/null || {{ echo 'on the Pi first run: "
              f"sudo apt install {packages}' >&2; exit 1; }}"), "apt packages present"),
        ssh("rm", "-rf", remote, why="clean remote staging"),
        Step(("rsync", "-az", "--delete", f"{stage}/", f"{pi}:{remote}/"), "copy everything"),
        ssh("sudo", "sh", "-c", "id -u wildlink >/dev/null 2>&1 || { g=; for x in gpio spi "
            "dialout video; do getent group $x >/dev/null && g=$g,$x; done; useradd --system "
            "--no-create-home --shell /usr/sbin/nologin --groups ${g#,} wildlink; }",
            why="service user (in the hardware groups that exist)"),
        ssh("sudo", "mkdir", "-p", PREFIX, "/etc/wildlink", state, why="folders"),
        ssh("sudo", "chown", "wildlink:wildlink", state, why="state folder owner"),
        ssh("sudo", "rm", "-rf", f"{PREFIX}/bundle", why="replace the bundle"),
        ssh("sudo", "cp", "-r", f"{remote}/bundle", f"{PREFIX}/bundle", why="model bundle"),
        ssh("sudo", "python3", "-m", "venv", "--system-site-packages", venv,
            why="venv that sees apt's picamera2, spidev, crcmod"),
        ssh("sudo", f"{venv}/bin/pip", "install", "--quiet", "--no-index", "--find-links",
            f"{remote}/wheelhouse", *requirements,
            why="dependencies, offline"),
        ssh("sudo", "sh", "-c", f"{venv}/bin/pip install --quiet --no-index --no-deps "
            f"--force-reinstall {remote}/wildlink-*.whl", why="wildlink itself, offline"),
        ssh("sudo", "install", "-m", "0644", f"{remote}/{role}.toml", f"/etc/wildlink/{role}.toml",
            why="config"),
    ]
    if keys is not None:
        steps.append(ssh("sudo", "install", "-m", "0600", "-o", "wildlink", "-g", "wildlink",
                         f"{remote}/keys.toml", "/etc/wildlink/keys.toml", why="keys, private"))
    steps += [
        ssh("sudo", "install", "-m", "0644", f"{remote}/{unit}", f"/etc/systemd/system/{unit}",
            why="systemd unit"),
        ssh("sudo", "systemctl", "daemon-reload", why="load the unit"),
        ssh("sudo", "systemctl", "enable", unit, why="start at boot"),
        ssh("sudo", "systemctl", "restart", unit, why="(re)start now"),
        ssh("systemctl", "--no-pager", "--lines=5", "status", unit, why="show it runs"),
    ]
    return steps


def execute(steps: list[Step], dry_run: bool) -> None:
    for step in steps:
        if dry_run:
            print(step.text())
            continue
        print(f"# {step.why}", file=sys.stderr)
        result = subprocess.run(step.argv)
        if result.returncode != 0:
            raise UserError(f"step failed ({step.why}): {step.text()}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make flash", description=__doc__.splitlines()[0])
    parser.add_argument("--pi", required=True, help="user@host of the Raspberry Pi")
    parser.add_argument("--role", required=True, choices=("trap", "base"))
    parser.add_argument("--config", type=Path, help="config file (default deploy/ROLE.toml)")
    parser.add_argument("--keys", type=Path, help="key file to install with mode 0600")
    parser.add_argument("--bundle", type=Path, help="model bundle (default device/models/default)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    config = args.config or ROOT / "deploy" / f"{args.role}.toml"
    try:
        for path in (config, args.keys, args.bundle):
            if path is not None and not path.exists():
                raise UserError(f"{path} does not exist")
        bundle = args.bundle or ROOT / "device" / "models" / "default"
        if not args.dry_run and not (bundle / "manifest.json").is_file():
            raise UserError(f"no model bundle at {bundle} (manifest.json missing)")
        execute(plan(args.pi, args.role, config, args.keys, args.bundle), args.dry_run)
    except UserError as exc:
        print(f"make flash: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
