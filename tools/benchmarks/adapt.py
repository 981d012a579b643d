"""Adaptation section of BENCHMARKS.md: fine-tuning cost (full vs LoRA), pruning MACs and RD cost,
and the site-adaptation gain.

- Trainable parameters and peak memory: each mode runs in a fresh Python process (peak RSS of
  the training loop, /proc VmHWM reset before it), on random patches so data loading is left out.
  Memory does not depend on the weights, so a freshly initialised model of the same widths is used.
- MACs per 1024x768 image before and after pruning: counted from the layer shapes.
- RD cost of pruning and the site-adaptation gain need a trained model: the run folder in
  $WILDLINK_BASE_RUN (default ../runs/default); without it those rows are skipped with a note.
  Quick mode never trains a real model (smoke test only).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.benchmarks import ROOT, data_dir

DEFAULT_WIDTHS = (64, 96, 128, 64)  # analysis, synthesis, latent, hyper (the default run)
TINY_WIDTHS = (16, 16, 16, 8)
PRUNE_KEEP = (0.75, 0.5)  # fractions of the g_a width kept
SITE, OTHER_SITE = "peru-sdzg1", "peru-sdzg2"
SITE_STEPS, PRUNE_STEPS, EVAL_LIMIT, KODAK_LIMIT = 200, 150, 10, 8


def base_run() -> Path:
    return Path(os.environ.get("WILDLINK_BASE_RUN", ROOT.parent / "runs" / "default"))


# -- memory and parameters (child process) --------------------------------------------------
def _child(
    mode: str, widths: tuple[int, ...], patch: int, batch: int, steps: int, rank: int
) -> dict:
    import tensorflow as tf

    from training.finetune import count, encoder_variables, fit
    from training.lora import attach
    from training.model import ModelConfig, build_model

    a, s, m, h = widths
    model = build_model(ModelConfig(analysis=a, synthesis=s, latent=m, hyper=h))
    x = tf.random.stateless_uniform([batch, patch, patch, 3], seed=[1, 2])
    ds = tf.data.Dataset.from_tensors((x, tf.ones([batch, patch, patch, 1]))).repeat()
    if mode == "lora":
        variables = attach(model, rank).trainable_variables
    else:
        variables = encoder_variables(model)
    stats = fit(model, variables, ds, steps, 1e-4, verbose=0)
    stats["trainable_parameters"] = count(variables)
    return stats


def _measure(mode: str, widths, patch: int, batch: int, steps: int, rank: int) -> dict:
    args = [mode, ",".join(map(str, widths)), str(patch), str(batch), str(steps), str(rank)]
    proc = subprocess.run(
        [sys.executable, "-m", "tools.benchmarks.adapt", "--child", *args],
        capture_output=True, text=True, cwd=ROOT, timeout=1800,
        env={**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["?"])[-1]
        raise RuntimeError(f"{mode} measurement failed: {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _memory_table(quick: bool) -> list[str]:
    widths, patch, batch, steps = (TINY_WIDTHS, 64, 2, 2) if quick else (DEFAULT_WIDTHS, 128, 8, 10)
    rows = [
        "| mode | trainable parameters | peak RSS (MiB) | growth during training (MiB) | steps/s |",
        "|---|---|---|---|---|",
    ]
    modes = (("full", 0), ("lora", 4)) if quick else (("full", 0), ("lora", 4), ("lora", 8))
    for mode, rank in modes:
        if quick:  # smoke test: same process (the second row starts with warm caches)
            r = _child(mode, widths, patch, batch, steps, max(rank, 1))
        else:
            r = _measure(mode, widths, patch, batch, steps, max(rank, 1))
        name = "full (g_a + h_a)" if mode == "full" else f"LoRA rank {rank}"
        rows.append(
            f"| {name} | {r['trainable_parameters']:,} | {r['peak_rss_mib']:.0f} | "
            f"{r['peak_growth_mib']:.0f} | {r['steps_per_second']:.2f} |"
        )
    cmd = (
        f"python -m tools.benchmarks.adapt --child MODE {','.join(map(str, widths))} {patch} "
        f"{batch} {steps} RANK"
    )
    return [
        f"### Fine-tuning cost: full vs LoRA (widths g_a/g_s/M/Cz {'/'.join(map(str, widths))}, "
        f"{patch}x{patch} patches, batch {batch}, {steps} steps, random data)",
        "",
        *rows,
        "",
        f"Command (one process per row): `{cmd}` (prints JSON). Peak RSS is the whole process "
        "(TensorFlow itself takes most of it); the growth column is what the training loop added. "
        "The decoder must still be back-propagated through in both modes (the distortion "
        "gradient reaches the encoder through g_s), so activations dominate and LoRA saves mainly "
        "the encoder's gradients and Adam slots.",
        "",
    ]


# -- pruning MACs and RD cost -----------------------------------------------------------------
def prune_widths(width: int, include_base: bool = False) -> list[int]:
    kept = [max(1, round(width * k)) for k in PRUNE_KEEP]
    return [width, *kept] if include_base else kept


def _macs_rows(widths) -> list[tuple[int, int, int]]:
    from training.finetune import count, encoder_variables
    from training.model import ModelConfig, build_model
    from training.prune import encoder_macs

    a, s, m, h = widths
    rows = []
    for width in prune_widths(a, include_base=True):
        model = build_model(ModelConfig(analysis=width, synthesis=s, latent=m, hyper=h))
        rows.append((width, encoder_macs(model), count(encoder_variables(model))))
    return rows


def _prune_section(quick: bool, notes: list[str]) -> list[str]:
    widths = TINY_WIDTHS if quick else DEFAULT_WIDTHS
    macs = _macs_rows(widths)
    lines = [
        "### Structured pruning of g_a: MACs per 1024x768 image (encoder g_a + h_a)",
        "",
        "| g_a width | encoder MACs | vs unpruned | encoder parameters |",
        "|---|---|---|---|",
    ]
    for width, m, p in macs:
        lines.append(f"| {width} | {m / 1e9:.3f} G | {100 * (m / macs[0][1] - 1):+.1f} % | {p:,} |")
    lines += [
        "",
        f"Widths {'/'.join(map(str, widths))} (g_a/g_s/M/Cz). Command: `wildlink prune RUN "
        "--width W --out OUT` prints the same counts (training/prune.py `layer_macs`: conv "
        "H*W*k*k*Cin*Cout, GDN H*W*C^2).",
        "",
    ]
    run = base_run()
    if quick or not (run / "model_config.json").exists():
        notes.append(
            "pruning RD cost: not measured (quick mode or no trained run at "
            f"{run}; set WILDLINK_BASE_RUN)"
        )
        return lines
    from training.prune import PruneConfig, prune

    kodak = data_dir() / "eval" / "kodak"
    rows = [
        "| g_a width | MACs | Kodak bpp | PSNR (dB) | RD loss | after pruning only: bpp / PSNR |",
        "|---|---|---|---|---|---|",
    ]
    first = True
    for width in prune_widths(widths[0]):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = PruneConfig(
                source=str(run), out=tmp, data=(str(data_dir() / "train"),), width=width,
                steps=PRUNE_STEPS, eval_data=(str(kodak),), eval_limit=KODAK_LIMIT, force=True,
            )
            s = prune(cfg, verbose=0)
        e = s["eval"][str(kodak)]
        if first:
            b = e["before"]
            rows.append(
                f"| {s['width']['before']} | {s['macs']['before'] / 1e9:.3f} G | {b['bpp']:.4f} | "
                f"{b['psnr']:.2f} | {b['loss']:.4f} | - |"
            )
            first = False
        a, p = e["after"], e["pruned"]
        rows.append(
            f"| {width} | {s['macs']['after'] / 1e9:.3f} G | {a['bpp']:.4f} | {a['psnr']:.2f} | "
            f"{a['loss']:.4f} | {p['bpp']:.4f} / {p['psnr']:.2f} |"
        )
    return lines + [
        f"RD cost on {KODAK_LIMIT} evenly spaced Kodak images (model's rate estimate, quantised "
        f"latents, float pipeline), base run `{run}`, {PRUNE_STEPS} fine-tune steps on "
        "$WILDLINK_DATA/train with the decoder frozen:",
        "",
        *rows,
        "",
        f"Command: `wildlink prune {run} --width W --steps {PRUNE_STEPS} --eval-data "
        f"$WILDLINK_DATA/eval/kodak --eval-limit {KODAK_LIMIT} --out OUT`.",
        "",
    ]


# -- site adaptation --------------------------------------------------------------------------
def site_experiment(run: Path, steps: int = SITE_STEPS, limit: int = EVAL_LIMIT) -> list[dict]:
    """Fine-tune on the first half of SITE (full, LoRA); evaluate its second half and OTHER_SITE."""
    from training.finetune import FinetuneConfig, finetune

    sites = data_dir() / "sites"
    results = []
    for mode in ("full", "lora"):
        with tempfile.TemporaryDirectory() as tmp:
            cfg = FinetuneConfig(
                source=str(run), out=tmp, data=(str(sites / SITE),), mode=mode, steps=steps,
                holdout=0.5, eval_data=(str(sites / OTHER_SITE),), eval_limit=limit, force=True,
            )
            results.append(finetune(cfg, verbose=0))
    return results


def site_table(results: list[dict]) -> list[str]:
    rows = [
        "| mode | trainable params | eval set | bpp before -> after | PSNR before -> after (dB) "
        "| RD loss change |",
        "|---|---|---|---|---|---|",
    ]
    for s in results:
        name = "full" if s["mode"] == "full" else f"LoRA rank {s['rank']}"
        for key, e in s["eval"].items():
            b, a = e["before"], e["after"]
            label = f"{SITE} 2nd half" if key == "held-out" else Path(key).name
            rows.append(
                f"| {name} | {s['trainable_parameters']:,} | {label} ({a['images']} images) | "
                f"{b['bpp']:.4f} -> {a['bpp']:.4f} ({100 * (a['bpp'] / b['bpp'] - 1):+.1f} %) | "
                f"{b['psnr']:.2f} -> {a['psnr']:.2f} | {100 * (a['loss'] / b['loss'] - 1):+.1f} % |"
            )
    return rows


def _site_section(quick: bool, notes: list[str]) -> list[str]:
    run = base_run()
    if quick or not (run / "model_config.json").exists():
        notes.append(f"site adaptation: not run (quick mode or no trained run at {run})")
        return []
    results = site_experiment(run)
    return [
        f"### Site adaptation: encoder fine-tuned on the first half of {SITE}",
        "",
        *site_table(results),
        "",
        f"Command (per mode): `wildlink finetune {run} --data $WILDLINK_DATA/sites/{SITE} "
        f"--holdout 0.5 --eval-data $WILDLINK_DATA/sites/{OTHER_SITE} --eval-limit {EVAL_LIMIT} "
        f"--mode full|lora --steps {SITE_STEPS} --out OUT`. Rate is the model's estimate on whole "
        f"frames ({EVAL_LIMIT} evenly spaced per set), lambda of the base model; decoder frozen.",
        "",
    ]


def run(quick: bool) -> str:
    start = time.monotonic()
    notes: list[str] = []
    lines = ["## Adaptation (site fine-tuning, LoRA, pruning)", ""]
    lines += _memory_table(quick)
    lines += _prune_section(quick, notes)
    lines += _site_section(quick, notes)
    if notes:
        lines += ["Notes: " + "; ".join(notes) + ".", ""]
    lines.append(f"Section time: {time.monotonic() - start:.0f} s.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        mode, widths, patch, batch, steps, rank = sys.argv[2:8]
        result = _child(
            mode, tuple(int(w) for w in widths.split(",")), int(patch), int(batch), int(steps),
            int(rank),
        )
        print(json.dumps(result))
    else:
        print(run(quick="--quick" in sys.argv))
