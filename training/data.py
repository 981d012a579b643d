"""Training data: random patches from folders of images, with pixel weights from the masks.

Folders are searched recursively for JPEG, PNG, BMP, TIFF and WebP files. Each sample is a
random image, cropped at a random place, flipped left-right with probability 1/2. Images
smaller than the patch are reflect-padded when at least half the patch on each side
(``small="pad"``), otherwise skipped. Unreadable files are skipped and counted, never fatal.

Where an image has boxes (training/masks.py) the sample is pre-filtered exactly as on the trap
(device.prefilter, seed 001: the background is blurred before encoding) and its weight map is
1 on animal pixels and ``w_bg`` elsewhere; without boxes the weights are all 1.

Example:
    >>> images = find_images(["../shared/data/train"])                      # doctest: +SKIP
    >>> source = PatchSource(images, patch=128)
    >>> ds = source.dataset(batch=8)          # yields (x [8,128,128,3], w [8,128,128,1])
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from device.boxes import levels_from_boxes
from device.codec.bundle import PAD_MULTIPLE
from device.errors import WildlinkError

log = logging.getLogger(__name__)

EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DEFAULT_DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


class DataError(WildlinkError, ValueError):
    """No usable training images, or a data option is unusable."""


def default_data_root() -> Path:
    """``$WILDLINK_DATA`` or ``../shared/data`` next to the repository."""
    return Path(os.environ.get("WILDLINK_DATA", DEFAULT_DATA))


def find_images(roots: Sequence[str | Path]) -> list[Path]:
    """Every image file under `roots` (recursive, sorted); a DataError if there is none."""
    found: list[Path] = []
    for root in roots:
        root = Path(root)
        if root.is_file():
            found.append(root)
        elif root.is_dir():
            found.extend(p for p in root.rglob("*") if p.suffix.lower() in EXTENSIONS)
        else:
            raise DataError(f"training data not found: {root} (set --data or WILDLINK_DATA)")
    if not found:
        names = ", ".join(str(r) for r in roots)
        raise DataError(f"no images under {names} (looked for {' '.join(EXTENSIONS)})")
    return sorted(set(found))


def read_image(path: Path) -> np.ndarray:
    """RGB uint8 [H, W, 3]; raises OSError/ValueError for unreadable files."""
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@dataclass
class PatchSource:
    """Random patches from `images` (see module docstring).

    Attributes:
        boxes: optional image path -> boxes (or None); see training/masks.py.
        prefilter: blur the background of images that have boxes, as the trap does.
    """

    images: Sequence[Path]
    patch: int = 128
    small: str = "pad"
    boxes: dict | None = None
    w_bg: float = 1.0
    prefilter: bool = True
    seed: int = 0
    skipped: dict[str, int] = field(default_factory=lambda: {"unreadable": 0, "small": 0})
    _bad: set = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.small not in ("pad", "skip"):
            raise DataError(f"--small must be pad or skip, got {self.small!r}")
        if self.patch < PAD_MULTIPLE or self.patch % PAD_MULTIPLE:
            raise DataError(f"--patch must be a multiple of {PAD_MULTIPLE} (the model's "
                            f"downsampling of z), got {self.patch}")
        if not self.images:
            raise DataError("no training images")

    def check(self) -> int:
        """Open every file's header; count and drop the unreadable and too-small ones."""
        from PIL import Image

        usable = []
        for path in self.images:
            try:
                with Image.open(path) as im:
                    width, height = im.size
            except (OSError, ValueError, Image.DecompressionBombError):
                self.skipped["unreadable"] += 1
                continue
            if min(width, height) < self.patch and (
                self.small == "skip" or min(width, height) < self.patch // 2
            ):
                self.skipped["small"] += 1
                continue
            usable.append(path)
        if not usable:
            raise DataError(
                f"none of {len(self.images)} images is usable "
                f"({self.skipped['unreadable']} unreadable, {self.skipped['small']} smaller "
                f"than the patch {self.patch})"
            )
        self.images = usable
        return len(usable)

    def sample(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """One (x float32 [P,P,3] in [0,1], w float32 [P,P,1]); skips unreadable files."""
        for _ in range(100):
            path = self.images[rng.integers(len(self.images))]
            if path in self._bad:
                continue
            try:
                image = read_image(path)
            except (OSError, ValueError, SyntaxError):
                self._bad.add(path)
                self.skipped["unreadable"] += 1
                log.warning("skipping unreadable image %s", path)
                continue
            return self._crop(image, self._boxes(path), rng)
        raise DataError("could not read any training image (all unreadable?)")

    def _boxes(self, path: Path):
        return None if self.boxes is None else self.boxes.get(path)

    def _crop(self, image: np.ndarray, boxes, rng: np.random.Generator):
        height, width = image.shape[:2]
        p = self.patch
        if boxes is not None:
            levels = levels_from_boxes(boxes, height, width, 0.0)
        else:
            levels = np.ones((height, width), np.float32)
        if height < p or width < p:
            pad = ((0, max(p - height, 0)), (0, max(p - width, 0)))
            image = np.pad(image, pad + ((0, 0),), mode="reflect")
            levels = np.pad(levels, pad, mode="reflect")
            height, width = image.shape[:2]
        top, left = rng.integers(height - p + 1), rng.integers(width - p + 1)
        x = image[top : top + p, left : left + p]
        lv = levels[top : top + p, left : left + p]
        if rng.random() < 0.5:
            x, lv = x[:, ::-1], lv[:, ::-1]
        if boxes is not None and self.prefilter and (lv < 1).any():
            from device.prefilter import prefilter

            x = prefilter(np.ascontiguousarray(x), lv)
        w = self.w_bg + (1.0 - self.w_bg) * lv
        return x.astype(np.float32) / 255.0, w[..., None].astype(np.float32)

    def generate(self, seed: int | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        rng = np.random.default_rng(self.seed if seed is None else seed)
        while True:
            yield self.sample(rng)

    def dataset(self, batch: int, seed: int | None = None):
        """An endless tf.data pipeline of (x, w) batches."""
        import tensorflow as tf

        p = self.patch
        ds = tf.data.Dataset.from_generator(
            lambda: self.generate(seed),
            output_signature=(
                tf.TensorSpec([p, p, 3], tf.float32),
                tf.TensorSpec([p, p, 1], tf.float32),
            ),
        )
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = (
            tf.data.experimental.AutoShardPolicy.OFF
        )
        return ds.batch(batch, drop_remainder=True).prefetch(2).with_options(options)


def representative_images(
    images: Sequence[Path], count: int, size: int, seed: int = 0
) -> list[np.ndarray]:
    """Up to `count` readable images, centre-cropped/padded to size x size, float32 [0, 1].

    Export uses these as the int8 calibration set of analysis.tflite.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    out = []
    for i in order:
        try:
            image = read_image(images[i])
        except (OSError, ValueError, SyntaxError):
            continue
        height, width = image.shape[:2]
        if height < size or width < size:
            pad = ((0, max(size - height, 0)), (0, max(size - width, 0)), (0, 0))
            image = np.pad(image, pad, mode="reflect" if min(height, width) > 1 else "edge")
            height, width = image.shape[:2]
        top, left = (height - size) // 2, (width - size) // 2
        out.append(image[top : top + size, left : left + size].astype(np.float32) / 255.0)
        if len(out) == count:
            break
    if not out:
        raise DataError("no readable image for the int8 calibration set")
    return out
