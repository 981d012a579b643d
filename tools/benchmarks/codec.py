"""Trap codec benchmark: encode time per stage, int8 vs float analysis, peak memory, pre-filter.

Run alone: `python -m tools.benchmarks.codec [--quick] [--bundle DIR]`; `make bench` calls
`run(quick)`. Everything runs on one interpreter thread (the trap's setting) on 1024x768
frames cut from the shipped samples.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "data"
COMMAND = "python -m tools.benchmarks.codec"


def _frames(count: int) -> list[tuple[str, np.ndarray, list]]:
    """1024x768 frames (samples resized/cropped) with their MegaDetector boxes."""
    from device.imageio import load_image, resize
    from device.saliency import boxes_for, load_megadetector

    detections = load_megadetector(SAMPLES / "camtrap" / "megadetector.json")
    out = []
    for path in sorted((SAMPLES / "camtrap").glob("*.jpg")):
        image = load_image(path)
        h, w = image.shape[:2]
        scale = max(768 / h, 1024 / w)
        image = resize(image, max(768, round(h * scale)), max(1024, round(w * scale)))[:768, :1024]
        out.append((path.name, image, boxes_for(detections, path.name)))
    out.sort(key=lambda frame: not frame[2])  # frames with boxes first
    return out[:count]


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times))


def prefilter_section(frames, repeats: int) -> str:
    from device.boxes import levels_from_boxes
    from device.masks import grid_mask, half_mask, perlin_mask
    from device.prefilter import effective_kernel_width, prefilter

    name, image, boxes = frames[0]
    masks = {
        "half (K 1, 17)": half_mask(768, 1024),
        "grid (K 1, 5, 11, 17)": grid_mask(768, 1024),
        "perlin (K 1, 5, 9, 13)": perlin_mask(768, 1024),
        f"boxes of {name} (K 1, 17)": levels_from_boxes(boxes, 768, 1024),
    }
    lines = [
        "### Pre-filter (seed 001), ms per 1024x768 RGB frame, one thread",
        "",
        f"`{COMMAND}` (median of {repeats}).",
        "",
        "| mask | K_e (eq. 3) | ms |",
        "|---|---:|---:|",
    ]
    for label, levels in masks.items():
        ms = _median_ms(lambda lv=levels: prefilter(image, lv), repeats)
        lines.append(f"| {label} | {effective_kernel_width(levels):.2f} | {ms:.0f} |")
    lines += ["", _downscaled_blur_check(image, repeats)]
    return "\n".join(lines)


def _downscaled_blur_check(image: np.ndarray, repeats: int) -> str:
    """Why the pre-filter blurs at full resolution: a 2x downscaled blur is visibly different."""
    from device.imageio import resize
    from device.prefilter import _blur_axis, blur, gaussian_sigma

    rows = ["| K | PSNR exact vs 2x-downscaled blur (dB) | max abs diff | exact ms | downscaled ms |",
            "|---:|---:|---:|---:|---:|"]
    for size in (9, 13, 17):

        def downscaled(size=size):
            h, w = image.shape[:2]
            small = image.astype(np.float32).reshape(h // 2, 2, w // 2, 2, 3).mean(axis=(1, 3))
            sigma = np.sqrt(gaussian_sigma(size) ** 2 - 0.25) / 2  # the 2x2 box adds 0.25 px^2
            radius = int(np.ceil(3 * sigma))
            x = np.arange(-radius, radius + 1)
            g = np.exp(-(x * x) / (2 * sigma * sigma))
            for axis in (0, 1):
                small = _blur_axis(small, g / g.sum(), axis)
            return resize(small, h, w)

        exact = np.clip(np.rint(blur(image, size)), 0, 255)
        approx = np.clip(np.rint(downscaled()), 0, 255)
        mse = float(np.mean((exact - approx) ** 2))
        psnr = 10 * np.log10(255**2 / mse) if mse else float("inf")
        rows.append(
            f"| {size} | {psnr:.1f} | {np.abs(exact - approx).max():.0f} | "
            f"{_median_ms(lambda s=size: blur(image, s), repeats):.0f} | "
            f"{_median_ms(downscaled, repeats):.0f} |"
        )
    return "\n".join(
        ["Downscaled blur for large kernels (the issue's option), measured on the same frame:", ""]
        + rows
        + ["", "Not used: it is not indistinguishable (edges and burned-in text differ by 20 or "
           "more grey levels) and, in numpy, not faster than the separable full-size passes."]
    )


def encoder_section(
    frames, bundle_dir, repeats: int, run: str | None = None, quick: bool = False
) -> str:
    from device.codec.bundle import Bundle
    from device.codec.encoder import Encoder
    from device.codec.tflite import TFLiteModel, backend_name

    bundle = Bundle.load(bundle_dir)
    encoder = Encoder(bundle, size=1024, num_threads=1)
    # The same encoder with h_s on TFLite's reference kernels (what both ends ran before
    # device/codec/exact_int8.py): its containers must be the same bytes.
    before = Encoder(bundle, size=1024, num_threads=1)
    before.hyper = TFLiteModel(bundle.file("hyper_synthesis.tflite"), reference=True)
    stages = ("resize", "saliency", "prefilter", "analysis", "hyper", "coding")
    totals = {s: [] for s in stages}
    totals_ref = {s: [] for s in stages}
    sizes, same = [], 0
    for _ in range(repeats):
        for _, image, boxes in frames:
            result = encoder.encode(image, boxes=boxes, saliency="boxes", capture_time=0)
            old = before.encode(image, boxes=boxes, saliency="boxes", capture_time=0)
            for s in stages:
                totals[s].append(result.timings.get(s, 0.0))
                totals_ref[s].append(old.timings.get(s, 0.0))
            sizes.append(len(result.data))
            same += result.data == old.data
    lines = [
        f"### Encode time per stage at 1024x768, one thread ({backend_name()})",
        "",
        f"`{COMMAND} --bundle {bundle_dir}"
        + (f" --run {run}" if run else "")
        + f"`: model `{bundle.model_id}`, {len(frames)} frames "
        f"x {repeats}, MegaDetector boxes, step 0 (no budget), median ms. h_s in exact "
        "integer arithmetic (device/codec/exact_int8.py, what both ends run) and, in the same "
        "run, on TFLite's reference kernels (what they ran before).",
        "",
        "| stage | exact integer h_s | reference-kernel h_s |",
        "|---|---:|---:|",
    ]
    for s in stages:
        lines.append(f"| {s} | {1000 * float(np.median(totals[s])):.0f} | "
                     f"{1000 * float(np.median(totals_ref[s])):.0f} |")
    total = sum(float(np.median(totals[s])) for s in stages)
    total_ref = sum(float(np.median(totals_ref[s])) for s in stages)
    lines += [f"| **total** | **{1000 * total:.0f}** | **{1000 * total_ref:.0f}** |", "",
              f"Container size at step 0: median {int(np.median(sizes))} bytes; "
              f"{same} of {len(sizes)} containers byte-identical with either h_s.", ""]

    image = frames[0][1]
    padded = image[None].astype(np.float32) / 255.0  # 768x1024: already a multiple of 64
    int8_ms = _median_ms(lambda: encoder.analysis.run(padded), repeats)
    if not quick:
        plain = TFLiteModel(bundle.file("analysis.tflite"), num_threads=1, delegates=False)
        plain_ms = _median_ms(lambda: plain.run(padded), repeats)
        lines.append(f"int8 analysis with the default XNNPACK delegate {int8_ms:.0f} ms, "
                     f"without it {plain_ms:.0f} ms (the encoder uses the default).")
        lines.append("")
    float_path, origin = _float_analysis(bundle, run)
    if float_path is not None:
        fmodel = TFLiteModel(float_path, num_threads=1)
        float_ms = _median_ms(lambda: fmodel.run(padded), repeats)
        lines.append(f"Analysis (g_a + h_a) at 1024x768, one thread: int8 {int8_ms:.0f} ms, "
                     f"float32 {float_ms:.0f} ms (float/int8 = {float_ms / int8_ms:.2f}); "
                     f"the float model is {origin}.")
    else:
        lines.append(f"Analysis (g_a + h_a) at 1024x768: int8 {int8_ms:.0f} ms; float not "
                     f"measured ({origin}).")
    if not quick:
        lines += ["", _hyper_kernels(encoder, image, repeats)]
    lines += ["", _memory(encoder, frames[0])]
    return "\n".join(lines)


def _float_analysis(bundle, run: str | None) -> tuple[Path | None, str]:
    """A float32 analysis.tflite: the bundle's `analysis_float.tflite`, else converted from the
    training run's checkpoint (TensorFlow needed), else None and the reason."""
    shipped = bundle.path / "analysis_float.tflite"
    if shipped.is_file():
        return shipped, f"`{shipped.name}` from the bundle"
    run = run or os.environ.get("WILDLINK_RUN")
    if not run:
        return None, "the bundle has no analysis_float.tflite; pass --run RUN_DIR to convert one"
    try:
        import tensorflow as tf

        from training.model import load_checkpoint
    except ImportError as exc:
        return None, f"needs TensorFlow and training/: {exc}"
    model = load_checkpoint(run)
    spec = tf.TensorSpec([1, None, None, 3], tf.float32, name="image")

    @tf.function(input_signature=[spec])
    def analysis(image):
        y = model.g_a(image)
        return {"y": y, "z": model.h_a(tf.abs(y))}

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [analysis.get_concrete_function()], model
    )
    path = Path(tempfile.mkdtemp()) / "analysis_float.tflite"
    path.write_bytes(converter.convert())
    return path, f"converted without quantisation from the checkpoint in `{run}`"


