"""Model bundle: the folder `training/export.py` writes and the trap and base station read.

The format is specified in docs/bundle.md. This module is the single place that knows the
file names, the manifest fields and how the model id is computed, so writer and readers
cannot drift apart.

Example:
    >>> bundle = Bundle.load("device/models/default")   # doctest: +SKIP
    >>> bundle.model_id, bundle.latent_channels
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from device.errors import BundleError

FORMAT = "wildlink-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
ANALYSIS = "analysis.tflite"
HYPER_SYNTHESIS = "hyper_synthesis.tflite"
SYNTHESIS = "synthesis.tflite"
ENTROPY = "entropy.npz"
#: Files hashed into the model id, in this order.
HASHED_FILES = (ANALYSIS, HYPER_SYNTHESIS, SYNTHESIS, ENTROPY)
ENTROPY_KEYS = (
    "y_cdf", "y_cdf_offset", "y_cdf_length",
    "z_cdf", "z_cdf_offset", "z_cdf_length", "z_offset",
    "hs_index_lut", "scale_table",
)
#: Image sides the codec takes are multiples of this: g_a's /16 times h_a's /4 (z's grid).
PAD_MULTIPLE = 64
DEFAULT_BUNDLE = Path(__file__).resolve().parent.parent / "models" / "default"
#: The float weights inside a bundle (`wildlink export --weights`): read only by fine-tune,
#: prune and export on the workstation, never sent to a Pi (see `device_files`).
WEIGHTS_FOLDER = "checkpoint"


def device_files(folder: str | Path) -> list[Path]:
    """The files of bundle `folder` that go to a Pi, sorted: its top-level files (the ones
    `Bundle.load` reads, and the model card), never WEIGHTS_FOLDER.

    The one place that decides it: `make flash` stages exactly these, and the wheel's package
    data (setup.cfg `exclude_package_data`) is tested to match them (tests/test_flash.py).
    """
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise BundleError(f"no model bundle at {folder} ({MANIFEST} missing)")
    return sorted(p for p in folder.iterdir() if p.is_file())


def compute_model_id(folder: str | Path) -> str:
    """First 8 hex digits of sha256 over the hashed files' bytes, in `HASHED_FILES` order."""
    folder = Path(folder)
    digest = hashlib.sha256()
    for name in HASHED_FILES:
        path = folder / name
        if not path.is_file():
            raise BundleError(f"model bundle {folder} has no {name}")
        digest.update(path.read_bytes())
    return digest.hexdigest()[:8]


def write_manifest(folder: str | Path, fields: dict) -> dict:
    """Write manifest.json with format, version and the model id of the files already there."""
    folder = Path(folder)
    manifest = {"format": FORMAT, "format_version": FORMAT_VERSION, **fields}
    manifest["model_id"] = compute_model_id(folder)
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


@dataclass(frozen=True)
class Bundle:
    """A loaded, verified model bundle (manifest read, model id checked)."""

    path: Path
    manifest: dict = field(repr=False)

    @classmethod
    def load(cls, path: str | Path | None = None, verify: bool = True) -> Bundle:
        """Read `path` (default: the shipped default bundle) and check its model id."""
        path = Path(path) if path is not None else DEFAULT_BUNDLE
        if not path.is_dir():
            raise BundleError(f"no model bundle at {path} (expected a folder with {MANIFEST})")
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError:
            raise BundleError(f"{path} is not a model bundle: it has no {MANIFEST}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{path / MANIFEST} is not valid JSON: {exc}") from None
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise BundleError(f"{path / MANIFEST} is not a wildlink bundle manifest")
        version = manifest.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"bundle {path} has format version {version}; this wildlink reads {FORMAT_VERSION}"
            )
        if verify:
            actual = compute_model_id(path)
            if actual != manifest.get("model_id"):
                raise BundleError(
                    f"bundle {path} is damaged: its files hash to {actual}, "
                    f"the manifest says {manifest.get('model_id')}"
                )
        return cls(path=path, manifest=manifest)

    @property
    def model_id(self) -> str:
        return self.manifest["model_id"]

    @property
    def latent_channels(self) -> int:
        return int(self.manifest["latent_channels"])

    @property
    def hyper_channels(self) -> int:
        return int(self.manifest["hyper_channels"])

    @property
    def pad_multiple(self) -> int:
        return int(self.manifest.get("pad_multiple", PAD_MULTIPLE))

    @property
    def scale_step(self) -> float:
        """d in s_i = exp(ln s_min + i d): the log spacing of the scale table."""
        table = self.manifest["scale_table"]
        return float(np.log(table["max"] / table["min"]) / (table["count"] - 1))

    def file(self, name: str) -> Path:
        return self.path / name

    @cached_property
    def entropy(self) -> dict[str, np.ndarray]:
        """The arrays of entropy.npz (see docs/bundle.md for their meaning)."""
        try:
            with np.load(self.path / ENTROPY) as npz:
                tables = {key: npz[key] for key in npz.files}
        except (OSError, ValueError) as exc:
            raise BundleError(f"cannot read {self.path / ENTROPY}: {exc}") from None
        missing = [key for key in ENTROPY_KEYS if key not in tables]
        if missing:
            raise BundleError(f"{self.path / ENTROPY} lacks {', '.join(missing)}")
        return tables
