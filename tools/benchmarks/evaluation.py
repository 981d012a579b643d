"""BENCHMARKS.md section: rate-distortion against the classical codecs, and seed 001.

Full mode (`make bench`): eval/camtrap at long side 1024 with MegaDetector boxes (sweep, byte
budgets, with and without the saliency pre-filter), eval/kodak full-image RD, and the seed-001
experiments on both. Plots go to docs/benchmarks/ so BENCHMARKS.md can show them. Quick mode
runs the same code on the four shipped samples at a small size (a smoke test, not a result).
"""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tools.benchmarks import ROOT, SAMPLES, data_dir

BUDGETS = (1000, 2000, 4000, 8000)
CLASSICAL = ("jpeg", "webp", "avif", "jp2")
KODAK_CODECS = ("jpeg", "avif")  # beside wildlink: Kodak is about wildlink vs bmshj2018
WILDLINK_STEPS = (0.0, 5.0, 10.0)  # j_g: quantisation step x1, x1.85, x3.4 (d ~ 0.123)
WILDLINK_FRAMES = 4  # camtrap frames with boxes that wildlink runs on (seconds per frame)
SEED001_LIMIT, SEED001_DOWNSTREAM = 8, 2
KODAK_LIMIT = 24  # all of them: the published curve averages all 24
PLOTS = ROOT / "docs" / "benchmarks"
#: The fair-baseline table (issue 13): budgets, and the whole-frame codecs at their best size.
FAIR_BUDGETS = (1000, 2000, 3000, 8000)
FAIR_WHOLE_FRAME = ("avif", "webp", "jpeg", "jp2")


def _wildlink_coder(notes: list[str]):
    """The wildlink coder on the default bundle, or None with the reason noted."""
    try:
        from tools.wildlink_coder import WildlinkCoder

        return WildlinkCoder.from_bundle(None)
    except Exception as exc:  # any failure: the classical tables must still be written
        notes.append(f"wildlink rows: not available ({type(exc).__name__}: "
                     f"{str(exc).splitlines()[0] if str(exc) else ''})")
        return None


# Balle et al. 2018 (ICLR), hyperprior, MSE-optimised, on Kodak: the authors' published points
# as collected in InterDigitalInc/CompressAI results/image/kodak/paper-bmshj2018-hyperprior.json.
BMSHJ2018_KODAK_BPP = (0.115239, 0.185698, 0.301804, 0.468972, 0.686378, 0.966864, 1.307441,
                       1.727503)
BMSHJ2018_KODAK_PSNR = (27.106351, 28.679134, 30.616753, 32.554935, 34.580960, 36.720366,
                        38.807960, 40.794920)


#: Kodak targets for the codecs measured at byte budgets (AVIF best res.), bits per pixel of a
#: 768x512 image; the done criterion compares over KODAK_DONE_BPP, and one line at KODAK_AT_BPP.
KODAK_BPP = (0.03, 0.05, 0.08, 0.13, 0.2, 0.3, 0.5, 0.8, 1.2, 1.5)
KODAK_PIXELS = 768 * 512
KODAK_DONE_BPP = (0.05, 0.5)
KODAK_AT_BPP = 0.13


def kodak_budget(bpp: float) -> int:
    """Bytes of a 768x512 Kodak image at `bpp` bits per pixel."""
    return int(round(bpp * KODAK_PIXELS / 8))


def psnr_at(bpp: Sequence[float], psnr: Sequence[float], rate: float) -> float:
    """PSNR of a curve at `rate` bpp, linear in log-rate between its points; NaN outside."""
    points = sorted((b, q) for b, q in zip(bpp, psnr, strict=True)
                    if b > 0 and math.isfinite(b) and math.isfinite(q))
    if not points or not points[0][0] <= rate <= points[-1][0]:
        return float("nan")
    rates, qualities = zip(*points, strict=True)
    return float(np.interp(math.log(rate), np.log(rates), qualities))


