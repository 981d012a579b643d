"""`make pi-check`'s comparison, run here against itself (no qemu): every part's latents."""

from __future__ import annotations

import types

import numpy as np
from service_helpers import TINY_BUNDLE, small_samples

from tools.pi_check import compare
from tools.pi_encode import encode_all


def test_pi_check_compares_the_latents_of_every_part(tmp_path, capsys):
    target = tmp_path / "stage"
    target.mkdir()
    small_samples(target / "images", names=("missouri.jpg",), width=320)
    (target / "bundle").symlink_to(TINY_BUNDLE)
    # What the arm64 root writes, made here: a budget and MegaDetector boxes give two parts.
    (written,) = encode_all(target / "images", target / "out", target / "bundle", 1500, 320)
    with np.load(written.with_suffix(".npz")) as saved:
        keys = list(saved)
    assert keys[-1].endswith("-context") and any(k.endswith("-region") for k in keys)
    assert compare(target, types.SimpleNamespace(budget=1500, size=320)) == 0
    assert "PASSED" in capsys.readouterr().out
    # An arm64 container that decodes here to other latents than arm64 coded is the failure.
    with np.load(written.with_suffix(".npz")) as saved:
        tampered = dict(saved)
    first = next(iter(tampered))
    tampered[first] = tampered[first] + 1
    np.savez(written.with_suffix(".npz"), **tampered)
    assert compare(target, types.SimpleNamespace(budget=1500, size=320)) == 1
    assert "FAILED" in capsys.readouterr().out