def _hyper_kernels(encoder, image: np.ndarray, repeats: int) -> str:
    """h_s per 1024x768 frame: exact integers vs TFLite's reference and optimized kernels."""
    from device.codec import latents
    from device.codec.bundle import HYPER_SYNTHESIS
    from device.codec.tflite import TFLiteModel

    _, z = encoder.analyse(image)
    z_hat = latents.z_hat(latents.z_symbols(z, encoder.tables.z_offset), encoder.tables.z_offset)
    lut = encoder.tables.lut
    reference = TFLiteModel(encoder.bundle.file(HYPER_SYNTHESIS), reference=True)
    fast = TFLiteModel(encoder.bundle.file(HYPER_SYNTHESIS), num_threads=1)
    exact_idx = latents.hyper_indexes(encoder.hyper, z_hat, lut)
    ref_idx = latents.hyper_indexes(reference, z_hat, lut)
    fast_idx = latents.hyper_indexes(fast, z_hat, lut)
    exact_ms = _median_ms(lambda: latents.hyper_indexes(encoder.hyper, z_hat, lut), repeats)
    ref_ms = _median_ms(lambda: latents.hyper_indexes(reference, z_hat, lut), repeats)
    fast_ms = _median_ms(lambda: latents.hyper_indexes(fast, z_hat, lut), repeats)
    return (
        f"h_s per 1024x768 frame (one interpreter thread; numpy's BLAS as installed): exact "
        f"integers {exact_ms:.0f} ms, TFLite reference kernels {ref_ms:.0f} ms "
        f"(reference/exact = {ref_ms / exact_ms:.1f}), optimized kernels {fast_ms:.0f} ms. "
        f"Of {ref_idx.size} scale indexes, the exact path differs from the reference kernels "
        f"on {int((exact_idx != ref_idx).sum())} (it must be 0: tests/test_exact_int8.py) and "
        f"the optimized kernels on {int((fast_idx != ref_idx).sum())} (not used: they vary "
        "with the CPU)."
    )