def bd_rate_over(anchor: Sequence[tuple[float, float]], test: Sequence[tuple[float, float]]
                 ) -> float:
    """`tools.rd.bd_rate` of test against anchor, (bpp, PSNR) points, with the test curve cut to
    the anchor's PSNR range plus one point either side: a cubic fitted over a test curve much
    longer than the anchor's would bend inside the range that is integrated."""
    from tools.rd import bd_rate

    points = sorted((q, b) for b, q in test if math.isfinite(q) and math.isfinite(b))
    if len(anchor) < 2 or len(points) < 2:
        return float("nan")
    low, high = min(q for _, q in anchor), max(q for _, q in anchor)
    below = [i for i, (q, _) in enumerate(points) if q < low]
    above = [i for i, (q, _) in enumerate(points) if q > high]
    first = below[-1] if below else 0
    last = above[0] if above else len(points) - 1
    kept = points[first:last + 1]
    return bd_rate([b for b, _ in anchor], [q for _, q in anchor],
                   [b for _, b in kept], [q for q, _ in kept])


def _best_points(result) -> list[dict]:
    """Per Kodak budget of the best-resolution run: target bpp, images that fit, mean bpp, PSNR
    and long side coded (over the images that fit)."""
    rows: dict[int, list] = {}
    for row in result.rows:
        rows.setdefault(row.budget, []).append(row)
    points = []
    for bpp in KODAK_BPP:
        members = rows.get(kodak_budget(bpp), [])
        fits = [r for r in members if not math.isnan(r.bytes)]
        means = {name: float(np.mean([getattr(r, name) for r in fits])) if fits
                 else float("nan") for name in ("bpp", "psnr", "setting")}
        points.append({"target": bpp, "budget": kodak_budget(bpp), "fit": len(fits),
                       "images": len(members), "bpp": means["bpp"], "psnr": means["psnr"],
                       "side": means["setting"]})
    return points


def _published_kodak(result, best: list[dict]) -> list[str]:
    """BD-rate of each Kodak series against published bmshj2018-hyperprior and against AVIF at
    its best resolution over KODAK_DONE_BPP (the done criterion), and PSNR at KODAK_AT_BPP."""
    from tools.report import sweep_curves

    bmshj = list(zip(BMSHJ2018_KODAK_BPP, BMSHJ2018_KODAK_PSNR, strict=True))
    full = [p for p in best if p["fit"] == p["images"] > 0]  # a mean over all the images
    low, high = KODAK_DONE_BPP
    done = [(p["bpp"], p["psnr"]) for p in full if low <= p["target"] <= high]
    series = {result.labels.get(k, k): [(p["bpp"], p["psnr"]) for p in pts]
              for k, pts in sweep_curves(result.rows).items()}
    series["AVIF best res."] = [(p["bpp"], p["psnr"]) for p in full]

    def cell(anchor, test) -> str:
        value = bd_rate_over(anchor, test)
        return "- (no overlap)" if value != value else f"{value:+.1f}%"

    lines = ["#### eval/kodak against published bmshj2018-hyperprior (MSE) and AVIF best res.",
             "", "Balle et al. 2018 as published (CompressAI's copy of the official points): "
             + ", ".join(f"{q:.2f} dB @ {b:.3f} bpp" for b, q in bmshj if b < 0.7) + ".", "",
             f"| codec | BD-rate vs bmshj2018 | BD-rate vs AVIF best res. {low}-{high} bpp |",
             "|---|---|---|"]
    lines += [f"| {name} | {cell(bmshj, pts)} | {cell(done, pts)} |"
              for name, pts in series.items()]
    lines += ["", "Full-image PSNR; negative = fewer bytes than the anchor at equal quality. "
              "BD-rate over the PSNR range the anchor covers, the test curve cut to that range "
              "plus one point either side; AVIF best res. only at budgets every image met.", ""]
    wl = series.get("wildlink")
    if wl:
        ours = psnr_at(*zip(*wl, strict=True), KODAK_AT_BPP)
        theirs = psnr_at(BMSHJ2018_KODAK_BPP, BMSHJ2018_KODAK_PSNR, KODAK_AT_BPP)
        lines += [f"At {KODAK_AT_BPP} bpp (interpolated, linear in log-rate): wildlink "
                  f"{ours:.2f} dB, bmshj2018 {theirs:.2f} dB, difference {ours - theirs:+.2f} dB.",
                  ""]
    return lines


