"""`make pi-check`: encode on arm64 (Debian bookworm under qemu-user), decode on this machine.

Proves the determinism rule (DESIGN.md) across ARM and x86: the trap's container, made on an
arm64 Python 3.11 with the same wheelhouse `make flash` installs on a Pi, must decode here to
exactly what the trap quantised. A host encode of the same frames is compared too, and reported:
g_a's last layer is float (training/convert.py), so the two CPUs' y may differ in the last bit
and a rare latent round the other way. That is allowed: the base never recomputes y, and the
scale indexes come from the exact integer h_s on the z each container carries.

1. binfmt_misc must run aarch64 binaries (qemu-user-static + binfmt-support); where it cannot be
   mounted (an unprivileged container) the check is skipped with a message, exit code 0.
2. An arm64 bookworm root is built once with debootstrap and cached outside the repo
   (`/var/cache/wildlink/bookworm-arm64`, or `~/.cache/wildlink/` when /var/cache is not
   writable; override with WILDLINK_PI_ROOT).
3. A wheel of wildlink and the aarch64 wheelhouse (tools/flash.py) are installed offline in a
   venv inside the root; `tools/pi_encode.py` encodes the sample images there.
4. Here: the same frames are encoded, and both containers decoded. Checked bit for bit:
   the quantised latents the base recovers from the arm64 container against those the arm64
   encoder quantised (so the int8 h_s gave the same scale indexes on both CPUs: required), and
   the host's own container and picture against arm64's (reported).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from tools.flash import ROOT, device_requirements, wheelhouse_steps

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
STAGE = "/opt/picheck"
#: What Raspberry Pi OS gives the venv through --system-site-packages (tools/flash.py: FROM_APT);
#: crcmod is needed by the container; spidev only by the SX1262 driver.
ROOT_PACKAGES = ("python3", "python3-venv", "python3-crcmod")


def cache_root() -> Path:
    if "WILDLINK_PI_ROOT" in os.environ:
        return Path(os.environ["WILDLINK_PI_ROOT"])
    var = Path("/var/cache/wildlink")
    try:
        var.mkdir(parents=True, exist_ok=True)
        if os.access(var, os.W_OK):
            return var / f"{SUITE}-arm64"
    except OSError:
        pass
    return Path.home() / ".cache" / "wildlink" / f"{SUITE}-arm64"


def say(text: str) -> None:
    print(f"pi-check: {text}", flush=True)


def run(argv, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], check=True, **kwargs)


def binfmt_ready(install: bool) -> str | None:
    """None when aarch64 binaries run here, else the reason they cannot."""
    if not (BINFMT / "register").exists():
        if os.geteuid() != 0:
            return "binfmt_misc is not mounted and mounting it needs root"
        result = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            return f"cannot mount binfmt_misc ({result.stderr.strip() or 'not permitted'})"
    missing = [t for t in ("debootstrap", "qemu-aarch64-static") if shutil.which(t) is None]
    if missing and install and os.geteuid() == 0:
        say("installing qemu-user-static debootstrap binfmt-support (apt-get)")
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        subprocess.run(["apt-get", "update", "-qq"], env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "qemu-user-static", "debootstrap",
                        "binfmt-support"], env=env)
        missing = [t for t in ("debootstrap", "qemu-aarch64-static") if shutil.which(t) is None]
    if missing:
        return f"{', '.join(missing)} missing: apt-get install qemu-user-static debootstrap"
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists() and shutil.which("update-binfmts"):
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    if not entry.exists() or "enabled" not in entry.read_text():
        return "no qemu-aarch64 entry in binfmt_misc (update-binfmts --enable qemu-aarch64)"
    if "F" not in entry.read_text().split("flags:")[-1].split("\n")[0]:
        return "the qemu-aarch64 binfmt entry lacks the F flag, so it cannot run in a chroot"
    return None


def build_root(root: Path) -> None:
    """debootstrap an arm64 bookworm with Python 3.11, once (cached)."""
    if (root / ".wildlink-complete").exists():
        say(f"arm64 root cached at {root}")
        return
    tmp = root.with_name(root.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    say(f"building an arm64 {SUITE} root at {root} (a few minutes, once)")
    started = time.monotonic()
    run(["debootstrap", "--arch=arm64", "--variant=minbase", "--include=" + ",".join(ROOT_PACKAGES),
         SUITE, tmp, MIRROR], stdout=subprocess.DEVNULL)
    (tmp / ".wildlink-complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))
    shutil.rmtree(root, ignore_errors=True)
    tmp.rename(root)
    say(f"root built in {time.monotonic() - started:.0f} s")


def ensure_packages(root: Path) -> None:
    """apt-get the root packages a cached root built by an older version lacks."""
    missing = [p for p in ROOT_PACKAGES
               if not (root / "var/lib/dpkg/info" / f"{p}.list").exists()
               and not (root / "var/lib/dpkg/info" / f"{p}:arm64.list").exists()]
    if not missing:
        return
    say(f"adding {', '.join(missing)} to the cached root")
    shutil.copy("/etc/resolv.conf", root / "etc" / "resolv.conf")
    chroot(root, "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "
                 + " ".join(missing) + " >/dev/null")


def chroot(root: Path, command: str) -> subprocess.CompletedProcess:
    """Run a shell command in the arm64 root with /proc mounted."""
    proc = root / "proc"
    mounted = subprocess.run(["mount", "-t", "proc", "proc", str(proc)]).returncode == 0
    try:
        return run(["chroot", root, "/bin/sh", "-c", command], env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                   "HOME": "/root", "LANG": "C.UTF-8"})
    finally:
        if mounted:
            subprocess.run(["umount", str(proc)])


def stage(root: Path, bundle: Path, images: list[Path], budget: int, size: int) -> Path:
    """Copy the wheel, wheelhouse, bundle, images and job into the root."""
    target = root / STAGE.lstrip("/")
    target.mkdir(parents=True, exist_ok=True)
    for old in target.iterdir():  # keep the venv: installing under qemu takes minutes
        if old.name != "venv":
            shutil.rmtree(old) if old.is_dir() else old.unlink()
    (target / "images").mkdir()
    wheelhouse = ROOT / "build" / "wheelhouse-aarch64-cp311"
    wheelhouse.mkdir(parents=True, exist_ok=True)
    for step in wheelhouse_steps(sys.executable, wheelhouse, device_requirements()):
        result = subprocess.run(step.argv, capture_output=True, text=True)
        if result.returncode != 0:
            raise SystemExit(f"pi-check: FAILED: {step.why}:\n{result.stderr}")
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "-w", target, ROOT])
    shutil.copytree(wheelhouse, target / "wheelhouse")
    shutil.copytree(bundle, target / "bundle")
    for image in images:
        shutil.copy(image, target / "images" / image.name)
    boxes = images[0].parent / "megadetector.json"
    if boxes.is_file():
        shutil.copy(boxes, target / "images" / "megadetector.json")
    shutil.copy(ROOT / "tools" / "pi_encode.py", target / "pi_encode.py")
    (target / "job.json").write_text(json.dumps({"budget": budget, "size": size}))
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make pi-check", description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", type=Path, default=ROOT / "device" / "models" / "default")
    parser.add_argument("--images", type=Path, default=ROOT / "tests" / "data" / "camtrap")
    parser.add_argument("--budget", type=int, default=3000)
    parser.add_argument("--size", type=int, default=512,
                        help="transmit long side (512 keeps the emulated run to minutes)")
    parser.add_argument("--no-install", action="store_true", help="never apt-get install")
    args = parser.parse_args(argv)
    if not (args.bundle / "manifest.json").is_file():
        say(f"FAILED: no model bundle at {args.bundle}")
        return 1
    reason = binfmt_ready(install=not args.no_install)
    if reason is not None:
        say(f"SKIPPED: {reason}")
        return 0
    try:
        return _check(args)
    except subprocess.CalledProcessError as exc:
        say(f"FAILED: {shlex.join(str(a) for a in exc.cmd)} exited with {exc.returncode}")
        return 1


def _check(args) -> int:
    root = cache_root()
    build_root(root)
    ensure_packages(root)
    images = sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".jpg", ".png"))
    target = stage(root, args.bundle, images, args.budget, args.size)
    say("installing wildlink from the wheelhouse inside the arm64 root")
    started = time.monotonic()
    reqs = " ".join(f"'{r}'" for r in device_requirements())
    venv = ("grep -q 'include-system-site-packages = true' venv/pyvenv.cfg 2>/dev/null || "
            "{ rm -rf venv && python3 -m venv --system-site-packages venv; }")
    chroot(root, f"cd {STAGE} && {venv} && venv/bin/pip install --quiet --no-index "
                 f"--find-links wheelhouse {reqs} && venv/bin/pip install --quiet --no-index "
                 f"--no-deps --force-reinstall wildlink-*.whl")
    say(f"installed in {time.monotonic() - started:.0f} s; encoding {len(images)} images on arm64")
    started = time.monotonic()
    chroot(root, f"cd {STAGE} && venv/bin/python -c 'import platform; print(\"arm64 python\", "
                 f"platform.machine(), platform.python_version())' && venv/bin/python pi_encode.py")
    say(f"arm64 encode took {time.monotonic() - started:.0f} s (emulated)")
    return compare(target, args)


def compare(target: Path, args) -> int:
    """Encode the same frames here, decode both, and compare bit for bit."""
    import numpy as np

    from tools.pi_encode import encode_all, part_latents

    host = target / "host"
    encode_all(target / "images", host, target / "bundle", args.budget, args.size)
    from device.codec.decoder import Decoder

    decoder = Decoder(target / "bundle")
    failures = 0
    for arm_file in sorted((target / "out").glob("*.wl")):
        arm, mine = arm_file.read_bytes(), (host / arm_file.name).read_bytes()
        with np.load(arm_file.with_suffix(".npz")) as saved:
            arm_latents = dict(saved)
        latents, missing = part_latents(decoder, arm)
        latents_same = not missing and arm_latents.keys() == latents.keys() and all(
            np.array_equal(latents[k], arm_latents[k]) for k in latents)
        picture_arm, picture_host = decoder.decode(arm).image, decoder.decode(mine).image
        pictures_same = np.array_equal(picture_arm, picture_host)
        failures += not latents_same
        say(f"{arm_file.stem}: {len(arm)} bytes; latents decoded here "
            f"{'bit-exact' if latents_same else 'DIFFER'} with arm64's; host encode "
            f"{'identical' if arm == mine else 'differs (allowed: float y)'}, pictures "
            f"{'bit-exact' if pictures_same else 'differ'}")
    if failures:
        say(f"FAILED: {failures} arm64 container(s) do not decode here to the latents arm64 coded")
        return 1
    say("PASSED: arm64 encodes decode bit-exactly here (host encodes: see each line)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
