"""The trap's encoder (DESIGN.md data flow, steps 2 to 8).

    image -> resize to the transmit size -> saliency -> pre-filter (seed 001)
          -> pad to a multiple of 64 (edge replicate) -> g_a, h_a (int8 analysis.tflite) -> y, z
          -> z symbols (factorized prior) -> h_s (int8, exact integers) -> scale indexes
          -> ROI steps from the boxes -> y symbols -> range-coded bands -> container

Rate control (`budget`) picks the smallest global step j_g whose container fits, searching
with the model's -log2 p estimate and confirming with exact coding (device/codec/ratecontrol.py).

Example:
    >>> encoder = Encoder()                                         # the shipped default bundle
    >>> result = encoder.encode(image, boxes=boxes, budget=2000)    # doctest: +SKIP
    >>> open("frame.wl", "wb").write(result.data)
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.codec import latents as L
from device.codec import rangecoder
from device.codec.bundle import ANALYSIS, HYPER_SYNTHESIS, Bundle
from device.codec.container_io import Header, box_corners, pack_image
from device.codec.exact_int8 import ExactInt8Model
from device.codec.ratecontrol import BudgetError, choose_step
from device.codec.tflite import TFLiteModel
from device.errors import BundleError, ConfigError
from device.imageio import as_rgb8, resize, transmit_shape
from device.prefilter import prefilter, resize_levels
from device.saliency import SaliencyMap, compute_saliency

#: Default long side of the coded image (DESIGN.md data flow, step 2).
DEFAULT_SIZE = 1024
#: Default extra step of the background, in scale-table steps (exp(6 d) ~ 2x coarser at d=0.12).
DEFAULT_BACKGROUND_STEP = 6

__all__ = ["BudgetError", "EncodeResult", "Encoder", "DEFAULT_SIZE", "DEFAULT_BACKGROUND_STEP"]


@dataclass(frozen=True, eq=False)
class EncodeResult:
    """What `Encoder.encode` returns.

    Attributes:
        data: the container bytes (what goes to the outbound queue).
        header: the container header as written.
        saliency_source: which saliency source gave the boxes.
        levels: the saliency level map used by the pre-filter ([H, W] at transmit size).
        estimated_bits: the model's -log2 p of z and of each band (stream order).
        actual_bytes: bytes of z and of each band (stream order).
        timings: seconds per stage (resize, saliency, prefilter, analysis, hyper, coding).
    """

    data: bytes
    header: Header
    saliency_source: str
    levels: np.ndarray = field(repr=False)
    estimated_bits: dict
    actual_bytes: dict
    timings: dict


@dataclass(frozen=True, eq=False)
class _Job:
    """One `encode` call's inputs that stay the same across transmit sizes."""

    image: np.ndarray
    found: SaliencyMap
    stamp: int
    trap_id: int
    use_prefilter: bool
    timings: dict


@dataclass(frozen=True, eq=False)
class Latents:
    """The analysis results of one image, ready to be coded at any ROI step."""

    y: np.ndarray  # float32 [h, w, M]
    z_symbols: np.ndarray  # int32 [h/4, w/4, Cz]
    indexes: np.ndarray  # int32 [h, w, M], before the ROI shift
    roi: np.ndarray  # bool [h, w]
    has_boxes: bool


