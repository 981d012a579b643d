"""`make flash PI=user@host ROLE=trap|base [CONFIG=file] [KEYS=file|new] [SIZE=px] [DRY_RUN=1]`.

Installs wildlink on a Raspberry Pi that has no internet: everything the Pi needs is prepared on
the workstation and copied over ssh/rsync, then installed offline.

1. a wheel of the project (`pip wheel --no-deps`), which carries the default model bundle;
2. a wheelhouse of aarch64 wheels for CPython 3.11 (Raspberry Pi OS bookworm), downloaded with
   `pip download --platform manylinux2014_aarch64 --only-binary=:all:` for the `device` extra.
   spidev and crcmod publish no aarch64 wheels (sdists only), so they come from Raspberry Pi OS
   apt (`python3-spidev`, `python3-crcmod`), as picamera2 does (`python3-picamera2`); the venv is
   made with `--system-site-packages` so it sees them;
3. the model bundle, the config (and the key file, mode 0600), the systemd unit.

Before anything touches the Pi the key file is settled: a config that names `keys.file` needs
KEYS=FILE (checked: private, valid, the trap's own key only) or KEYS=new (a fresh trap key in
`keys/`, added to `keys/keys-base.toml`); without it the service would restart-loop.

On the Pi it installs the missing apt packages (`--no-install-recommends`), enables the radio's
interface with `raspi-config nonint` (SPI, or the UART without its login console) and says when
a reboot is needed, caps a trap's transmit size at 768 px on a Pi with less than 1 GB of memory
(docs/codec.md), creates the `wildlink` user and `/opt/wildlink/venv`, installs offline, then
enables and restarts `wildlink-<role>.service`. `--dry-run` (DRY_RUN=1) prints every command
instead of running it. `wheelhouse()` is shared with `make pi-check`.
"""

from __future__ import annotations

import argparse
import configparser
import re
import shlex
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from device.codec.bundle import WEIGHTS_FOLDER, device_files
from tools.errors import UserError, WildlinkError

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
#: Where the services read their key file (the `keys.file` of deploy/*.toml).
REMOTE_KEYS = "/etc/wildlink/keys.toml"
#: KEYS=new writes here (git-ignored): one file per trap and the base station's collection.
KEY_DIR = ROOT / "keys"
BASE_KEYS = "keys-base.toml"
#: Long side a trap sends on a Pi with less than LOW_MEMORY_KB (docs/codec.md: the analysis
#: at 1024 px peaks at 311 MiB, too much beside the OS on 512 MB).
LOW_MEMORY_SIZE = 768
LOW_MEMORY_KB = 1024 * 1024
#: raspi-config nonint settings per radio type: (function, wanted value; 0 = on, 1 = off).
INTERFACES = {
    "sx1262": (("spi", 0),),
    "e22": (("serial_hw", 0), ("serial_cons", 1)),  # the UART on, its login console off
}
#: Set on the Pi when raspi-config changed something; /run is emptied by the reboot it needs.
REBOOT_MARK = "/run/wildlink-reboot-needed"


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


