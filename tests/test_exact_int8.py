"""The exact integer hyper-synthesis (device/codec/exact_int8.py) against TFLite's reference
kernels: the same int8 outputs and scale indexes on every shipped bundle, the sample frames and
random latents; the one rounding rule against its literal definition; old containers decode.
"""

from __future__ import annotations

import hashlib
import json
import math

import numpy as np
import pytest
from conftest import ROOT, SAMPLES

from device.codec import latents
from device.codec.bundle import HYPER_SYNTHESIS, Bundle
from device.codec.decoder import Decoder
from device.codec.encoder import Encoder
from device.codec.exact_int8 import (
    ExactInt8Model,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
)
from device.codec.registry import BundleRegistry
from device.codec.tflite import TFLiteModel, quantize
from device.codec.tflite_flatbuffer import read_graph
from device.errors import BundleError
from device.imageio import load_image, resize, transmit_shape

MODELS = ROOT / "device" / "models"
BUNDLES = [MODELS / "default"] + sorted(p.parent for p in MODELS.glob("sites/*/*/manifest.json"))
TINY = SAMPLES / "tiny_bundle"
OLD = SAMPLES / "hs_reference"


def _bundle_id(path) -> str:
    return str(path.relative_to(MODELS)) if MODELS in path.parents else path.name