def _best_table(best: list[dict]) -> list[str]:
    lines = ["#### eval/kodak: AVIF at its best resolution per byte budget", "",
             "| target bpp | budget (B) | fit | bpp | PSNR | mean long side (px) |",
             "|---|---|---|---|---|---|"]
    for p in best:
        lines.append(f"| {p['target']:g} | {p['budget']} | {p['fit']}/{p['images']} | "
                     f"{p['bpp']:.4f} | {p['psnr']:.2f} | {p['side']:.0f} |")
    return lines + ["", "Long side 768 down to 128 px, 4:2:0 or 4:4:4 and the quality with the "
                    "best full-image PSNR within the budget, scaled back to 768x512 "
                    "(tools/bestres.py); means over the images that fit.", ""]


def _kodak_plot(result, best: list[dict], path: Path) -> Path:
    """wildlink, AVIF native, AVIF best res. and published bmshj2018 on one PSNR-rate plot."""
    from tools.rd import plot_curves
    from tools.report import sweep_curves

    curves = {k: v for k, v in sweep_curves(result.rows).items() if k.split("+")[0] != "jpeg"}
    curves["avif-best"] = [p for p in best if p["fit"] == p["images"] > 0]
    curves["bmshj2018"] = [{"bpp": b, "psnr": q}
                           for b, q in zip(BMSHJ2018_KODAK_BPP, BMSHJ2018_KODAK_PSNR, strict=True)]
    labels = {**result.labels, "avif-best": "AVIF best res.",
              "bmshj2018": "bmshj2018-hyperprior (published)"}
    plot_curves(curves, "psnr", labels, path, "eval/kodak, full-image PSNR")
    return path


SEED000_SITE = "peru-sdzg1"
SEED000_SIZE, SEED000_LIMIT, SEED000_STEPS = 512, 10, (0, 5, 10)
#: Site-adapted example bundles: device/models/sites/<site>/<mode>[-guided] (docs/adaptation.md).
SEED000_MODES = ("full", "lora")


def seed000_bundles(models: Path, site: str) -> tuple[dict[str, Path], dict[str, Path]]:
    """(bundles, guided bundles) for seed 000: the default as baseline and the site's adapted
    encoders; a `-guided` folder (fine-tuned with the 0.001:1 weighting) replaces its plain twin
    in the guided run. Missing folders are left out."""
    default = models / "default"
    if not (default / "manifest.json").is_file():
        return {}, {}
    folder = models / "sites" / site
    plain, guided = {"baseline": default}, {"baseline": default}
    for mode in SEED000_MODES:
        if (folder / mode / "manifest.json").is_file():
            plain[mode] = guided[mode] = folder / mode
        if (folder / f"{mode}-guided" / "manifest.json").is_file():
            guided[mode] = folder / f"{mode}-guided"
    return plain, guided