def read_config(config: Path) -> dict:
    """The raw TOML of a config (the Pi's own paths need not exist here)."""
    try:
        return tomllib.loads(config.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{config}: not valid TOML: {exc}") from None


def radio_type(raw: dict) -> str:
    """The config's radio type, as the services read it (device.service.config's default)."""
    from device.service.config import RadioConfig

    return str(raw.get("radio", {}).get("type", RadioConfig.type))


def transmit_size(raw: dict) -> int:
    from device.service.config import CodecConfig

    return int(raw.get("codec", {}).get("size", CodecConfig.size))


def set_codec_size(text: str, size: int) -> str:
    """The config text with `[codec] size = size` (replaced, or added under [codec])."""
    lines = text.splitlines()
    section = None
    for i, line in enumerate(lines):
        header = re.match(r"\s*\[([^\]]+)\]", line)
        if header:
            if section == "codec":  # left [codec] without a size line: add one
                lines.insert(i, f"size = {size}")
                return "\n".join(lines) + "\n"
            section = header.group(1).strip()
        elif section == "codec" and re.match(r"\s*size\s*=", line):
            lines[i] = re.sub(r"=\s*[^#]*?(\s*(#.*)?)$", f"= {size}\\1", line, count=1)
            return "\n".join(lines) + "\n"
    if section != "codec":
        lines.append("[codec]")
    lines.append(f"size = {size}")
    return "\n".join(lines) + "\n"


def interface_script(kind: str) -> str | None:
    """Shell (run as root on the Pi) that enables the radio's interface; None if it needs none."""
    settings = INTERFACES.get(kind)
    if not settings:
        return None
    checks = " ".join(
        f'if [ "$(raspi-config nonint get_{name})" != {want} ]; then '
        f"raspi-config nonint do_{name} {want} || exit 1; touch {REBOOT_MARK}; fi;"
        for name, want in settings
    )
    what = "SPI" if kind == "sx1262" else "the UART (serial hardware on, login console off)"
    return (f"if ! command -v raspi-config >/dev/null; then echo 'wildlink: no raspi-config on "
            f"this Pi: enable {what} by hand (docs/deployment.md)' >&2; exit 0; fi; {checks}")


def low_memory_script(config: str) -> str:
    """Shell that caps `[codec] size` at LOW_MEMORY_SIZE in `config` on a Pi under 1 GB."""
    return (f"mem=$(awk '/^MemTotal:/ {{print $2}}' /proc/meminfo); "
            f'if [ "$mem" -lt {LOW_MEMORY_KB} ]; then '
            f"sed -i -E '/^\\[codec\\]/,/^\\[/ s/^(size *= *)[0-9]+/\\1{LOW_MEMORY_SIZE}/' {config}"
            f" && echo \"wildlink: this Pi has $((mem / 1024)) MB of memory: codec.size set to "
            f"{LOW_MEMORY_SIZE} (docs/codec.md); SIZE=N overrides\" >&2; fi")


def plan(
    pi: str,
    role: str,
    config: Path,
    keys: Path | None = None,
    bundle: Path | None = None,
    python: str = sys.executable,
    build: Path = ROOT / "build" / "flash",
    size: int | None = None,
) -> list[Step]:
    """Every command `make flash` runs, in order (local first, then on the Pi).

    `size` writes `[codec] size` into the staged trap config; without it a trap whose size is
    above LOW_MEMORY_SIZE gets it lowered on a Pi with less than 1 GB of memory.
    """
    if role not in APT_PACKAGES:
        raise UserError(f"ROLE must be trap or base, got {role!r}")
    if not pi or "@" not in pi:
        raise UserError(f"PI must be user@host, got {pi!r}")
    raw = read_config(config)
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

    staged_config = stage / f"{role}.toml"
    if role == "trap" and size is not None:
        text = set_codec_size(config.read_text(encoding="utf-8"), size)
        copy_config = Step((python, "-c", "import sys, pathlib; pathlib.Path(sys.argv[1])"
                            ".write_text(sys.argv[2])", str(staged_config), text),
                           f"stage the config with codec.size = {size}")
    else:
        copy_config = Step(("cp", str(config), str(staged_config)), "stage the config")
    steps = [
        Step(("rm", "-rf", str(stage)), "fresh staging folder"),
        Step(("mkdir", "-p", str(stage), str(wheelhouse)), "staging folders"),
        Step((python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
              "-w", str(stage), str(ROOT)), "a wheel of the project"),
        *wheelhouse_steps(python, wheelhouse, requirements),
        Step(("cp", "-r", str(wheelhouse), str(stage / "wheelhouse")), "stage the wheelhouse"),
        Step(("mkdir", "-p", str(stage / "bundle")), "bundle staging folder"),
        Step(("cp", *(str(f) for f in device_files(bundle)), str(stage / "bundle")),
             f"stage the model bundle (not its float weights, {WEIGHTS_FOLDER}/)"),
        copy_config,
        Step(("cp", str(ROOT / "deploy" / unit), str(stage / unit)), "stage the systemd unit"),
    ]
    if keys is not None:
        steps.append(Step(("install", "-m", "0600", str(keys), str(stage / "keys.toml")),
                          "stage the key file (private)"))
    packages = " ".join(APT_PACKAGES[role])
    steps += [
        Step(("ssh", pi, f"dpkg -s {packages} >/dev/null 2>&1 || {{ sudo apt-get update && "
              f"sudo apt-get install -y --no-install-recommends {packages}; }} || {{ echo "
              f"'wildlink: the Pi needs these apt packages (once, with network): sudo apt-get "
              f"install --no-install-recommends {packages}' >&2; exit 1; }}"),
             "apt packages (installed if missing, without recommends)"),
        ssh("rm", "-rf", remote, why="clean remote staging"),
        Step(("rsync", "-az", "--delete", f"{stage}/", f"{pi}:{remote}/"), "copy everything"),
    ]
    if keys is not None:
        steps.append(Step(("rm", "-f", str(stage / "keys.toml")),
                          "no key left in the local staging folder"))
    script = interface_script(radio_type(raw))
    if script:
        steps.append(ssh("sudo", "sh", "-c", script, why="radio interface (raspi-config nonint)"))
    if role == "trap" and size is None and transmit_size(raw) > LOW_MEMORY_SIZE:
        steps.append(ssh("sh", "-c", low_memory_script(f"{remote}/{role}.toml"),
                         why="transmit size for a Pi with 512 MB"))
    steps += [
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
        staged = f"{remote}/keys.toml"
        steps.append(ssh("sudo", "sh", "-c", f"install -m 0600 -o wildlink -g wildlink {staged} "
                         f"{REMOTE_KEYS}; s=$?; rm -f {staged}; exit $s",
                         why="keys, private (and none left in the Pi's /tmp)"))
    steps += [
        ssh("sudo", "install", "-m", "0644", f"{remote}/{unit}", f"/etc/systemd/system/{unit}",
            why="systemd unit"),
        ssh("sudo", "systemctl", "daemon-reload", why="load the unit"),
        ssh("sudo", "systemctl", "enable", unit, why="start at boot"),
    ]
    if script:  # before the restart: a service without its radio fails `systemctl status`
        steps.append(Step(("ssh", pi, f"! test -e {REBOOT_MARK} || echo 'wildlink: raspi-config "
                           f"changed the interfaces: reboot the Pi now (ssh {pi} sudo reboot); "
                           "until then the radio is not there' >&2"), "reboot notice"))
    steps += [
        ssh("sudo", "systemctl", "restart", unit, why="(re)start now"),
        ssh("systemctl", "--no-pager", "--lines=5", "status", unit, why="show it runs"),
    ]
    return steps


def settle_keys(role: str, config: Path, raw: dict, keys: str | None,
                dry_run: bool = False) -> Path | None:
    """The key file to install, checked, or a fresh one for KEYS=new; refuses what would fail.

    Runs before anything touches the Pi: a config that names keys.file with no key file to
    go with it would leave the service restart-looping on "keys.file ... does not exist".
    """
    from tools.commands.keys import add_to_base, new_trap_key, read_keys, trap_file_name

    wanted = raw.get("keys", {}).get("file")
    trap_id = raw.get("trap", {}).get("id")
    if keys is None:
        if wanted is None:
            if raw.get("keys", {}).get("allow_unsigned") is not True:
                raise UserError(f"{config} has no [keys] file: pass KEYS= with a key file, or "
                                "set [keys] allow_unsigned = true (unsigned frames: for closed "
                                "tests only); the service refuses to start with neither")
            return None
        if role == "trap":
            hint = (f"KEYS=new (a fresh key for trap {trap_id} in keys/, added to "
                    f"keys/{BASE_KEYS}) or KEYS=FILE (from `wildlink keys new {trap_id}`)")
        else:
            hint = f"KEYS=keys/{BASE_KEYS} (the traps' keys, `wildlink keys add`)"
        raise UserError(f"{config} sets keys.file = {wanted} but no KEYS= was given: pass "
                        f"{hint}, or replace keys.file by allow_unsigned = true (unsigned "
                        "frames: for closed tests only)")
    if wanted is None:
        raise UserError(f"KEYS given but {config} has no [keys] file = \"{REMOTE_KEYS}\": the "
                        "service would not use the key")
    if wanted != REMOTE_KEYS:
        raise UserError(f"{config}: keys.file is {wanted}, but make flash installs the key file "
                        f"as {REMOTE_KEYS}; set keys.file = \"{REMOTE_KEYS}\"")
    if keys == "new":
        if role != "trap":
            raise UserError(f"KEYS=new makes a trap key; a base station takes the traps' keys: "
                            f"KEYS=keys/{BASE_KEYS}")
        from device.trapid import check_trap_id

        check_trap_id(trap_id, f"{config}: trap.id", UserError)
        path = KEY_DIR / trap_file_name(trap_id)
        if path.exists():
            raise UserError(f"{path} exists already: flash it with KEYS={path} (a new key would "
                            "cut off the base station that has the old one)")
        if dry_run:
            print(f"# KEYS=new: would write {path} and add trap {trap_id} to "
                  f"{KEY_DIR / BASE_KEYS}", file=sys.stderr)
            return path
        KEY_DIR.mkdir(mode=0o700, exist_ok=True)
        key = new_trap_key(trap_id, path)
        add_to_base(KEY_DIR / BASE_KEYS, {trap_id: key})
        print(f"# new key for trap {trap_id}: {path}; added to {KEY_DIR / BASE_KEYS} (flash the "
              "base station with it)", file=sys.stderr)
        return path
    path = Path(keys)
    if not path.exists():
        raise UserError(f"KEYS: {path} does not exist")
    found = read_keys(path)
    if role == "trap":
        if trap_id not in found:
            raise UserError(f"KEYS: {path} has no key for trap {trap_id} (trap.id in {config}); "
                            f"make one with `wildlink keys new {trap_id}`")
        if len(found) > 1:
            raise UserError(f"KEYS: {path} holds {len(found)} keys; a trap carries only its own "
                            f"(a stolen trap would give away the others): `wildlink keys new "
                            f"{trap_id}`")
    else:
        served = raw.get("base", {}).get("traps", [])
        missing = [t for t in served if t not in found]
        if missing:
            print(f"# note: base.traps lists {', '.join(map(str, missing))} but {path} has no "
                  "key for them: their frames will be refused", file=sys.stderr)
    return path


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
    parser.add_argument("--keys", metavar="FILE|new",
                        help="key file to install with mode 0600, or `new` for a fresh trap key "
                        "(needed when the config names keys.file)")
    parser.add_argument("--size", type=int, metavar="PX",
                        help="trap transmit size, written into the installed config (default: "
                        f"the config's, capped at {LOW_MEMORY_SIZE} on a Pi under 1 GB)")
    parser.add_argument("--bundle", type=Path, help="model bundle (default device/models/default)")
    parser.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = parser.parse_args(argv)
    config = args.config or ROOT / "deploy" / f"{args.role}.toml"
    try:
        for path in (config, args.bundle):
            if path is not None and not path.exists():
                raise UserError(f"{path} does not exist")
        if args.size is not None and not 64 <= args.size <= 4096:
            raise UserError(f"SIZE must be 64..4096 pixels, got {args.size}")
        bundle = args.bundle or ROOT / "device" / "models" / "default"
        device_files(bundle)  # a missing bundle fails here, before any key is written
        keys = settle_keys(args.role, config, read_config(config), args.keys, args.dry_run)
        steps = plan(args.pi, args.role, config, keys, args.bundle, size=args.size)
        execute(steps, args.dry_run)
    except (UserError, WildlinkError) as exc:
        print(f"make flash: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
