"""The base station's decoder: the encoder's steps in reverse (DESIGN.md, "9 -> 8 -> 7").

    container -> header (model id checked) -> per part: z -> h_s (the same int8 model)
              -> scale indexes -> ROI steps -> y bands -> y_hat -> g_s -> crop the padding
              -> compose: context upsampled to the capture size, regions pasted over it

A band that is missing (not received) or fails to decode becomes the prior mean, y_hat = 0,
and is reported per part; a part whose z stream is lost is left out (the context shows
through where a region is lost; a lost context leaves grey around the regions).

Example:
    >>> result = Decoder().decode(open("frame.wl", "rb").read())   # doctest: +SKIP
    >>> result.image.shape, result.missing_bands
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.codec import infobar, latents, rangecoder
from device.codec.bundle import HYPER_SYNTHESIS, SYNTHESIS, Bundle
from device.codec.compose import compose
from device.codec.container import KIND_CONTEXT, KIND_INFOBAR, Container, Part, check_model, unpack
from device.codec.exact_int8 import ExactInt8Model
from device.codec.tables import CodingTables
from device.codec.tflite import TFLiteModel
from device.errors import BundleError, ContainerError

__all__ = ["DecodeResult", "DecodedPart", "Decoder"]


@dataclass(frozen=True, eq=False)
class DecodedPart:
    """One part of a container after decoding.

    Attributes:
        part: the part's header (streams emptied).
        image: uint8 [coded_height, coded_width, 3], or None if the part's z was lost.
        y_hat: the dequantised latents fed to g_s (None if lost).
        missing_bands: band numbers decoded as the prior mean.
    """

    part: Part
    image: np.ndarray | None = field(repr=False)
    y_hat: np.ndarray | None = field(repr=False)
    missing_bands: tuple[int, ...]

    @property
    def status(self) -> str:
        if self.image is None:
            return "lost"
        return "partial" if self.missing_bands else "complete"


@dataclass(frozen=True, eq=False)
class DecodeResult:
    """What `Decoder.decode` returns.

    Attributes:
        image: uint8 [height, width, 3] at the capture size (or the main part's coded size).
        header: the container, streams emptied.
        parts: each part decoded, in stream order.
    """

    image: np.ndarray = field(repr=False)
    header: Container
    parts: tuple[DecodedPart, ...]

    @property
    def main(self) -> DecodedPart:
        """The context (or the first part)."""
        return next((p for p in self.parts if p.part.kind == KIND_CONTEXT), self.parts[0])

    @property
    def missing_bands(self) -> tuple[int, ...]:
        """The main part's bands decoded as the prior mean (version-1 meaning)."""
        return self.main.missing_bands

    @property
    def y_hat(self) -> np.ndarray | None:
        return self.main.y_hat

    @property
    def incomplete(self) -> dict[str, str]:
        """{part name: "lost" | "partial"} for every part that did not arrive whole."""
        out = {}
        for i, p in enumerate(self.parts):
            if p.status != "complete":
                out[f"{i}:{p.part.name}"] = p.status
        return out


class Decoder:
    """Decodes containers made with one model bundle; refuses other models' files.

    Args:
        bundle: a `Bundle`, a bundle folder, or None for the shipped default.
        num_threads: interpreter threads for the synthesis transform.
    """

    def __init__(self, bundle: Bundle | str | Path | None = None, num_threads: int | None = None):
        self.bundle = bundle if isinstance(bundle, Bundle) else Bundle.load(bundle)
        self.tables = CodingTables.from_bundle(self.bundle)
        self.hyper = ExactInt8Model(self.bundle.file(HYPER_SYNTHESIS))
        self._synthesis: TFLiteModel | None = None
        self._num_threads = num_threads

    @property
    def synthesis(self) -> TFLiteModel:
        if self._synthesis is None:  # loaded on first use: `inspect` never needs it
            self._synthesis = TFLiteModel(
                self.bundle.file(SYNTHESIS), num_threads=self._num_threads
            )
        return self._synthesis

    def decode(self, data: bytes, original_size: bool = True) -> DecodeResult:
        """Decode container bytes to a picture.

        Args:
            data: the container (streams may be absent if the container marks them missing).
            original_size: compose at the capture size (else the main part at its coded size).

        Raises:
            ContainerError: truncated, corrupted, made by another model, or no part usable.
        """
        container = self.unpack(data)
        parts = tuple(self._decode_part(container, p) for p in container.parts)
        if all(p.image is None for p in parts):
            raise ContainerError("no part of the container arrived whole enough to decode")
        header = container.without_streams()
        if original_size:
            image = compose(container.width, container.height,
                            [(p.part, p.image) for p in parts if p.image is not None])
        else:
            main = next((p for p in parts if p.part.kind == KIND_CONTEXT), parts[0])
            image = main.image if main.image is not None else next(
                p.image for p in parts if p.image is not None)
        return DecodeResult(image=image, header=header, parts=parts)

    def unpack(self, data: bytes) -> Container:
        """The container, checked against this bundle and this model's limits."""
        container = unpack(data)
        check_model(container, self.bundle.model_id)
        top = self.tables.scale_count - 1
        for i, part in enumerate(container.parts):
            if not (-top <= part.step <= top and 0 <= part.background_step <= top):
                raise ContainerError(
                    f"part {i} names steps {part.step}/{part.background_step} outside "
                    f"[-{top}, {top}] / [0, {top}]"
                )
            if part.level >= self.tables.levels:
                raise ContainerError(
                    f"part {i} names rate level {part.level}; the model has {self.tables.levels}"
                )
        return container

    def _decode_part(self, container: Container, part: Part) -> DecodedPart:
        shell = part.without_streams()
        if part.z is None:
            return DecodedPart(shell, None, None, tuple(range(part.band_count)))
        if part.kind == KIND_INFOBAR:
            missing = () if any(b.index == 0 for b in part.bands) else (0,)
            return DecodedPart(shell, infobar.decode_bar(part), None, missing)
        y_hat, missing = self.decode_latents(container, part)
        lh, lw = y_hat.shape[:2]
        (x_hat,) = self.synthesis.run(y_hat[None])
        if x_hat.shape != (1, lh * 16, lw * 16, 3):
            raise BundleError(f"synthesis.tflite gave {x_hat.shape} for {lh}x{lw} latents")
        x = np.clip(x_hat[0, : part.coded_height, : part.coded_width], 0.0, 1.0)
        image = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
        return DecodedPart(shell, image, y_hat, missing)

    def plan(self, container: Container, part: Part) -> latents.PartPlan:
        """The part's latent grid (the same `latents.plan_part` the encoder uses)."""
        return latents.plan_part(container, part, self.bundle.pad_multiple,
                                 self.bundle.hyper_channels, self.tables.steps_of(part.level))

    def side_information(self, container: Container, part: Part):
        """(plan, z symbols, scale indexes shifted by the steps, mean or None) of a part."""
        plan = self.plan(container, part)
        if any(band.index >= len(plan.ranges) for band in part.bands):
            raise ContainerError(f"{part.name} part has band numbers beyond {len(plan.ranges)}")
        try:
            z = rangecoder.decode_indexed(part.z, latents.z_indexes(plan.z_shape), *self.tables.z)
        except rangecoder.RangeCoderError as exc:
            raise ContainerError(f"the side information (z) is corrupt: {exc}") from None
        z_hat = latents.z_hat(z, self.tables.z_offset)
        indexes, mean = latents.hyper_synthesis(self.hyper, self.tables, z_hat)
        if indexes.shape != (plan.latent_h, plan.latent_w, self.bundle.latent_channels):
            raise BundleError(
                f"h_s gives indexes of shape {indexes.shape} for {plan.latent_h}x{plan.latent_w}"
            )
        top = self.tables.scale_count - 1
        return plan, z, latents.shift_indexes(indexes, plan.steps, top), mean

    def decode_latents(self, container: Container, part: Part):
        """(y_hat [h, w, M], missing band numbers) of one part: everything before g_s."""
        plan, _, shifted, mean = self.side_information(container, part)
        bands = {band.index: band.data for band in part.bands}
        y_q = np.zeros((plan.latent_h, plan.latent_w, self.bundle.latent_channels), np.int32)
        missing = []
        for band, (r0, r1) in enumerate(plan.ranges):
            payload = bands.get(band)
            if payload is None:  # never sent, lost, cut short or failed its CRC
                missing.append(band)
                continue
            try:
                y_q[r0:r1] = rangecoder.decode_indexed(payload, shifted[r0:r1], *self.tables.y)
            except rangecoder.RangeCoderError:
                missing.append(band)  # y_q stays 0: the prior mean
        y_hat = latents.dequantize_y(y_q, plan.steps, self.tables.d, mean)
        return y_hat, tuple(missing)

