"""DESIGN.md's dependency rule: device/ never imports TensorFlow, training or tools."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import device

FORBIDDEN = ("tensorflow", "tensorflow_compression", "training", "tools")


def device_modules() -> list[str]:
    names = ["device"]
    for info in pkgutil.walk_packages(device.__path__, prefix="device."):
        names.append(info.name)
    return names


def test_importing_every_device_module_never_imports_tensorflow():
    modules = device_modules()
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"bad = sorted(m for m in sys.modules if m.split('.')[0] in {FORBIDDEN!r})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"device imported {out.stdout.strip()}"
