"""Where the animals are in training images: boxes per image file, from one of four sources.

- ``none``: nothing known; every pixel weighs 1 (plain MSE) and nothing is blurred.
- ``megadetector``: a MegaDetector batch results JSON (``category`` 1 = animal,
  ``conf >= threshold``; default 0.2, as MegaDetector's own recommendation for v5).
- ``coco``: a COCO Camera Traps JSON (``images`` with ``file_name``/``width``/``height`` and
  ``annotations`` with pixel ``bbox`` [x, y, w, h]); categories named empty, human, person or
  vehicle are not animals and are dropped.
- ``background``: the trap's own method (device.background): frames of each folder, in file
  name order (a camera-trap sequence), run through a per-site background model; what moved
  becomes a box. Frames seen before the model is ready get no boxes.

The result maps an image path to its boxes (normalised, `device.boxes.Box`) or to None when
the source says nothing about it; data.py turns boxes into pixel weights and the pre-filter's
level map with `device.boxes.levels_from_boxes`, exactly as the trap does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from device.boxes import MAX_BOXES, Box
from device.errors import WildlinkError

SOURCES = ("none", "megadetector", "coco", "background")
NOT_ANIMALS = {"empty", "human", "person", "people", "vehicle", "car"}

#: image path -> boxes, or None when the source knows nothing about the image.
BoxTable = dict[Path, "tuple[Box, ...] | None"]


class MaskError(WildlinkError, ValueError):
    """A mask source (JSON file, source name) cannot be used."""


def load_boxes(
    source: str,
    images: Sequence[Path],
    path: str | Path | None = None,
    threshold: float = 0.2,
) -> BoxTable:
    """Boxes for each of `images` from `source` (see the module docstring)."""
    if source not in SOURCES:
        raise MaskError(f"unknown mask source {source!r}; choose one of {', '.join(SOURCES)}")
    if source == "none":
        return {p: None for p in images}
    if source == "background":
        return _background_boxes(images)
    if path is None:
        raise MaskError(f"mask source {source!r} needs a JSON file (--masks-json)")
    data = _read_json(path)
    if source == "megadetector":
        table = _megadetector_table(data, path, threshold)
    else:
        table = _coco_table(data, path)
    return {p: _lookup(table, p) for p in images}


def _read_json(path: str | Path) -> dict:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise MaskError(f"mask file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise MaskError(f"cannot read mask file {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise MaskError(f"{path} has no 'images' list: not a MegaDetector or COCO CT file")
    return data


def _megadetector_table(data: dict, path, threshold: float) -> dict[str, tuple[Box, ...]]:
    from device.saliency import SaliencyError, megadetector_boxes

    table = {}
    for entry in data["images"]:
        try:
            table[str(entry["file"])] = tuple(megadetector_boxes(entry, threshold))
        except (KeyError, TypeError) as exc:
            raise MaskError(f"{path} is not a MegaDetector results file (no {exc})") from None
        except SaliencyError as exc:
            raise MaskError(f"{path}: {exc}") from None
    return table


def _coco_table(data: dict, path) -> dict[str, tuple[Box, ...]]:
    try:
        names = {c["id"]: str(c.get("name", "")).lower() for c in data.get("categories", [])}
        images = {im["id"]: im for im in data["images"]}
        boxes: dict = {im_id: [] for im_id in images}
        for ann in data.get("annotations", []):
            if "bbox" not in ann or names.get(ann.get("category_id"), "") in NOT_ANIMALS:
                continue
            im = images[ann["image_id"]]
            width, height = float(im["width"]), float(im["height"])
            x, y, w, h = (float(v) for v in ann["bbox"])
            if w > 0 and h > 0:
                boxes[ann["image_id"]].append(Box(x / width, y / height, w / width, h / height))
        return {str(images[i]["file_name"]): tuple(b[:MAX_BOXES]) for i, b in boxes.items()}
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise MaskError(f"{path} is not a COCO Camera Traps file ({exc!r})") from None


def _lookup(table: dict[str, tuple[Box, ...]], image: Path) -> tuple[Box, ...] | None:
    """Match by the longest path suffix the JSON uses (files are often relative paths)."""
    parts = image.parts
    for start in range(len(parts)):
        key = "/".join(parts[start:])
        if key in table:
            return table[key]
        if key.replace("/", "\\") in table:
            return table[key.replace("/", "\\")]
    return None


def _background_boxes(images: Sequence[Path]) -> BoxTable:
    """Run one background model per folder over its frames in name order."""
    import numpy as np
    from PIL import Image

    from device.background import BackgroundModel

    table: BoxTable = {}
    models: dict[Path, BackgroundModel] = {}
    for path in sorted(images):
        model = models.setdefault(path.parent, BackgroundModel())
        try:
            with Image.open(path) as im:
                frame = np.asarray(im.convert("RGB"))
        except (OSError, ValueError):
            table[path] = None  # data.py counts unreadable files
            continue
        result = model.observe(frame)
        table[path] = None if result is None else tuple(result.boxes)
    return table
