"""The trap's encoder (DESIGN.md data flow, steps 2 to 8).

    image -> resize to the transmit size -> saliency -> pre-filter (seed 001)
          -> pad to a multiple of 64 (edge replicate) -> g_a, h_a (int8 analysis.tflite) -> y, z
          -> z symbols (factorized prior) -> h_s (int8, exact integers) -> scale indexes
          -> ROI steps from the boxes -> y symbols -> range-coded bands -> container

Rate control (`budget`) picks the smallest global step j_g whose container fits, searching
with the model's -log2 p estimate and confirming with exact coding (device/codec/ratecontrol.py).
With animal boxes and a budget the encoder codes two parts (device/codec/twopart.py): the
animals as regions cut from the full-resolution capture, and the whole picture at a low
resolution as context, in one version-2 container.

Example:
    >>> encoder = Encoder()                                         # the shipped default bundle
    >>> result = encoder.encode(image, boxes=boxes, budget=2000)    # doctest: +SKIP
    >>> open("picture.wl", "wb").write(result.data)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.codec import latents, rangecoder
from device.codec.bundle import ANALYSIS, HYPER_SYNTHESIS, Bundle
from device.codec.container import (
    KIND_CONTEXT,
    MAX_CODED_SIDE,
    Band,
    Container,
    Part,
    QuantBox,
    compact_name,
    header_size,
    pack,
    part_header_size,
)
from device.codec.exact_int8 import ExactInt8Model
from device.codec.ratecontrol import BudgetError, RateLadder, choose_step
from device.codec.tables import CodingTables
from device.codec.tflite import TFLiteModel
from device.errors import BundleError, ConfigError
from device.imageio import as_rgb8, resize, transmit_shape
from device.prefilter import prefilter, resize_levels
from device.saliency import Saliency
from device.trapid import check_trap_id

#: Default long side of the coded image (DESIGN.md data flow, step 2).
DEFAULT_SIZE = 1024
#: Steps below the finest level's own point that a part may use (`Encoder.finest_step`).
FINER_THAN_TRAINED = 8
#: Default extra step of the background, in scale-table steps (exp(6 d) ~ 2x coarser at d=0.12).
DEFAULT_BACKGROUND_STEP = 6

__all__ = ["BudgetError", "EncodeResult", "Encoder", "DEFAULT_SIZE", "DEFAULT_BACKGROUND_STEP"]

#: Encoder(two_part=...): when to code regions and a context instead of one image.
TWO_PART_MODES = ("auto", "on", "off")


@dataclass(frozen=True, eq=False)
class EncodeResult:
    """What `Encoder.encode` returns.

    Attributes:
        data: the container bytes (what goes to the outbound queue).
        header: the container as written, streams emptied (`Container.without_streams`).
        saliency_source: which saliency source gave the boxes.
        levels: the saliency level map used by the pre-filter ([H, W] at transmit size).
        estimated_bits: per part (stream order): the model's -log2 p of z and of each band.
        actual_bytes: per part (stream order): bytes of z and of each band.
        timings: seconds per stage (resize, saliency, prefilter, analysis, hyper, coding).
    """

    data: bytes
    header: Container
    saliency_source: str
    levels: np.ndarray = field(repr=False)
    estimated_bits: list
    actual_bytes: list
    timings: dict


@dataclass(frozen=True, eq=False)
class Picture:
    """One `encode` call's picture and what every part of it shares."""

    image: np.ndarray  # the capture, uint8 [H, W, 3]
    boxes: tuple  # QuantBox, normalised to the capture
    stamp: int
    trap_id: int
    timings: dict
    name: str = ""

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    def container(self, model_id: str, parts) -> Container:
        return Container(model_id=model_id, width=self.width, height=self.height,
                         parts=tuple(parts), capture_time=self.stamp, trap_id=self.trap_id,
                         boxes=self.boxes, name=self.name)


