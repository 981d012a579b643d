"""Helpers shared by the service tests: small sample copies, configs, two services in threads."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
from pathlib import Path

from device.imageio import load_image, resize, save_image

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "data" / "camtrap"
TINY_BUNDLE = ROOT / "tests" / "data" / "tiny_bundle"


def small_samples(folder: Path, names=("missouri.jpg", "wellington.jpg"), width=256) -> Path:
    """Downscaled copies of camera-trap samples with their MegaDetector file (fast tests)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        image = load_image(SAMPLES / name)
        height = round(image.shape[0] * width / image.shape[1])
        save_image(folder / name, resize(image, height, width), quality=90)
    results = json.loads((SAMPLES / "megadetector.json").read_text())
    results["images"] = [e for e in results["images"] if e["file"] in names]
    (folder / "megadetector.json").write_text(json.dumps(results))
    return folder


def udp_ports(count: int = 2) -> list[int]:
    socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(count)]
    for sock in socks:
        sock.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for sock in socks:
        sock.close()
    return ports


def write_configs(tmp: Path, *, trap_port: int, base_port: int, triggers: str,
                  loss: float = 0.0, speedup: float = 50.0, keys: bool = True,
                  files: Path | None = None) -> tuple[Path, Path]:
    """trap.toml and base.toml linked by the UDP simulator, sharing a key file."""
    from device.link.auth import write_keys

    keyline = ""
    if keys:
        key_file = tmp / "keys.toml"
        if not key_file.exists():
            write_keys(key_file, {5: os.urandom(16)})
        keyline = f'[keys]\nfile = "{key_file}"\n'
    radio = 'type = "sim"\nregion = "eu868"\nfrequency_mhz = 869.525\nsf = 7\n'
    camera = f'[camera]\nbackend = "file"\nfiles = "{files}"\n' if files else ""
    trap = tmp / "trap.toml"
    trap.write_text(
        f"[trap]\nid = 5\n[radio]\n{radio}[radio.sim]\nlisten_port = {trap_port}\n"
        f"peer_port = {base_port}\nloss = {loss}\nspeedup = {speedup}\nseed = 3\n"
        f'[codec]\nbundle = "{TINY_BUNDLE}"\nsize = 256\nbudget = 600\nsaliency = "auto"\n'
        f"[triggers]\n{triggers}\n{camera}"
        f'[storage]\ndata_dir = "{tmp / "trap"}"\nmin_free_mb = 0\n{keyline}'
    )
    base = tmp / "base.toml"
    base.write_text(
        f'[base]\ndata_dir = "{tmp / "base"}"\nout_dir = "{tmp / "pictures"}"\n'
        f'bundle = "{TINY_BUNDLE}"\ntraps = [5]\n'
        f"[radio]\n{radio}[radio.sim]\nlisten_port = {base_port}\npeer_port = {trap_port}\n"
        f"loss = {loss}\nspeedup = {speedup}\nseed = 4\n{keyline}"
    )
    return trap, base


class Running:
    """A service's `run` in a thread, stopped by its event."""

    def __init__(self, service, **kwargs) -> None:
        self.service = service
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, kwargs=kwargs, daemon=True)
        self.thread.start()

    def _run(self, **kwargs) -> None:
        try:
            self.service.run(self.stop, **kwargs)
        except BaseException as exc:  # reported by close()
            self.error = exc

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=60)
        assert not self.thread.is_alive(), "service did not stop"
        if self.error is not None:
            raise self.error


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, dirs_exist_ok=True)