class Encoder:
    """Encodes images with one model bundle (loads the TFLite models once).

    Args:
        bundle: a `Bundle`, a bundle folder, or None for the shipped default.
        size: long side of the transmit size in pixels (smaller images are not upscaled).
        num_threads: interpreter threads for the analysis transform (h_s runs in numpy,
            device/codec/exact_int8.py).
        background_step: j_bg, the background's extra step over the boxes.
        background_level: saliency level outside the boxes (0 = the pre-filter's widest blur).
        min_size: smallest long side tried when a budget cannot be met at `size`.
        xnnpack: run the analysis with TFLite's default XNNPACK delegate (else the plain
            optimized kernels; `python -m tools.benchmarks.codec` says which is faster here).
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
    ):
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        self.size = int(size)
        self.background_step = int(background_step)
        self.background_level = float(background_level)
        self.min_size = int(min_size)
        self.analysis = TFLiteModel(
            self.bundle.file(ANALYSIS), num_threads=num_threads, delegates=xnnpack
        )
        self.hyper = ExactInt8Model(self.bundle.file(HYPER_SYNTHESIS))
        self.tables = CodingTables.from_bundle(self.bundle)

    def encode(
        self,
        image: np.ndarray,
        boxes=None,
        saliency: str = "auto",
        budget: int | None = None,
        capture_time: int | None = None,
        trap_id: int = 0,
        background=None,
        step: int = 0,
        use_prefilter: bool = True,
    ) -> EncodeResult:
        """Encode one image.

        Args:
            image: uint8 [H, W, 3] (grey, RGBA, 16-bit and float arrays are converted).
            boxes: known boxes (`device.regions.Box`, normalised, MegaDetector order) or None.
            saliency: "auto", "boxes", "background", "spectral" or "none".
            budget: largest container size in bytes: the finest step that fits; if even the
                coarsest step does not fit, a smaller transmit size (down to `min_size`).
            capture_time: seconds since the Unix epoch (default: now).
            trap_id: this trap's number (0..65535).
            background: the site's `BackgroundModel` (it learns this frame).
            step: the global step j_g when there is no budget (0 = the model's own quality).
            use_prefilter: run seed 001's pre-filter on the saliency levels.

        Raises:
            BudgetError: even the coarsest step does not fit the budget; its `result` holds
                the coarsest coding (an `EncodeResult`), so a trap can still send something
                without running saliency (and the background model) twice.
        """
        if budget is None and not 0 <= int(step) <= self.max_step:
            raise ConfigError(f"step must be in [0, {self.max_step}], got {step}")
        timings: dict[str, float] = {}
        clock = time.perf_counter()
        image = as_rgb8(image)
        height, width = image.shape[:2]
        th, tw = transmit_shape(height, width, self.size)
        small = resize(image, th, tw)
        clock = _tick(timings, "resize", clock)
        found = compute_saliency(
            small, saliency, boxes=boxes, background=background,
            background_level=self.background_level,
        )  # fmt: skip
        _tick(timings, "saliency", clock)
        stamp = int(time.time()) if capture_time is None else int(capture_time)
        job = _Job(image, found, stamp, int(trap_id), use_prefilter, timings)
        if budget is None:
            return self._code_at(job, small, found.levels, None, int(step))
        side, rungs = max(th, tw), self._smaller_sides(max(th, tw))
        while True:
            try:
                return self._code_at(job, small, resize_levels(found.levels, *small.shape[:2]),
                                     budget, 0)  # fmt: skip
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
            small = resize(image, *transmit_shape(height, width, side))
            _tick(timings, "resize", clock)

    def _smaller_sides(self, side: int) -> list[int]:
        """Long sides tried when a budget cannot be met: x7/8 per rung, down to `min_size`."""
        sides = []
        while side * 7 // 8 >= self.min_size:
            side = side * 7 // 8
            sides.append(side)
        return sides

    def _code_at(self, job: _Job, small, levels, budget: int | None, step: int) -> EncodeResult:
        """Pre-filter, analyse and code `small` (the image at one transmit size)."""
        image, found, timings = job.image, job.found, job.timings
        height, width = image.shape[:2]
        th, tw = small.shape[:2]
        clock = time.perf_counter()
        prefiltered = bool(job.use_prefilter) and bool(np.any(levels < 1.0))
        if prefiltered:
            small = prefilter(small, levels)
        clock = _tick(timings, "prefilter", clock)

        corners = tuple(box_corners(b) for b in found.boxes)
        lat, clock = self._latents(small, corners, timings, clock)
        z_idx = L.z_indexes(lat.z_symbols.shape)
        z_data = rangecoder.encode_indexed(lat.z_symbols, z_idx, *self.tables.z)
        z_bits = rangecoder.estimate_bits(lat.z_symbols, z_idx, *self.tables.z)
        rows = L.rows_per_band(lat.y.shape[0])
        order = L.band_order(lat.roi, rows, lat.has_boxes)

        def header_for(j_g: int) -> Header:
            return Header(
                model_id=self.bundle.model_id, width=width, height=height,
                coded_width=tw, coded_height=th, capture_time=job.stamp, trap_id=job.trap_id,
                boxes=corners, step=int(j_g),
                background_step=self.background_step if corners else 0,
                band_rows=rows, band_count=len(order),
                box_conf=tuple(min(max(round(b.conf * 255), 0), 255) for b in found.boxes),
                prefiltered=prefiltered,
            )  # fmt: skip

        coded: dict[int, tuple[bytes, Header, list[bytes]]] = {}

        def code(j_g: int) -> tuple[bytes, Header, list[bytes]]:
            if j_g not in coded:  # rate control may ask twice for the same step
                bands = self._code_bands(lat, j_g, rows, order, exact=True)
                header = header_for(j_g)
                data = pack_image(header, z_data, list(zip(order, bands, strict=True)))
                coded[j_g] = data, header, bands
            return coded[j_g]

        def estimate(j_g: int) -> int:
            bits = self._code_bands(lat, j_g, rows, order, exact=False)
            empty = [(i, b"") for i in order]
            overhead = len(pack_image(header_for(j_g), z_data, empty)) + len(order)  # varints
            return overhead + int(np.ceil(sum(bits) / 8.0))

        def finish(j_g: int) -> EncodeResult:
            data, header, bands = code(j_g)
            band_bits = self._code_bands(lat, j_g, rows, order, exact=False)
            _tick(timings, "coding", clock)
            return EncodeResult(
                data=data,
                header=header,
                saliency_source=found.source,
                levels=levels,
                estimated_bits={"z": z_bits, "bands": band_bits},
                actual_bytes={"z": len(z_data), "bands": [len(b) for b in bands]},
                timings=timings,
            )

        if budget is None:
            return finish(step)
        try:
            j_g = choose_step(estimate, lambda j: len(code(j)[0]), int(budget), self.max_step)
        except BudgetError as exc:
            exc.result = finish(self.max_step)  # the coarsest coding, if the caller wants it
            raise
        return finish(j_g)

    @property
    def max_step(self) -> int:
        """The coarsest global step: every index shifted to the smallest scale."""
        return int(self.tables.scale_count - 1)

    def analyse(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(y [h, w, M], z [h/4, w/4, Cz]) of a uint8 image, padded to the model's multiple."""
        padded = pad_image(image, self.bundle.pad_multiple)
        outputs = self.analysis.run(padded[None].astype(np.float32) / np.float32(255.0))
        return split_analysis(outputs, padded.shape[:2], self.bundle)

    def _latents(self, small, corners, timings, clock):
        y, z = self.analyse(small)
        clock = _tick(timings, "analysis", clock)
        symbols = L.z_symbols(z, self.tables.z_offset)
        indexes = L.hyper_indexes(self.hyper, L.z_hat(symbols, self.tables.z_offset),
                                  self.tables.lut)  # fmt: skip
        if indexes.shape != y.shape:
            raise BundleError(f"h_s gives {indexes.shape} indexes for y of shape {y.shape}")
        clock = _tick(timings, "hyper", clock)
        roi = L.roi_mask(corners, small.shape[0], small.shape[1], y.shape[0], y.shape[1])
        return Latents(y, symbols, indexes, roi, bool(corners)), clock

    def _code_bands(self, lat: Latents, j_g: int, rows: int, order, exact: bool) -> list:
        """Each band's bytes (exact) or -log2 p bits (estimate), in stream order."""
        steps = L.step_map(lat.roi, j_g, self.background_step, lat.has_boxes)
        values = L.quantize_y(lat.y, steps, self.tables.d)
        indexes = L.shift_indexes(lat.indexes, steps)
        ranges = L.band_rows(lat.y.shape[0], rows)
        coder = rangecoder.encode_indexed if exact else rangecoder.estimate_bits
        out = []
        for b in order:
            r0, r1 = ranges[b]
            out.append(coder(values[r0:r1], indexes[r0:r1], *self.tables.y))
        return out


@dataclass(frozen=True, eq=False)
class CodingTables:
    """The bundle's entropy tables in the range coder's argument order."""

    y: tuple
    z: tuple
    z_offset: np.ndarray
    lut: np.ndarray
    d: float
    scale_count: int

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> CodingTables:
        e = bundle.entropy
        entropy = bundle.manifest.get("entropy", {})
        coder = (int(entropy.get("precision", 16)), int(entropy.get("overflow_width", 4)))
        lut = np.asarray(e["hs_index_lut"], np.int32)
        count = int(np.asarray(e["y_cdf"]).shape[0])
        if lut.shape != (256,) or lut.min() < 0 or lut.max() >= count:
            raise BundleError(f"bundle {bundle.path}: hs_index_lut must be 256 indexes < {count}")
        if e["z_offset"].shape[0] != bundle.hyper_channels:
            raise BundleError(f"bundle {bundle.path}: z_offset does not match hyper_channels")
        return cls(
            y=(e["y_cdf"], e["y_cdf_offset"], e["y_cdf_length"], *coder),
            z=(e["z_cdf"], e["z_cdf_offset"], e["z_cdf_length"], *coder),
            z_offset=np.asarray(e["z_offset"], np.float32),
            lut=lut,
            d=bundle.scale_step,
            scale_count=count,
        )


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