def _seed000(data: Path, notes: list[str]) -> list[str]:
    """Seed 000 on the shipped bundles: the default as baseline, the site-adapted examples in
    device/models/sites/ beside it."""
    from tools.seed000 import run_seed000

    bundles, guided = seed000_bundles(ROOT / "device" / "models", SEED000_SITE)
    if len(bundles) < 2:
        notes.append("seed 000: not run (needs device/models/default and site-adapted bundles "
                     f"in device/models/sites/{SEED000_SITE}/)")
        return []
    site = data / "sites" / SEED000_SITE
    args = " ".join(f"--bundle {k}={_rel(v)}" for k, v in bundles.items())
    args += "".join(f" --guided-bundle {k}={_rel(v)}" for k, v in guided.items())
    try:
        text = run_seed000(site, bundles, PLOTS / "seed000", guided_bundles=guided,
                           size=SEED000_SIZE, limit=SEED000_LIMIT, steps=SEED000_STEPS)
    except Exception as exc:  # keep the rest of the section
        notes.append(f"seed 000 failed: {type(exc).__name__}: {exc}")
        return []
    return [
        "### Seed 000 reproduced: compression ratio against SSIM on a site", "",
        f"Command: `python -m tools.seed000 --site $WILDLINK_DATA/sites/{SEED000_SITE} {args} "
        f"--size {SEED000_SIZE} --limit {SEED000_LIMIT} --steps "
        f"{','.join(map(str, SEED000_STEPS))} --out out/seed000` (the last {SEED000_LIMIT} "
        "frames of the test half)", "",
        "Without guidance every codec gets the plain frame. With guidance the background model's "
        "boxes drive the pre-filter (blur outside the animals) and wildlink's ROI steps; the "
        "full and LoRA encoders are then the ones fine-tuned with the 0.001:1 background "
        "weighting (`-guided` bundles). The baseline is the default model in both runs: it was "
        "trained without boxes, so only the blur and the ROI steps guide it.", "",
        text.replace(str(PLOTS / "seed000") + "/", _rel(PLOTS / "seed000") + "/"),
        f"![seed000]({_rel(PLOTS / 'seed000' / 'seed000.png')})", "",
    ]


def _model_text(coder) -> str:
    """Which bundle the wildlink rows come from (id, folder, training steps)."""
    bundle = coder.encoder.bundle
    steps = (bundle.manifest.get("training") or {}).get("steps")
    return (f"bundle `{bundle.model_id}` ({_rel(Path(bundle.path))}"
            + (f", {steps} training steps" if steps else "") + ")")


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


def _embed(written: dict, keys: list[str]) -> list[str]:
    return [f"![{k}]({_rel(written[k])})" for k in keys if k in written]


def run(quick: bool) -> str:
    from tools.baselines import CODECS
    from tools.evaluate import ClassicalCoder

    start = time.monotonic()
    notes: list[str] = []
    data = data_dir()
    if quick:
        out = Path(tempfile.mkdtemp(prefix="wildlink-eval-"))
        camtrap, size, budgets = SAMPLES / "camtrap", 320, (2000, 8000)
        coders = [ClassicalCoder(CODECS[n], CODECS[n].sweep[::2]) for n in CLASSICAL]
    else:
        out = PLOTS
        camtrap, size, budgets = data / "eval" / "camtrap", 1024, BUDGETS
        coders = [ClassicalCoder(CODECS[n]) for n in CLASSICAL]
    wildlink = _wildlink_coder(notes)
    if wildlink is not None:
        wildlink.sweep = WILDLINK_STEPS
    lines = ["## Rate-distortion against JPEG, WebP, AVIF and JPEG 2000", ""]
    if quick:
        lines += ["**QUICK mode**: 4 shipped samples at long side 320, half the settings. A "
                  "smoke test of the machinery; these numbers are not results.", ""]
    lines += _camtrap(camtrap, size, budgets, coders, wildlink, out, quick)
    lines += _fair_baselines(camtrap, size, out, quick, notes)
    if not quick:
        lines += _kodak(data, coders, wildlink, out)
    lines += _seed001_section(data, out, quick)
    if not quick:
        lines += _seed000(data, notes)
    if notes:
        lines += ["Notes: " + "; ".join(notes), ""]
    lines.append(f"Section time: {time.monotonic() - start:.0f} s.")
    return "\n".join(lines) + "\n"


