"""The bundles installed on a base station, by model id: one base decodes every trap's files.

Traps may run different encoders: the shipped default, a site-adapted one
(`device/models/sites/<site>/<variant>`, docs/adaptation.md), an earlier default on a trap not
yet reflashed. Every container names its model in the header (`Container.model_id`); the
registry finds the bundle with that id among the folders it was given and decodes with it.

A folder is either a bundle (it holds `manifest.json`) or a folder of bundles, searched
`MAX_DEPTH` levels down (the shipped `device/models` gives the default and every site bundle).
Two folders may hold the same bundle (a flashed copy of the shipped default): byte-identical
bundles are one entry. Two *different* bundles claiming one id are refused at load, since
either could decode a file wrongly.

Why lazily: a `Decoder` holds TFLite interpreters (the synthesis arena is the largest memory a
base uses); a base with every bundle installed but traps of two models pays for two.

Example:
    >>> registry = BundleRegistry(["/opt/wildlink/bundles"])        # doctest: +SKIP
    >>> registry.ids                                                # ('217d318c', '2a2f...', ...)
    >>> registry.decode(open("frame.wl", "rb").read()).image.shape
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

from device.codec.bundle import DEFAULT_BUNDLE, HASHED_FILES, MANIFEST, Bundle
from device.codec.container import unpack
from device.errors import BundleError, ContainerError

__all__ = ["MAX_DEPTH", "SHIPPED_MODELS", "BundleRegistry", "find_bundles"]

#: The folder of the bundles that ship with wildlink: the default and `sites/<site>/<variant>`.
SHIPPED_MODELS = DEFAULT_BUNDLE.parent
#: Levels below a named folder searched for bundles (`sites/<site>/<variant>` is 3).
MAX_DEPTH = 3


def find_bundles(folder: str | Path) -> list[Path]:
    """Bundle folders at `folder`: itself if it is a bundle, else every bundle beneath it
    (at most `MAX_DEPTH` levels down, hidden folders skipped), sorted.

    Raises:
        BundleError: `folder` is not a folder, or holds no bundle.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise BundleError(f"no bundle folder at {folder}")
    if (folder / MANIFEST).is_file():
        return [folder]
    found = []
    for root, dirs, files in os.walk(folder):
        depth = len(Path(root).relative_to(folder).parts)
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if depth < MAX_DEPTH else []
        if depth and MANIFEST in files:
            found.append(Path(root))
            dirs[:] = []  # a bundle's own folder holds no further bundles
    if not found:
        raise BundleError(f"{folder} holds no model bundle (no {MANIFEST} in it or "
                          f"{MAX_DEPTH} levels below)")
    return sorted(found)


def _same_bundle(a: Bundle, b: Bundle) -> bool:
    """Byte-identical manifest and model files (a copy, e.g. the flashed shipped default)."""
    return all((a.path / name).read_bytes() == (b.path / name).read_bytes()
               for name in (MANIFEST, *HASHED_FILES))


class BundleRegistry:
    """Every bundle under some folders, keyed by model id; decodes a container by its id.

    Args:
        folders: bundle folders or folders of bundles (after the shipped ones).
        shipped: also load `SHIPPED_MODELS` (the default and the site bundles), first.
        num_threads: interpreter threads of each decoder's synthesis transform.

    Raises:
        BundleError: a folder is missing, holds no bundle or a damaged one, or two
            different bundles claim one model id.
    """

    def __init__(self, folders: Iterable[str | Path] = (), *, shipped: bool = True,
                 num_threads: int | None = None) -> None:
        self.bundles: dict[str, Bundle] = {}
        self._num_threads = num_threads
        self._decoders: dict = {}
        self._lock = threading.Lock()
        for folder in ([SHIPPED_MODELS] if shipped else []) + [Path(f) for f in folders]:
            for path in find_bundles(folder):
                self._add(Bundle.load(path))

    def _add(self, bundle: Bundle) -> None:
        known = self.bundles.get(bundle.model_id)
        if known is None:
            self.bundles[bundle.model_id] = bundle
        elif known.path.resolve() != bundle.path.resolve() and not _same_bundle(known, bundle):
            raise BundleError(
                f"bundles {known.path} and {bundle.path} both claim model id {bundle.model_id} "
                "but differ: remove one (a container names only the id)"
            )

    @property
    def ids(self) -> tuple[str, ...]:
        """The installed model ids, sorted."""
        return tuple(sorted(self.bundles))

    @property
    def loaded(self) -> tuple[str, ...]:
        """Model ids whose decoder (and interpreters) exist so far."""
        return tuple(sorted(self._decoders))

    def __contains__(self, model_id: object) -> bool:
        return model_id in self.bundles

    def __len__(self) -> int:
        return len(self.bundles)

    def describe(self) -> list[str]:
        """One line per bundle: id and folder (for logs and `wildlink decode`)."""
        return [f"{i} {self.bundles[i].path}" for i in self.ids]

    def bundle(self, model_id: str) -> Bundle:
        """The bundle of `model_id`; ContainerError naming the installed ids if none."""
        try:
            return self.bundles[model_id]
        except KeyError:
            raise ContainerError(
                f"file was encoded with model {model_id}, which is not installed here "
                f"(installed: {', '.join(self.ids) or 'none'}); add its bundle folder "
                "(base config [codec] bundles, or wildlink decode --bundle)"
            ) from None

    def decoder(self, model_id: str):
        """The `Decoder` of `model_id`, created on first use."""
        from device.codec.decoder import Decoder

        bundle = self.bundle(model_id)
        with self._lock:
            if model_id not in self._decoders:
                self._decoders[model_id] = Decoder(bundle, num_threads=self._num_threads)
            return self._decoders[model_id]

    def decode(self, data: bytes, original_size: bool = True):
        """Decode container bytes with the bundle its header names (`Decoder.decode`).

        Raises:
            ContainerError: not a readable container, or its model is not installed.
        """
        return self.decoder(unpack(data).model_id).decode(data, original_size=original_size)