# -- the rule ---------------------------------------------------------------------------------
def _literal_mbqm(x: int, q: int, shift: int) -> int:
    """gemmlowp's SaturatingRoundingDoublingHighMul and RoundingDivideByPOT, word for word."""
    left, right = max(shift, 0), max(-shift, 0)
    a = x * (1 << left)
    ab = a * q
    n = ab + ((1 << 30) if ab >= 0 else 1 - (1 << 30))
    high = -((-n) // (1 << 31)) if n < 0 else n // (1 << 31)  # C++ division truncates
    mask = (1 << right) - 1
    remainder = high & mask
    threshold = (mask >> 1) + (1 if high < 0 else 0)
    return (high >> right) + (1 if remainder > threshold else 0)


def test_requantisation_closed_form_is_tflite_double_rounding():
    rng = np.random.default_rng(19)
    x = np.concatenate([rng.integers(-(2**31) + 1, 2**31 - 1, 4000),
                        rng.integers(-5000, 5000, 4000), [0, 1, -1, 2**30, -(2**30)]])
    q = rng.integers(2**30, 2**31, x.size)
    shift = rng.integers(-31, 1, x.size)
    small = np.abs(x) < 2**24
    shift[small] = rng.integers(-31, 8, int(small.sum()))  # left shifts only where x 2^s fits
    got = multiply_by_quantized_multiplier(x, q, shift)
    want = [_literal_mbqm(int(a), int(b), int(c)) for a, b, c in zip(x, q, shift, strict=True)]
    np.testing.assert_array_equal(got, want)
    # exact halves: 0.5 -> 1, -0.5 -> -1 (RoundingDivideByPOT rounds half away from zero)
    assert list(multiply_by_quantized_multiplier(np.array([1, -1, 3, -3]), 2**30, 0)) == [
        _literal_mbqm(v, 2**30, 0) for v in (1, -1, 3, -3)
    ]


def test_quantize_multiplier_is_frexp_rounded_to_31_bits():
    for real in (0.0, 1e-12, 0.000123, 0.37, 0.5, 0.9999999999, 1.0, 3.7):
        q, shift = quantize_multiplier(real)
        if real < 2**-32:
            assert (q, shift) == (0, 0)
            continue
        assert 2**30 <= q < 2**31
        assert abs(q * 2.0 ** (shift - 31) - real) <= 2.0 ** (shift - 32)  # within half a unit
        assert shift == math.frexp(real)[1] or q == 2**30


# -- the file reader --------------------------------------------------------------------------
@pytest.mark.parametrize("folder", [MODELS / "default", TINY], ids=_bundle_id)
def test_flatbuffer_reader_sees_what_tflite_sees(folder):
    from tflite_runtime.interpreter import Interpreter

    path = folder / HYPER_SYNTHESIS
    graph = read_graph(path)
    interp = Interpreter(model_path=str(path))
    interp.allocate_tensors()
    constants = 0
    for detail in interp.get_tensor_details():
        if detail["index"] >= len(graph.tensors):
            continue  # the interpreter's own scratch tensors
        t = graph.tensors[detail["index"]]
        q = detail["quantization_parameters"]
        assert t.name == detail["name"] and np.dtype(t.dtype) == detail["dtype"]
        np.testing.assert_array_equal(t.scale, q["scales"])
        np.testing.assert_array_equal(t.zero_point, q["zero_points"])
        assert t.quantized_dimension == q["quantized_dimension"]
        if t.data is not None:
            np.testing.assert_array_equal(t.data, interp.get_tensor(detail["index"]))
            constants += 1
    assert constants >= 6  # three layers' weights and biases at least
    ops = [op["op_name"] for op in interp._get_ops_details()]  # noqa: SLF001
    assert [op.name for op in graph.ops] == ops


def test_reader_refuses_a_file_that_is_not_tflite(tmp_path):
    (tmp_path / "h.tflite").write_bytes(b"\x00" * 64)
    with pytest.raises(BundleError, match="not a TFLite model"):
        ExactInt8Model(tmp_path / "h.tflite")
    (tmp_path / "h.tflite").write_bytes((MODELS / "default" / HYPER_SYNTHESIS).read_bytes()[:900])
    with pytest.raises(BundleError, match="damaged"):
        ExactInt8Model(tmp_path / "h.tflite")


# -- the proof: identical to the reference kernels --------------------------------------------
def _assert_same(exact, reference, z_hat, lut):
    (detail,) = reference.inputs
    fed = quantize(z_hat[None], detail)
    ours, theirs = exact.run_raw(fed), reference.run_raw(fed)
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(latents.hyper_indexes(exact, z_hat, lut),
                                  latents.hyper_indexes(reference, z_hat, lut))


def _frames(folder: str, long_side: int, every: int = 1):
    for path in sorted((SAMPLES / folder).glob("*.jpg"))[::every]:
        image = load_image(path)
        yield resize(image, *transmit_shape(*image.shape[:2], long_side))


@pytest.mark.parametrize("folder", BUNDLES + [TINY], ids=_bundle_id)
def test_exact_hyper_synthesis_equals_reference_kernels(folder):
    """Every shipped bundle: its own analysis on the sample frames, and random z symbols."""
    bundle = Bundle.load(folder)
    exact = ExactInt8Model(bundle.file(HYPER_SYNTHESIS))
    reference = TFLiteModel(bundle.file(HYPER_SYNTHESIS), reference=True)
    encoder = Encoder(bundle)
    lut, offset = encoder.tables.lut, encoder.tables.z_offset
    # The default at the trap's 1024 px; the site examples (the same h_s file after another
    # g_a) on their site's frames and one camtrap frame, at 512 px.
    if folder.name == "default":
        frames = [*_frames("camtrap", 1024), *_frames("site", 512)]
    else:
        frames = [*_frames("site", 512, every=2), *_frames("camtrap", 512, every=4)]
    for image in frames:
        _, z = encoder.analyse(image)
        _assert_same(exact, reference, latents.z_hat(latents.z_symbols(z, offset), offset), lut)
    rng = np.random.default_rng(int(hashlib.sha256(str(folder).encode()).hexdigest()[:8], 16))
    for shape in ((1, 1), (3, 5), (6, 8)):
        for spread in (2, 8, 40):  # typical symbols, wide ones, and the int8 range's edges
            symbols = rng.integers(-spread, spread + 1, (*shape, bundle.hyper_channels))
            _assert_same(exact, reference, latents.z_hat(symbols, offset), lut)


def test_encoder_and_decoder_run_the_exact_path():
    encoder, decoder = Encoder(MODELS / "default"), Decoder(MODELS / "default")
    assert isinstance(encoder.hyper, ExactInt8Model) and isinstance(decoder.hyper, ExactInt8Model)


# -- old containers -----------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(json.loads((OLD / "expected.json").read_text())))
def test_containers_from_before_the_exact_path_decode_identically(name):
    """tests/data/hs_reference: coded by wildlink 40c17d1 with h_s on the reference kernels."""
    expected = json.loads((OLD / "expected.json").read_text())[name]
    data = (OLD / name).read_bytes()
    # the shipped registry finds the bundle its header names, wherever it is kept now
    result = BundleRegistry().decode(data, original_size=False)
    assert result.missing_bands == ()
    assert hashlib.sha256(result.y_hat.tobytes()).hexdigest() == expected["y_hat_sha256"]


# -- any number of heads ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def two_head_models():
    """A mean-scale-like h_s: trunk (transposed convs, a fused-ReLU conv), an index head and a
    `h_s_mean2` conv head; converted int8-only and with float (DEQUANTIZE) outputs."""
    tf = pytest.importorskip("tensorflow")
    from training.convert import unfuse_transpose_conv_relu

    tf.keras.utils.set_random_seed(19)
    z = tf.keras.Input([None, None, 8], batch_size=1)
    h = tf.keras.layers.Conv2DTranspose(12, 5, strides=2, padding="same", activation="relu")(z)
    h = tf.keras.layers.Conv2D(12, 3, padding="same", activation="relu")(h)
    h = tf.keras.layers.Conv2DTranspose(12, 5, strides=2, padding="same", activation="relu")(h)
    scales = tf.keras.layers.Conv2DTranspose(16, 3, strides=1, padding="same", name="h_s_conv2")(h)
    scales = tf.clip_by_value(scales, 0.0, 63.0)
    means = tf.keras.layers.Conv2D(16, 3, padding="same", name="h_s_mean2")(h)
    model = tf.keras.Model(z, [scales, means])
    rng = np.random.default_rng(0)
    reps = [rng.normal(0, 3, (1, 4, 6, 8)).astype(np.float32) for _ in range(8)]
    out = {"float32": tf.lite.TFLiteConverter.from_keras_model(model).convert()}
    for kind in ("int8", "float"):
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = lambda: ([r] for r in reps)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        if kind == "int8":
            converter.inference_output_type = tf.int8
        out[kind] = unfuse_transpose_conv_relu(converter.convert())
    return out


def test_a_float_hyper_synthesis_is_refused(two_head_models, tmp_path):
    (tmp_path / "h_s.tflite").write_bytes(two_head_models["float32"])
    with pytest.raises(BundleError, match="float"):
        ExactInt8Model(tmp_path / "h_s.tflite")


@pytest.mark.parametrize("kind", ["int8", "float"])
def test_any_number_of_output_heads(two_head_models, kind, tmp_path):
    path = tmp_path / f"h_s_{kind}.tflite"
    path.write_bytes(two_head_models[kind])
    exact, reference = ExactInt8Model(path), TFLiteModel(path, reference=True)
    names = {op.name for op in exact.graph.ops}
    assert {"CONV_2D", "TRANSPOSE_CONV"} <= names
    assert ("DEQUANTIZE" in names) == (kind == "float")
    assert [d["name"] for d in exact.outputs] == [d["name"] for d in reference.outputs]
    rng = np.random.default_rng(1)
    for shape in ((1, 1), (3, 5), (4, 6)):
        z = rng.integers(-128, 128, (1, *shape, 8)).astype(np.int8)
        ours, theirs = exact.run_raw(z), reference.run_raw(z)
        assert len(ours) == 2
        for a, b in zip(ours, theirs, strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape == (1, 4 * shape[0], 4 * shape[1], 16)
            np.testing.assert_array_equal(a, b)