def _memory(encoder, frame) -> str:
    _, image, boxes = frame
    tracemalloc.start()
    encoder.encode(image, boxes=boxes, saliency="boxes", capture_time=0)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return (
        f"Peak memory of one encode: {peak / 2**20:.1f} MiB of Python/numpy allocations "
        f"(tracemalloc); process peak RSS {rss:.0f} MiB (includes the interpreters, the "
        "TFLite arenas and this benchmark)."
    )


def saliency_section(data: Path) -> str:
    """Spectral residual against MegaDetector on eval/camtrap; the background model on a site."""
    from device.background import BackgroundModel
    from device.imageio import load_image, resize, transmit_shape
    from device.saliency import boxes_for, load_megadetector, spectral_residual

    folder = data / "eval" / "camtrap"
    detections = load_megadetector(folder / "megadetector.json")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".jpg")
    hits = total = 0
    areas, kept, ms = [], [], []
    for path in paths:
        image = load_image(path)
        image = resize(image, *transmit_shape(*image.shape[:2], 1024))
        start = time.perf_counter()
        found = spectral_residual(image)
        ms.append(1000 * (time.perf_counter() - start))
        areas.append(sum(b.area for b in found.boxes))
        for g in boxes_for(detections, path.name):
            total += 1
            hits += any(b.x < g.x + g.w and g.x < b.x + b.w and b.y < g.y + g.h
                        and g.y < b.y + b.h for b in found.boxes)
            r0, r1, c0, c1 = g.pixels(*image.shape[:2])
            kept.append(float((found.levels[r0:r1, c0:c1] >= 0.66).mean()))
    lines = [
        "### Saliency",
        "",
        f"`{COMMAND}` with `$WILDLINK_DATA` = `{data}`.",
        "",
        f"- Spectral residual on eval/camtrap ({len(paths)} frames at long side 1024, "
        f"{total} MegaDetector animal boxes with conf >= 0.2): a spectral box overlaps "
        f"{hits} of {total} animal boxes; spectral boxes cover {100 * np.mean(areas):.0f}% of a "
        f"frame on average; {100 * np.mean(kept):.0f}% of the animal-box area keeps a level >= "
        f"0.66 (K <= 5); {np.median(ms):.0f} ms per frame (median).",
    ]
    site = data / "sites" / "peru-sdzg1"
    if site.is_dir():
        model = BackgroundModel()
        counts = {"not ready or new scene": 0, "no boxes": 0, "boxes": 0}
        ms = []
        for path in sorted(site.glob("*.jpg")):
            image = load_image(path)
            start = time.perf_counter()
            found = model.observe(image)
            ms.append(1000 * (time.perf_counter() - start))
            key = (
                "not ready or new scene"
                if found is None
                else "boxes"
                if found.boxes
                else "no boxes"
            )
            counts[key] += 1
        lines.append(
            f"- Background model learning sites/peru-sdzg1 from scratch ({sum(counts.values())} "
            f"frames, bursts of 3, day and IR): "
            + ", ".join(f"{v} {k}" for k, v in counts.items())
            + f"; {np.median(ms):.0f} ms per frame (median). No ground truth: the boxes were "
            "checked by eye (docs/codec.md)."
        )
    return "\n".join(lines)


