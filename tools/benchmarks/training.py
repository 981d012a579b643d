"""Training section of BENCHMARKS.md: training speed and the int8 hyper-synthesis rate cost.

Speed is measured here on random patches (data loading excluded), after two warm-up steps.
The int8 vs float figures are the ones `wildlink export` measured when it wrote the shipped
bundle (they need the training checkpoint, which is not in the repository), read from its
manifest.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BUNDLE = ROOT / "device" / "models" / "default"
# (name, widths analysis/synthesis/latent/hyper, patch, batch)
CONFIGS = (
    ("tiny (tests)", (16, 16, 16, 8), 64, 2),
    ("default", (64, 96, 128, 64), 128, 8),
)


def _speed(widths, patch: int, batch: int, steps: int) -> float:
    from training.model import ModelConfig
    from training.train import steps_per_second

    a, s, m, h = widths
    return steps_per_second(ModelConfig(analysis=a, synthesis=s, latent=m, hyper=h), patch, batch, steps)


def _speed_table(quick: bool) -> str:
    configs = CONFIGS[:1] if quick else CONFIGS
    steps = 5 if quick else 30
    rows = [
        "| model | widths (g_a/g_s/M/Cz) | patch x batch | steps/s | patches/s |",
        "|---|---|---|---|---|",
    ]
    for name, widths, patch, batch in configs:
        rate = _speed(widths, patch, batch, steps)
        rows.append(
            f"| {name} | {'/'.join(map(str, widths))} | {patch} x {batch} | {rate:.2f} | "
            f"{rate * batch:.1f} |"
        )
    cpus = os.cpu_count()
    return (
        f"Training speed on this machine ({platform.processor() or platform.machine()}, "
        f"{cpus} logical CPUs, shared with whatever else runs), {steps} steps after warm-up, "
        "random patches:\n\n" + "\n".join(rows) + "\n\nCommand: `python -m tools.benchmarks.training"
        + (" --quick" if quick else "") + "` (real data: `wildlink train ...` prints steps/s "
        "at the end; see docs/training.md).\n"
    )


def _int8_table() -> str:
    try:
        manifest = json.loads((BUNDLE / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError):
        return "No shipped bundle in device/models/default: int8 figures not available.\n"
    cost = manifest.get("metrics", {}).get("int8_rate_cost")
    if not cost:
        return "The shipped bundle's manifest has no int8 measurements.\n"
    w = manifest["widths"]
    tail = [
        "",
        "Ops left float in analysis.tflite: "
        f"{', '.join(manifest.get('float_ops', [])) or 'none'}.",
        "",
        "Command: `wildlink export RUN --out BUNDLE --eval IMAGE ...` (figures stored in the "
        "manifest's `metrics`; the shipped default's command is in its MODEL_CARD.md).",
    ]
    if "levels" in cost:  # exports since the variable-rate models: the device's own pipeline
        lines = [
            f"The trap's int8 pipeline (device Encoder and Decoder) against the float model, "
            f"shipped bundle {manifest['model_id']} (widths {w['analysis']}/{w['synthesis']}/"
            f"{w['latent']}/{w['hyper']}, {manifest['training'].get('steps')} steps), "
            f"{cost['images']} images, exact bytes of z and y:",
            "",
            "| level | float bpp | int8 bpp | rate cost | float PSNR (dB) | int8 PSNR (dB) |",
            "|---|---|---|---|---|---|",
        ]
        lines += [f"| {r['level']} | {r['bpp_float']:.4f} | {r['bpp_int8']:.4f} | "
                  f"{r['percent']:+.2f} % | {r['psnr_float']:.2f} | {r['psnr_int8']:.2f} |"
                  for r in cost["levels"]]
        return "\n".join(lines + tail) + "\n"
    lines = [
        f"int8 vs float hyper-synthesis on the shipped bundle {manifest['model_id']} "
        f"(widths {w['analysis']}/{w['synthesis']}/{w['latent']}/{w['hyper']}, "
        f"{manifest['training'].get('steps')} steps), {cost['images']} images, same y and z, "
        "bytes from TFC's range coder with the indexes of each h_s:",
        "",
        "| h_s | bytes | rate cost |",
        "|---|---|---|",
        f"| float (rounded indexes) | {cost['bytes_float']} | - |",
        f"| int8, reference kernels (shipped) | {cost['bytes_int8']} | {cost['percent']:+.2f} % |",
        "",
        "| pipeline | bpp | PSNR (dB) |",
        "|---|---|---|",
    ]
    if "psnr_float_pipeline" in cost:
        lines.append(
            f"| float Keras g_a, h_a, h_s, g_s | {cost['bpp_float_pipeline']:.3f} | "
            f"{cost['psnr_float_pipeline']:.2f} |"
        )
    lines += [
        f"| trap: int8 g_a/h_a, int8 h_s; float g_s | {cost['bpp_int8_pipeline']:.3f} | "
        f"{cost['psnr_int8_pipeline']:.2f} |",
    ]
    return "\n".join(lines + tail) + "\n"


def run(quick: bool) -> str:
    return "## Training\n\n" + _speed_table(quick) + "\n" + _int8_table()


if __name__ == "__main__":  # pragma: no cover
    import sys

    print(run(quick="--quick" in sys.argv))