def _camtrap(camtrap: Path, size: int, budgets, coders, wildlink, out: Path, quick: bool):
    """Classical codecs on every frame with boxes; wildlink beside them on the first few."""
    from tools.evaluate import EvalResult, load_images, run_evaluation, saliency_prefilter
    from tools.report import markdown_report, write_outputs

    every = load_images(camtrap, camtrap / "megadetector.json", size)
    boxed = [im for im in every if im.boxes]
    images = boxed  # every frame with boxes (17 in eval/camtrap)
    both = {"none": None, "saliency": saliency_prefilter}
    # MS-SSIM (the slowest metric) is left to the Kodak table and `wildlink eval`.
    result = run_evaluation(images, coders, prefilters=both, budgets=budgets, size=size,
                            with_ms_ssim=False)
    written = write_outputs(result, out / "camtrap", title="eval/camtrap")
    md = "$WILDLINK_DATA/eval/camtrap"
    classical = ",".join(c.name for c in coders)
    lines = [
        f"### eval/camtrap: the {len(images)} frames (of {len(every)}) with MegaDetector animal "
        f"boxes (conf >= 0.2), long side {size}", "",
        f"Command: `wildlink eval --images {md} --boxes {md}/megadetector.json --boxed-only "
        f"--limit {len(images)} --codecs {classical} --prefilter both --size {size} "
        f"--budgets {','.join(map(str, budgets))} --no-ms-ssim --out out/eval-camtrap`"
        + (" (quick mode uses every other setting)" if quick else ""), "",
        "'+ saliency' = seed 001's blur (device/prefilter.py) with the MegaDetector boxes as the "
        "mask (1 inside, 0 = K 17 outside) before the codec; quality is always measured against "
        "the original frame. Bytes are the codec's whole file (wildlink: the whole container).",
        "",
        markdown_report(result, "camtrap", level=4),
        *([] if quick else _embed(written, ["rd_box_psnr", "budget", "rd_psnr"])),
        "",
    ]
    if wildlink is None:
        return lines
    subset = images[:WILDLINK_FRAMES]
    names = {im.name for im in subset}
    wl_budgets = tuple(b for b in budgets if b >= 2000)
    wl = run_evaluation(subset, [wildlink], prefilters=both, budgets=wl_budgets, size=size,
                        with_ms_ssim=False)
    rows = wl.rows + [r for r in result.rows if r.image in names]
    combined = EvalResult(rows=rows, labels={**wl.labels, **result.labels},
                          seconds=wl.seconds, image_count=len(subset), size=size)
    w_written = write_outputs(combined, out / "camtrap-wildlink", title="eval/camtrap (wildlink)")
    steps = ",".join(str(int(s)) for s in WILDLINK_STEPS)
    lines += [
        f"### eval/camtrap: wildlink against the classical codecs on the first {len(subset)} "
        "frames with boxes", "",
        f"Command: `wildlink eval --images {md} --boxes {md}/megadetector.json --boxed-only "
        f"--limit {len(subset)} --codecs wildlink,{classical} --prefilter both --size {size} "
        f"--budgets {','.join(map(str, wl_budgets))} --wildlink-steps {steps} --no-ms-ssim "
        "--out out/eval-camtrap-wildlink` (wildlink on fewer frames because each frame costs "
        "seconds to encode and decode on this machine; the classical rows are the same frames' "
        "rows of the table above)", "",
        f"Model: {_model_text(wildlink)}.", "",
        "wildlink gets the same pre-filtered pixels as the others and uses the boxes for its ROI "
        "steps (a coarser quantisation step outside the boxes) in both runs; its settings are "
        "the global step j_g.", "",
        markdown_report(combined, "camtrap, wildlink", level=4),
        *([] if quick else _embed(w_written, ["rd_box_psnr", "budget"])),
        "",
    ]
    return lines


