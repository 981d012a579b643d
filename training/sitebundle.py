"""A site bundle: the adapted encoder beside the base bundle's decoder files, byte for byte.

Site fine-tuning (training/finetune.py) changes only g_a and h_a, but a fresh `wildlink export`
recalibrates the int8 hyper-synthesis on the site's frames, so its `hyper_synthesis.tflite` and
`entropy.npz` (hs_index_lut) can differ from the base bundle's. Copying the base bundle's
`hyper_synthesis.tflite`, `synthesis.tflite` and `entropy.npz` into the exported bundle keeps
the base station's decoder side identical; only `analysis.tflite` and the model id change.

Example:
    >>> reuse_decoder("build/sdzg1-lora", "device/models/default")      # doctest: +SKIP
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from device.codec import bundle as fmt
from device.errors import BundleError

#: Files of the base station's side (docs/bundle.md), copied from the base bundle.
DECODER_FILES = (fmt.HYPER_SYNTHESIS, fmt.SYNTHESIS, fmt.ENTROPY)
#: Manifest fields that must agree for the decoder files to fit the adapted encoder.
MUST_MATCH = ("latent_channels", "hyper_channels", "scale_table", "entropy", "normalisation")


def _manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / fmt.MANIFEST).read_text())
    except FileNotFoundError:
        raise BundleError(f"{folder} is not a model bundle: it has no {fmt.MANIFEST}") from None
    except json.JSONDecodeError as exc:
        raise BundleError(f"{folder / fmt.MANIFEST} is not valid JSON: {exc}") from None


def same_synthesis(a: Path, b: Path, latent: int, tolerance: float = 1e-3) -> bool:
    """Whether two synthesis.tflite files decode the same random y_hat alike (same g_s weights)."""
    import numpy as np
    import tensorflow as tf

    y_hat = np.random.default_rng(0).normal(0, 1, (1, 8, 8, latent)).astype(np.float32)
    outputs = []
    for path in (a, b):
        interp = tf.lite.Interpreter(model_path=str(path))
        interp.resize_tensor_input(interp.get_input_details()[0]["index"], y_hat.shape)
        interp.allocate_tensors()
        interp.set_tensor(interp.get_input_details()[0]["index"], y_hat)
        interp.invoke()
        outputs.append(interp.get_tensor(interp.get_output_details()[0]["index"]))
    return bool(np.max(np.abs(outputs[0] - outputs[1])) <= tolerance)


def reuse_decoder(bundle: str | Path, base: str | Path, check: bool = True) -> dict:
    """Replace `bundle`'s decoder-side files by `base`'s and rewrite its manifest (new model id).

    Returns the new manifest. Refuses bundles whose latent/hyper widths or scale table differ,
    and (`check`) bundles whose own g_s decodes differently from the base's: the base bundle
    must come from the same decoder weights as the model that was adapted.
    """
    bundle, base = Path(bundle), Path(base)
    ours, theirs = _manifest(bundle), _manifest(base)
    for key in MUST_MATCH:
        if ours.get(key) != theirs.get(key):
            raise BundleError(
                f"{bundle} and {base} differ in {key} ({ours.get(key)} vs {theirs.get(key)}): "
                "the base decoder does not fit this encoder"
            )
    if ours.get("widths", {}).get("synthesis") != theirs.get("widths", {}).get("synthesis"):
        raise BundleError(f"{bundle} and {base} have different decoder widths")
    if check and not same_synthesis(bundle / fmt.SYNTHESIS, base / fmt.SYNTHESIS,
                                    int(ours["latent_channels"])):
        raise BundleError(
            f"{base} decodes differently from {bundle}: it was exported from other decoder "
            "weights than the model that was adapted"
        )
    for name in DECODER_FILES:
        if not (base / name).is_file():
            raise BundleError(f"base bundle {base} has no {name}")
        shutil.copyfile(base / name, bundle / name)
    fields = {k: v for k, v in ours.items() if k not in ("format", "format_version", "model_id")}
    metrics = dict(fields.get("metrics", {}))
    metrics.pop("int8_rate_cost", None)  # measured with the recalibrated h_s, no longer shipped
    fields["metrics"] = metrics
    fields["decoder_from"] = {"model_id": theirs.get("model_id"), "files": list(DECODER_FILES)}
    return fmt.write_manifest(bundle, fields)