class AnalysedPart:
    """One part after g_a, h_a and h_s: codes at any (level, step) without re-running them.

    Args:
        encoder: the `Encoder` (its models and tables).
        picture: the picture.
        kind, rect: the part's kind and place in the capture (capture pixels).
        pixels: uint8 [h, w, 3], the part at its coded size (pre-filtered if `prefiltered`).
        background_step: j_bg inside this part (0: one step for the whole part).
    """

    def __init__(self, encoder: Encoder, picture: Picture, kind: int, rect, pixels: np.ndarray,
                 background_step: int = 0, prefiltered: bool = False):
        self.encoder, self.picture, self.kind = encoder, picture, kind
        self.rect = tuple(int(v) for v in rect)
        self.coded_height, self.coded_width = pixels.shape[:2]
        self.background_step = int(background_step) if picture.boxes else 0
        self.prefiltered = prefiltered
        clock = time.perf_counter()
        tables = encoder.tables
        y, z = encoder.analyse(pixels)
        clock = _tick(picture.timings, "analysis", clock)
        self.y = y
        self.z_symbols = latents.z_symbols(z, tables.z_offset)
        z_hat = latents.z_hat(self.z_symbols, tables.z_offset)
        self.indexes, self.mean = encoder.hyper_synthesis(z_hat)
        if self.indexes.shape != y.shape:
            raise BundleError(f"h_s gives {self.indexes.shape} indexes for y of shape {y.shape}")
        _tick(picture.timings, "hyper", clock)
        z_idx = latents.z_indexes(self.z_symbols.shape)
        self.z_data = rangecoder.encode_indexed(self.z_symbols, z_idx, *tables.z)
        self.z_bits = rangecoder.estimate_bits(self.z_symbols, z_idx, *tables.z)
        self.band_rows = encoder.band_rows_for(kind, y.shape[0])
        shell = self.part(0, 0, ())
        self.plan = encoder.plan(picture.container(encoder.bundle.model_id, [shell]), shell)
        self.order = latents.band_order(self.plan.roi, self.band_rows, bool(picture.boxes))
        self._coded: dict = {}

    def part(self, level: int, step: int, bands) -> Part:
        return Part(self.kind, self.rect, self.coded_width, self.coded_height, self.z_data,
                    tuple(bands), level, int(step), self.background_step, self.band_rows,
                    self.prefiltered)

    def _steps(self, level: int, step: int) -> np.ndarray:
        """The step of every latent element at (level, step): the decoder's own plan."""
        shell = self.part(level, step, ())
        container = self.picture.container(self.encoder.bundle.model_id, [shell])
        return self.encoder.plan(container, shell).steps

    def _bands(self, level: int, step: int, exact: bool) -> list:
        """Each band's bytes (exact) or -log2 p bits (estimate), in stream order."""
        tables = self.encoder.tables
        steps = self._steps(level, step)
        values = latents.quantize_y(self.y, steps, tables.d, self.mean)
        indexes = latents.shift_indexes(self.indexes, steps, tables.scale_count - 1)
        coder = rangecoder.encode_indexed if exact else rangecoder.estimate_bits
        return [coder(values[r0:r1], indexes[r0:r1], *tables.y)
                for r0, r1 in (self.plan.ranges[b] for b in self.order)]

    def y_hat(self, level: int, step: int) -> np.ndarray:
        """The dequantised latents the base will feed to g_s (the consistency check's side)."""
        tables = self.encoder.tables
        steps = self._steps(level, step)
        y_q = latents.quantize_y(self.y, steps, tables.d, self.mean)
        return latents.dequantize_y(y_q, steps, tables.d, self.mean)

    def header_bytes(self) -> int:
        """This part's share of the header (kind, rect, sizes, stream table)."""
        return part_header_size(self.kind, len(self.order))

    def estimate(self, level: int, step: int) -> int:
        """Estimated bytes of this part: header share, z and the -log2 p of its bands."""
        bits = self._bands(level, step, exact=False)
        return self.header_bytes() + len(self.z_data) + int(np.ceil(sum(bits) / 8.0))

    def code(self, level: int, step: int) -> Part:
        """The part coded exactly at (level, step) (cached: rate control asks twice)."""
        key = (level, step)
        if key not in self._coded:
            bands = self._bands(level, step, exact=True)
            self._coded[key] = self.part(level, step, (Band(i, b) for i, b in
                                                       zip(self.order, bands, strict=True)))
        return self._coded[key]

    def exact(self, level: int, step: int) -> int:
        part = self.code(level, step)
        return self.header_bytes() + len(part.z) + sum(len(b.data) for b in part.bands)

    def bits(self, level: int, step: int) -> dict:
        return {"z": self.z_bits, "bands": self._bands(level, step, exact=False)}