def fair_coders(notes: list[str], whole_frame=FAIR_WHOLE_FRAME, schemes=True):
    """(coders run as they are, coders run on the blurred frame) of the fair-baseline table:
    wildlink two-part and one-part (each with its own pre-filter), AVIF crop+context, and the
    whole-frame codecs at their best resolution after the saliency blur."""
    from tools.baselines import CODECS
    from tools.bestres import BestResolutionCoder
    from tools.twopart import TwoPartCoder
    from tools.wildlink_coder import SCHEMES, scheme_coder

    plain = []
    for name in SCHEMES if schemes else ():
        try:
            plain.append(scheme_coder(name))
        except Exception as exc:  # a broken wildlink must not cost the classical rows
            notes.append(f"{name}: failed to load ({type(exc).__name__}: {exc})")
    plain.append(TwoPartCoder())
    return plain, [BestResolutionCoder(CODECS[n]) for n in whole_frame]


def _fair_baselines(camtrap: Path, size: int, out: Path, quick: bool, notes: list[str]):
    """Issue 13's table: every scheme at its best within each budget, on the boxed frames."""
    from tools.evaluate import EvalResult, load_images, run_evaluation, saliency_prefilter
    from tools.report import markdown_report, write_outputs

    images = [im for im in load_images(camtrap, camtrap / "megadetector.json", size)
              if im.boxes]
    budgets = (3000,) if quick else FAIR_BUDGETS
    if quick:
        images = images[:1]
    plain, blurred = fair_coders(notes, ("avif",) if quick else FAIR_WHOLE_FRAME)
    kw = dict(budgets=budgets, sweep=False, with_ms_ssim=False, size=size)
    first = run_evaluation(images, plain, **kw)
    second = run_evaluation(images, blurred, prefilters={"saliency": saliency_prefilter}, **kw)
    result = EvalResult(rows=first.rows + second.rows, labels={**first.labels, **second.labels},
                        seconds=first.seconds + second.seconds, image_count=len(images),
                        size=size)
    written = write_outputs(result, out / "camtrap-fair", title="eval/camtrap, fair baselines")
    md = "$WILDLINK_DATA/eval/camtrap"
    common = (f"--images {md} --boxes {md}/megadetector.json --boxed-only --size {size} "
              f"--budgets {','.join(map(str, budgets))} --no-sweep --no-ms-ssim")
    return [
        f"### eval/camtrap: fair baselines at {', '.join(map(str, budgets))} B "
        f"({len(images)} frames with boxes, long side {size})", "",
        f"Commands: `wildlink eval {common} --codecs "
        f"{','.join(c.name for c in plain)} --prefilter none --out out/fair` and `wildlink eval "
        f"{common} --codecs {','.join(c.name for c in blurred)} --prefilter saliency "
        "--out out/fair-blur`", "",
        "Every scheme at its best within the budget (issue 13). '<codec> best res. + saliency': "
        "the frame blurred outside the boxes (device/prefilter.py), then the long side "
        "(1024 down to 128), the option variant (AVIF 4:2:0 or 4:4:4) and the quality that give "
        "the best animal-box PSNR within the budget, decoded and scaled back to the frame "
        "(tools/bestres.py). 'AVIF crop+context': AVIF of the boxes' union plus a 15% margin at "
        "its best scale (0.5x-3x) and AVIF of the whole frame at 128-384 px, best split of the "
        "budget, composed with a feathered seam (tools/twopart.py). wildlink rows run the "
        "trap's own encoder, pre-filter and size ladder. Bytes count every byte sent.", "",
        markdown_report(result, "fair baselines", level=4),
        *([] if quick else _embed(written, ["budget", "budget_box_ssim", "budget_bg_psnr"])),
        "",
    ]


