"""The base station's decoder: the encoder's steps in reverse (DESIGN.md, "9 -> 8 -> 7").

    container -> header (model id checked) -> z -> h_s (the same int8 model, exact integers)
              -> scale indexes -> ROI steps from the header's boxes -> y bands -> y_hat
              -> g_s (synthesis.tflite) -> crop the padding -> resize to the original size

A band that is missing (not received) or fails to decode becomes the prior mean, y_hat = 0,
and is reported in `DecodeResult.missing_bands`; the rest of the image survives.

Example:
    >>> result = Decoder().decode(open("frame.wl", "rb").read())   # doctest: +SKIP
    >>> result.image.shape, result.missing_bands
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.codec import latents as L
from device.codec import rangecoder
from device.codec.bundle import HYPER_SYNTHESIS, SYNTHESIS, Bundle
from device.codec.container_io import Header, unpack_image
from device.codec.encoder import CodingTables
from device.codec.exact_int8 import ExactInt8Model
from device.codec.tflite import TFLiteModel
from device.errors import BundleError, ContainerError
from device.imageio import MAX_PIXELS, resize

__all__ = ["DecodeResult", "Decoder"]


@dataclass(frozen=True, eq=False)
class DecodeResult:
    """What `Decoder.decode` returns.

    Attributes:
        image: uint8 [height, width, 3] at the original size (or the coded size if asked).
        header: the container header.
        missing_bands: band numbers (top to bottom) decoded as the prior mean.
        y_hat: the dequantised latents [h, w, M] fed to the synthesis transform.
    """

    image: np.ndarray = field(repr=False)
    header: Header
    missing_bands: tuple[int, ...]
    y_hat: np.ndarray = field(repr=False)


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
        """Decode container bytes to an image.

        Args:
            data: the container (bands may be absent if the container marks them missing).
            original_size: resize to the size the trap captured (else the coded size).

        Raises:
            ContainerError: truncated, corrupted, or made by another model.
        """
        header, y_hat, missing = self.decode_latents(data)
        ph, pw = y_hat.shape[0] * 16, y_hat.shape[1] * 16
        (x_hat,) = self.synthesis.run(y_hat[None])
        if x_hat.shape != (1, ph, pw, 3):
            raise BundleError(f"synthesis.tflite gave {x_hat.shape}, expected {(1, ph, pw, 3)}")
        x = np.clip(x_hat[0, : header.coded_height, : header.coded_width], 0.0, 1.0)
        image = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
        if original_size and image.shape[:2] != (header.height, header.width):
            image = resize(image, header.height, header.width)
        return DecodeResult(image=image, header=header, missing_bands=missing, y_hat=y_hat)

    def decode_latents(self, data: bytes) -> tuple[Header, np.ndarray, tuple[int, ...]]:
        """(header, y_hat [h, w, M], missing band numbers): everything before g_s."""
        header, z_data, bands, _damaged = unpack_image(data, self.bundle.model_id)
        self._check_header(header)
        lh, lw, z_shape = self.latent_shape(header)
        ranges = L.band_rows(lh, header.band_rows)
        if any(index >= len(ranges) for index in bands):
            raise ContainerError(f"container has band numbers beyond {len(ranges)} bands")
        try:
            z_symbols = rangecoder.decode_indexed(z_data, L.z_indexes(z_shape), *self.tables.z)
        except rangecoder.RangeCoderError as exc:
            raise ContainerError(f"the side information (z) is corrupt: {exc}") from None
        indexes = L.hyper_indexes(self.hyper, L.z_hat(z_symbols, self.tables.z_offset),
                                  self.tables.lut)  # fmt: skip
        if indexes.shape != (lh, lw, self.bundle.latent_channels):
            raise BundleError(f"h_s gives indexes of shape {indexes.shape} for {lh}x{lw} latents")
        corners = tuple(header.boxes)
        roi = L.roi_mask(corners, header.coded_height, header.coded_width, lh, lw)
        steps = L.step_map(roi, header.step, header.background_step, bool(corners))
        shifted = L.shift_indexes(indexes, steps)
        y_q = np.zeros((lh, lw, self.bundle.latent_channels), np.int32)
        missing = []
        for band, (r0, r1) in enumerate(ranges):
            payload = bands.get(band)
            if payload is None:  # never sent, lost, cut short or failed its CRC
                missing.append(band)
                continue
            try:
                y_q[r0:r1] = rangecoder.decode_indexed(payload, shifted[r0:r1], *self.tables.y)
            except rangecoder.RangeCoderError:
                missing.append(band)  # y_q stays 0: the prior mean
        y_hat = L.dequantize_y(y_q, steps, self.tables.d)
        return header, y_hat, tuple(missing)

    def _check_header(self, header: Header) -> None:
        """Refuse what passes the CRC but no encoder of this model writes."""
        for name, (w, h) in {"coded": (header.coded_width, header.coded_height),
                             "restored": (header.width, header.height)}.items():  # fmt: skip
            if w * h > MAX_PIXELS:
                raise ContainerError(f"header names a {name} size of {w}x{h}: too large")
        top = self.tables.scale_count - 1
        if not (0 <= header.step <= top and 0 <= header.background_step <= top):
            raise ContainerError(
                f"header names steps {header.step}/{header.background_step} outside [0, {top}]"
            )

    def latent_shape(self, header: Header) -> tuple[int, int, tuple[int, int, int]]:
        """(latent rows, latent columns, z shape) of a header's coded size."""
        multiple = self.bundle.pad_multiple
        ph = -(-header.coded_height // multiple) * multiple
        pw = -(-header.coded_width // multiple) * multiple
        return ph // 16, pw // 16, (ph // 64, pw // 64, self.bundle.hyper_channels)