class Encoder:
    """Encodes images with one model bundle (loads the TFLite models once).

    Args:
        bundle: a `Bundle`, a bundle folder, or None for the shipped default.
        size: long side of the transmit size in pixels (smaller images are not upscaled);
            for two-part coding, the size saliency runs at.
        num_threads: interpreter threads for the analysis transform (h_s runs in numpy,
            device/codec/exact_int8.py).
        background_step: j_bg, the background's extra step over the boxes (one-part coding).
        background_level: saliency level outside the boxes (0 = the pre-filter's widest blur).
        min_size: smallest long side tried when a budget cannot be met at `size`.
        xnnpack: run the analysis with TFLite's default XNNPACK delegate (else the plain
            optimized kernels; `python -m tools.benchmarks.codec` says which is faster here).
        two_part: with a budget, "auto" codes animal regions, info bars and a context
            (device/codec/twopart.py) unless the only boxes are saliency guesses (spectral),
            which keep the one-image coding with ROI steps; "on" always, "off" never.
    """

    def __init__(
        self,
        bundle: Bundle | str | Path | None = None,
        size: int = DEFAULT_SIZE,
        num_threads: int | None = 1,
        background_step: int = DEFAULT_BACKGROUND_STEP,
        background_level: float = 0.0,
        xnnpack: bool = True,
        min_size: int = 256,
        two_part: str = "auto",
    ):
        if two_part not in TWO_PART_MODES:
            raise ConfigError(f"two_part must be one of {', '.join(TWO_PART_MODES)}, not {two_part!r}")
        if not 16 <= int(size) <= MAX_CODED_SIDE:
            raise ConfigError(f"size must be 16..{MAX_CODED_SIDE} px (the container's limit)")
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        self.size = int(size)
        self.background_step = int(background_step)
        self.background_level = float(background_level)
        self.min_size = int(min_size)
        self.two_part = two_part
        self.analysis = TFLiteModel(
            self.bundle.file(ANALYSIS), num_threads=num_threads, delegates=xnnpack
        )
        self.hyper = ExactInt8Model(self.bundle.file(HYPER_SYNTHESIS))
        self.tables = CodingTables.from_bundle(self.bundle)
        self.ladder = RateLadder.of(self.tables)

    def encode(
        self,
        image: np.ndarray,
        boxes=None,
        saliency: str | Saliency = "auto",
        budget: int | None = None,
        capture_time: int | None = None,
        trap_id: int = 0,
        background=None,
        step: int = 0,
        use_prefilter: bool = True,
        name: str = "",
        lores: np.ndarray | None = None,
        path=None,
    ) -> EncodeResult:
        """Encode one image.

        Args:
            image: uint8 [H, W, 3] (grey, RGBA, 16-bit and float arrays are converted): the
                capture at full resolution (regions are cut from it).
            boxes: known boxes (`device.boxes.Box`, normalised, MegaDetector order) or None.
            saliency: "auto", "boxes", "background", "spectral" or "none", or the trap's
                `device.saliency.Saliency` policy (which holds its own background model).
            budget: largest container size in bytes: the finest coding that fits; one part:
                if even the coarsest step does not fit, a smaller transmit size (down to
                `min_size`).
            capture_time: seconds since the Unix epoch (default: now).
            trap_id: this trap's number (0..255, `device.trapid`).
            background: the site's `BackgroundModel` (it learns this picture), with a mode name.
            step: the global step j_g when there is no budget (0 = the model's own quality;
                for a variable-rate model a point of its `RateLadder`, 0 its reference level).
            use_prefilter: run seed 001's pre-filter on the saliency levels.
            name: the camera's file name, carried to the base (`container.compact_name`).
            lores: the camera's low-resolution picture, for the background model (None: the
                model sees the transmit-size image).
            path: the picture's file, where the policy looks up MegaDetector boxes when
                `boxes` is None.

        Raises:
            BudgetError: even the coarsest coding does not fit the budget; its `result` holds
                the coarsest coding (an `EncodeResult`), so a trap can still send something
                without running saliency (and the background model) twice.
        """
        if budget is None and not self.finest_step <= int(step) <= self.max_step:
            raise ConfigError(f"step must be in [{self.finest_step}, {self.max_step}], got {step}")
        trap_id = check_trap_id(trap_id)  # before the work, not when the container is packed
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        image = as_rgb8(image)
        height, width = image.shape[:2]
        th, tw = transmit_shape(height, width, self.size)
        small = resize(image, th, tw)
        clock = _tick(timings, "resize", clock)
        if isinstance(saliency, Saliency):
            if background is not None:
                raise ConfigError("give the background model to the Saliency policy, not encode()")
            policy = saliency
        else:
            policy = Saliency(saliency, background)
        found = policy(small, boxes=boxes, lores=lores, path=path,
                       background_level=self.background_level)
        _tick(timings, "saliency", clock)
        stamp = int(time.time()) if capture_time is None else int(capture_time)
        picture = Picture(image, tuple(QuantBox.from_box(b) for b in found.boxes), stamp,
                          int(trap_id), timings, compact_name(name) if name else "")
        if budget is not None and self.two_part != "off":
            from device.codec import twopart

            animals = bool(found.boxes) and found.source in ("boxes", "background")
            if animals or self.two_part == "on" or not found.boxes:
                try:
                    parts, bits = twopart.encode(self, picture, int(budget), use_prefilter, animals)
                    return self._result(picture, found, found.levels, parts, bits)
                except BudgetError:
                    pass  # too small a budget for two parts: one part, smaller if need be
        return self._encode_one_part(picture, found, small, budget, step, use_prefilter)

    def _encode_one_part(self, picture: Picture, found, small, budget, step, use_prefilter):
        """Version-2 container with the context part alone (ROI steps inside it)."""
        if budget is None:
            return self._one_part_at(picture, found, small, found.levels, None, int(step),
                                     use_prefilter)
        height, width = picture.image.shape[:2]
        side, rungs = max(small.shape[:2]), self._smaller_sides(max(small.shape[:2]))
        while True:
            try:
                return self._one_part_at(picture, found, small,
                                         resize_levels(found.levels, *small.shape[:2]), budget, 0,
                                         use_prefilter)
            except BudgetError as exc:
                # Too many pixels for the budget even at the coarsest step: bytes grow about
                # with the pixel count, so jump to the rung that should fit.
                target = side * np.sqrt(budget / exc.needed) if exc.needed else side - 1
                rungs = [r for r in rungs if r < side]
                fitting = [r for r in rungs if r <= target] or rungs[-1:]
                if not fitting:
                    raise
                side = fitting[0]
            clock = time.perf_counter()
            small = resize(picture.image, *transmit_shape(height, width, side))
            _tick(picture.timings, "resize", clock)

    def _smaller_sides(self, side: int) -> list[int]:
        """Long sides tried when a budget cannot be met: x7/8 per rung, down to `min_size`."""
        sides = []
        while side * 7 // 8 >= self.min_size:
            side = side * 7 // 8
            sides.append(side)
        return sides

    def context_part(self, picture: Picture, small, levels, use_prefilter: bool,
                     background_step: int) -> AnalysedPart:
        """The whole picture at the size of `small`, pre-filtered by `levels` if asked."""
        clock = time.perf_counter()
        prefiltered = bool(use_prefilter) and bool(np.any(levels < 1.0))
        if prefiltered:
            small = prefilter(small, levels)
        _tick(picture.timings, "prefilter", clock)
        return AnalysedPart(self, picture, KIND_CONTEXT, (0, 0, picture.width, picture.height),
                            small, background_step, prefiltered)

    def _one_part_at(self, picture, found, small, levels, budget, step, use_prefilter):
        part = self.context_part(picture, small, levels, use_prefilter, self.background_step)
        clock = time.perf_counter()
        header = header_size(len(picture.boxes), [], picture.name) + part.header_bytes()

        def finish(j_g: int) -> EncodeResult:
            _tick(picture.timings, "coding", clock)
            rung = self.ladder.rung(j_g)
            return self._result(picture, found, levels, [part.code(*rung)], [part.bits(*rung)])

        if budget is None:
            return finish(step)
        base = header - part.header_bytes()
        try:
            rung = self.ladder.rung
            j_g = choose_step(lambda j: base + part.estimate(*rung(j)),
                              lambda j: base + part.exact(*rung(j)), int(budget), self.max_step,
                              self.min_step)
        except BudgetError as exc:
            exc.result = finish(self.max_step)  # the coarsest coding, if the caller wants it
            raise
        return finish(j_g)

    def _result(self, picture: Picture, found, levels, parts, bits) -> EncodeResult:
        container = picture.container(self.bundle.model_id, parts)
        data = pack(container)
        actual = [{"z": len(p.z), "bands": [len(b.data) for b in p.bands]} for p in parts]
        return EncodeResult(
            data=data, header=container.without_streams(), saliency_source=found.source,
            levels=levels, estimated_bits=list(bits), actual_bytes=actual, timings=picture.timings,
        )

    @property
    def max_step(self) -> int:
        """The coarsest global step: every index of the coarsest level at the smallest scale."""
        return self.ladder.coarsest

    @property
    def min_step(self) -> int:
        """The finest global step a budget search starts from: the finest level at step 0
        (0 for a one-rate model)."""
        return min(self.ladder.finest, 0)

    @property
    def finest_step(self) -> int:
        """The finest global step a part may use: `FINER_THAN_TRAINED` below `min_step`. Finer
        than the model was trained for still buys some detail where bytes are to spare (a
        small animal's region, or a whole picture at the top of the range)."""
        return self.min_step - FINER_THAN_TRAINED

    def band_rows_for(self, kind: int, latent_h: int) -> int:
        """Latent rows per band: a context in bands of 4 rows; a region or bar in at most two
        bands (each band costs ~5 header bytes and a coder flush)."""
        if kind == KIND_CONTEXT:
            return latents.rows_per_band(latent_h)
        return max(latents.rows_per_band(latent_h), -(-latent_h // 2))

    def plan(self, container: Container, part: Part) -> latents.PartPlan:
        return latents.plan_part(container, part, self.bundle.pad_multiple,
                                 self.bundle.hyper_channels, self.tables.steps_of(part.level))

    def analyse(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(y [h, w, M], z [h/4, w/4, Cz]) of a uint8 image, padded to the model's multiple."""
        padded = pad_image(image, self.bundle.pad_multiple)
        outputs = self.analysis.run(padded[None].astype(np.float32) / np.float32(255.0))
        return split_analysis(outputs, padded.shape[:2], self.bundle)

    def hyper_synthesis(self, z_hat: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """(scale indexes [h, w, M], mean of y or None) from z_hat: what both ends compute."""
        return latents.hyper_synthesis(self.hyper, self.tables, z_hat)


def pad_image(image: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-replicate the bottom and right to a multiple of `multiple` (cropped at decode)."""
    h, w = image.shape[:2]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return image
    return np.pad(image, ((0, ph), (0, pw), (0, 0)), mode="edge")


def split_analysis(outputs, padded_hw, bundle: Bundle) -> tuple[np.ndarray, np.ndarray]:
    """Tell y from z by channel count and spatial size (docs/bundle.md), never by order."""
    ph, pw = padded_hw
    y_shape = (1, ph // 16, pw // 16, bundle.latent_channels)
    z_shape = (1, ph // 64, pw // 64, bundle.hyper_channels)
    y = [o for o in outputs if tuple(o.shape) == y_shape]
    z = [o for o in outputs if tuple(o.shape) == z_shape]
    if len(y) != 1 or len(z) != 1:
        shapes = [tuple(o.shape) for o in outputs]
        raise BundleError(f"analysis.tflite gave {shapes}; expected y {y_shape} and z {z_shape}")
    return y[0][0], z[0][0]


def _tick(timings: dict, stage: str, start: float) -> float:
    now = time.perf_counter()
    timings[stage] = timings.get(stage, 0.0) + now - start
    return now