def _kodak(data: Path, coders, wildlink, out: Path) -> list[str]:
    """Full-image RD on Kodak (no boxes, no pre-filter): wildlink over its bundle's whole rate
    range, AVIF and JPEG at native size, AVIF at its best resolution per budget, and the
    published bmshj2018 curve."""
    from dataclasses import replace

    from tools.baselines import CODECS
    from tools.bestres import BestResolutionCoder
    from tools.evaluate import load_images, run_evaluation
    from tools.report import markdown_report, write_outputs
    from tools.wildlink_coder import rd_sweep

    k_images = load_images(data / "eval" / "kodak", None, 0, limit=KODAK_LIMIT)
    if wildlink is not None:  # the camtrap sections keep WILDLINK_STEPS
        wildlink = replace(wildlink, sweep=rd_sweep(wildlink.encoder.ladder))
    k_coders = ([wildlink] if wildlink is not None else []) + [
        c for c in coders if c.name in KODAK_CODECS
    ]
    k_list = ",".join(c.name for c in k_coders)
    steps = (f" --wildlink-steps {','.join(str(int(s)) for s in wildlink.sweep)}"
             if wildlink is not None else "")
    k_result = run_evaluation(k_images, k_coders, size=0)
    k_written = write_outputs(k_result, out / "kodak", title="eval/kodak")
    budgets = tuple(kodak_budget(b) for b in KODAK_BPP)
    b_result = run_evaluation(k_images, [BestResolutionCoder(CODECS["avif"])], budgets=budgets,
                              sweep=False, with_ms_ssim=False, size=0)
    best = _best_points(b_result)
    curve = _kodak_plot(k_result, best, out / "kodak" / "curve.png")
    prefix = f"wildlink eval --images $WILDLINK_DATA/eval/kodak --size 0 --limit {len(k_images)}"
    return [
        f"### eval/kodak ({len(k_images)} of the 24 images, full-image RD)", "",
        f"Commands: `{prefix} --codecs {k_list}{steps} --out out/eval-kodak` and `{prefix} "
        f"--codecs avif-best --budgets {','.join(map(str, budgets))} --no-sweep --no-ms-ssim "
        "--out out/eval-kodak-best`", "",
        *([f"wildlink model: {_model_text(wildlink)}; its sweep is every rate level's own "
           "point and two coarser steps beyond the coarsest level "
           "(tools/wildlink_coder.py `rd_sweep`).", ""] if wildlink is not None else []),
        markdown_report(k_result, "kodak", level=4),
        *_best_table(best),
        *_published_kodak(k_result, best),
        f"![kodak curve]({_rel(curve)})",
        *_embed(k_written, ["rd_psnr", "rd_ms_ssim"]),
        "",
    ]


def _seed001_section(data: Path, out: Path, quick: bool) -> list[str]:
    from tools.seed001 import DOWNSTREAM, default_datasets, run_seed001

    seed_out = out / "seed001"
    settings = {"jp2": (4.0, 20.0), "avif": (30,)} if quick else DOWNSTREAM
    limit, downstream = (None, 1) if quick else (SEED001_LIMIT, SEED001_DOWNSTREAM)
    text = run_seed001(default_datasets(data, quick), seed_out, downstream_limit=downstream,
                       settings=settings, limit=limit)
    lines = [
        "### Seed 001 reproduced (saliency-driven smoothing)", "",
        "Command: `python -m tools.seed001 --out out/seed001"
        + (" --quick`" if quick else f" --limit {limit} --downstream-limit {downstream}`")
        + (" (the 4 samples at long side 512" if quick else
           f" (the first {limit} images of kodak at native size and of camtrap at long side 1024")
        + f"; downstream codecs on the first {downstream} of them)", "",
        text.replace(str(seed_out) + "/", _rel(seed_out) + "/"),
    ]
    if not quick:
        lines += [f"![seed001 storage]({_rel(seed_out / 'seed001_storage.png')})",
                  f"![seed001 downstream]({_rel(seed_out / 'seed001_downstream.png')})", ""]
    return lines