def _bundle_dir(explicit: str | None) -> Path | None:
    candidates = [explicit, os.environ.get("WILDLINK_BUNDLE"), ROOT / "device/models/default",
                  ROOT / "tests/data/tiny_bundle"]
    for c in candidates:
        if c and (Path(c) / "manifest.json").is_file():
            return Path(c)
    return None


def run(quick: bool, bundle: str | None = None, run_dir: str | None = None) -> str:
    repeats = 1 if quick else 3
    frames = _frames(1 if quick else 4)
    parts = [
        "## Trap codec",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other jobs; "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}. Ratios within one run carry "
        "the claims; absolute times vary with the load.",
        "",
        prefilter_section(frames, repeats),
        "",
    ]
    data = Path(os.environ.get("WILDLINK_DATA", ROOT.parent / "shared" / "data"))
    if not quick and (data / "eval" / "camtrap").is_dir():
        parts += [saliency_section(data), ""]
    bundle_dir = _bundle_dir(bundle)
    if bundle_dir is None:
        parts.append("No model bundle found (device/models/default or tests/data/tiny_bundle): "
                     "encode stages not measured.")
    else:
        parts.append(encoder_section(frames, bundle_dir, repeats, run_dir, quick))
    return "\n".join(parts) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--bundle", default=None, help="model bundle (default: the shipped one)")
    parser.add_argument("--run", default=None, help="training run of the bundle (float analysis)")
    args = parser.parse_args()
    print(run(args.quick, args.bundle, args.run))


if __name__ == "__main__":
    main()
