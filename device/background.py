"""Per-site background model: what moved against the running median of recent frames.

A camera trap looks at one scene for months, so "what differs from the usual view" finds the
animal without a detector. On a low-resolution luma plane (about 160 columns):

1. features: log luma minus its local mean (a box blur half the width wide). A change of
   exposure or IR flash power scales luma, which the log turns into an offset that
   the local mean removes; slow sun patches are damped the same way.
2. background: the per-pixel median of the last `history` feature planes *of the same
   illumination mode*. Night IR frames (colourless) and day frames keep separate histories, so
   the model never compares a night frame with a day background.
3. foreground: |features - background| above a robust threshold (k times the frame's median
   absolute difference, at least `min_threshold`), the burned-in info bars excluded, then a
   3x3 opening (specks) and dilation (joins an animal's parts), then connected components ->
   boxes, largest first.
4. a frame whose features correlate with the background less than `reset_correlation` is a
   new scene (camera moved or knocked): that mode's history restarts from this frame and no
   boxes are given, so the caller falls back to spectral saliency. Measured: frames of
   peru-sdzg1 correlate 0.5 to 0.95 with their own background (one dim IR burst 0.16 to 0.24,
   which restarts), frames of peru-sdzg2 0.16 to 0.37 with sdzg1's.

The state (histories and settings) is a few hundred KB; `save` / `load` keep it across
restarts of the trap service.

Example:
    >>> model = BackgroundModel()
    >>> for frame in frames:                # doctest: +SKIP
    ...     result = model.observe(frame)   # None until `min_frames` of this mode were seen
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from device.boxes import (
    MAX_BOXES,
    SaliencyMap,
    box_blur,
    component_boxes,
    dilate,
    downsample,
    levels_from_boxes,
    luma,
    merge_boxes,
    opening,
)
from device.errors import ConfigError

MODES = ("day", "ir")


@dataclass(frozen=True)
class BackgroundConfig:
    """Settings of the background model (units: low-res cells, log-luma, fractions)."""

    width: int = 160  # columns of the low-resolution luma plane
    history: int = 12  # frames per mode in the running median
    min_frames: int = 3  # frames of a mode needed before it gives boxes
    k_mad: float = 4.0  # threshold = k * 1.4826 * median |difference|
    min_threshold: float = 0.1  # ... but at least this (log-luma units, ~10% contrast)
    min_area: float = 0.003  # smallest component kept, as a fraction of the frame
    reset_correlation: float = 0.25  # features correlate less with the background: new scene
    ir_saturation: float = 3.0  # mean (max - min) channel spread below this = IR frame
    exclude_top: float = 0.0  # burned-in info bars: fraction of the height ignored
    exclude_bottom: float = 0.08
    dilation: int = 3  # 3x3 dilations that join an animal's parts
    background_level: float = 0.0  # level map value outside the boxes


class BackgroundModel:
    """Learns a site from its own frames; `observe` gives boxes of what moved."""

    def __init__(self, config: BackgroundConfig | None = None):
        self.config = config or BackgroundConfig()
        self._history: dict[str, list[np.ndarray]] = {mode: [] for mode in MODES}

    def frames_seen(self, mode: str) -> int:
        return len(self._history[mode])

    def ready(self, image: np.ndarray) -> bool:
        """True if this frame's mode has enough history to be compared."""
        return self.frames_seen(self.mode_of(image)) >= self.config.min_frames

    def mode_of(self, image: np.ndarray) -> str:
        """Return "ir" for colourless frames (IR night or monochrome), else "day"."""
        image = np.asarray(image)
        if image.ndim == 2 or image.shape[2] < 3:
            return "ir"
        small = image[:: max(1, image.shape[0] // 96), :: max(1, image.shape[1] // 128), :3]
        small = small.astype(np.int16)
        spread = float((small.max(axis=2) - small.min(axis=2)).mean())
        return "ir" if spread < self.config.ir_saturation else "day"

    def features(self, image: np.ndarray) -> np.ndarray:
        """Low-res log luma minus its local mean (gain- and exposure-invariant)."""
        plane = np.log1p(downsample(luma(image), self.config.width))
        return plane - box_blur(plane, max(1, plane.shape[1] // 4))

    def foreground(self, image: np.ndarray) -> tuple[np.ndarray | None, str, np.ndarray]:
        """(changed-cell mask or None if not ready, mode, features) without learning."""
        mode = self.mode_of(image)
        feats = self.features(image)
        background = self._background(mode, feats.shape)
        if background is None:
            return None, mode, feats
        diff = np.abs(feats - background)
        h = diff.shape[0]
        top, bottom = int(self.config.exclude_top * h), int(np.ceil(self.config.exclude_bottom * h))
        diff[:top] = 0.0
        if bottom:
            diff[h - bottom :] = 0.0
        spread = 1.4826 * float(np.median(diff))
        threshold = max(self.config.min_threshold, self.config.k_mad * spread)
        return diff > threshold, mode, feats

    def observe(self, image: np.ndarray, learn: bool = True) -> SaliencyMap | None:
        """Boxes of what moved in `image` (an [H, W, 3] uint8 frame), then learn the frame.

        Returns None while this frame's mode has fewer than `min_frames` frames, or when the
        whole scene changed (the history restarts): the caller should fall back.
        """
        changed, mode, feats = self.foreground(image)
        result = None
        if changed is not None and self._correlation(feats, mode) < self.config.reset_correlation:
            self._history[mode].clear()
        elif changed is not None:
            mask = dilate(opening(changed), self.config.dilation)
            boxes = merge_boxes(component_boxes(mask, self.config.min_area))
            boxes = tuple(boxes[:MAX_BOXES])
            height, width = np.asarray(image).shape[:2]
            levels = levels_from_boxes(boxes, height, width, self.config.background_level)
            result = SaliencyMap(boxes, levels, "background")
        if learn:
            self.learn(feats, mode)
        return result

    def _correlation(self, feats: np.ndarray, mode: str) -> float:
        background = self._background(mode, feats.shape)
        a, b = feats - feats.mean(), background - background.mean()
        norm = float(np.sqrt((a * a).sum() * (b * b).sum()))
        return float((a * b).sum()) / norm if norm > 0 else 1.0

    def _background(self, mode: str, shape: tuple) -> np.ndarray | None:
        history = [h for h in self._history[mode] if h.shape == shape]
        if len(history) < self.config.min_frames:
            return None
        return np.median(np.stack(history).astype(np.float32), axis=0)

    def learn(self, feats: np.ndarray, mode: str) -> None:
        """Add one feature plane to `mode`'s history (oldest dropped)."""
        history = self._history[mode]
        if history and history[-1].shape != feats.shape:
            history.clear()  # the transmit size changed: start over
        history.append(feats.astype(np.float16))
        del history[: -self.config.history]

    def save(self, path: str | Path) -> None:
        """Persist the histories and settings (numpy .npz, written atomically)."""
        path = Path(path)
        arrays = {
            f"{mode}_{i}": plane for mode in MODES for i, plane in enumerate(self._history[mode])
        }
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as handle:
            np.savez_compressed(handle, config=np.array(json.dumps(asdict(self.config))), **arrays)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> BackgroundModel:
        """Restore a model written by `save`; unknown settings are ignored."""
        try:
            with np.load(Path(path), allow_pickle=False) as npz:
                stored = json.loads(str(npz["config"]))
                known = {f.name for f in fields(BackgroundConfig)}
                model = cls(BackgroundConfig(**{k: v for k, v in stored.items() if k in known}))
                for mode in MODES:
                    keys = sorted(
                        (k for k in npz.files if k.startswith(mode + "_")),
                        key=lambda k: int(k.rsplit("_", 1)[1]),
                    )
                    model._history[mode] = [npz[k].astype(np.float16) for k in keys]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"cannot read background model {path}: {exc}") from None
        return model
