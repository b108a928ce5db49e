"""The super-resolution factories (edsr, wdsr_b, srgan, guided_sr) and their building blocks,
on tiny options so that the file runs in seconds."""

from __future__ import annotations

import re

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

# Keras converts tensors with np.array(x, copy=False) internally (not tomobench's doing)
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

from pydantic import ValidationError  # noqa: E402

from tomobench.models._sr_blocks import PixelShuffle, WeightNormConv2D  # noqa: E402
from tomobench.models.edsr import edsr  # noqa: E402
from tomobench.models.guided import guided_sr  # noqa: E402
from tomobench.models.registry import validate_options  # noqa: E402
from tomobench.models.srgan import SRGAN, srgan  # noqa: E402
from tomobench.models.wdsr import wdsr_b  # noqa: E402

TINY = {
    "edsr": (edsr, {"res_blocks": 1, "filters": 8, "residual_scaling": 0.5}),
    "wdsr_b": (wdsr_b, {"res_blocks": 1, "filters": 8, "expansion": 2, "residual_scaling": 0.5}),
    "srgan": (srgan, {"res_blocks": 1, "filters": 8, "discriminator_filters": 4}),
    "guided_sr": (
        guided_sr,
        {"res_blocks": 1, "filters": 8, "guide_filters": 4, "guide_blocks": 1},
    ),
    "unguided_sr": (guided_sr, {"guide": False, "res_blocks": 1, "filters": 8}),
}


def tiny(name: str, scale: int = 2, **changes) -> keras.Model:
    factory, options = TINY[name]
    return factory(scale, **{**options, **changes})


def random(*shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def inputs_for(model: keras.Model, batch: int, height: int, width: int, scale: int):
    low = random(batch, height, width, 1, seed=1)
    if len(model.inputs) == 2:
        return [low, random(batch, height * scale, width * scale, 1, seed=2)]
    return low


# -- every factory ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_output_is_the_input_scaled_for_any_size(name, scale):
    model = tiny(name, scale)
    for height, width in ((6, 6), (5, 9)):
        output = model.predict_on_batch(inputs_for(model, 2, height, width, scale))
        assert output.shape == (2, height * scale, width * scale, 1)
        assert output.dtype == np.float32
    assert model.output_shape == (None, None, None, 1)


@pytest.mark.parametrize("name", TINY)
@pytest.mark.parametrize("scale", [1, 5, 2.0, True, "2"])
def test_unsupported_scales_are_refused_naming_them(name, scale):
    with pytest.raises(ValueError, match=re.escape(f"scale must be 2, 3 or 4, got {scale!r}")):
        tiny(name, scale)


@pytest.mark.parametrize("name", TINY)
def test_keras_file_round_trip_gives_identical_outputs(name, tmp_path):
    model = tiny(name, 3)
    x = inputs_for(model, 2, 5, 4, 3)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(loaded.predict_on_batch(x), model.predict_on_batch(x))
    for original, restored in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(original, restored)


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("edsr", {"residual_scaling": 0.0}),
        ("wdsr_b", {"low_rank": 0.0}),
        ("wdsr_b", {"low_rank": 1.5}),
        ("wdsr_b", {"expansion": 0}),
        ("srgan", {"adversarial_weight": -1.0}),
        ("srgan", {"content": "vgg"}),
        ("guided_sr", {"guide_blocks": 0}),
    ],
)
def test_option_annotations_validate_configs(name, options):
    defaults = validate_options(name, {})
    assert defaults["res_blocks"] == {"edsr": 16, "wdsr_b": 16, "srgan": 16, "guided_sr": 8}[name]
    with pytest.raises(ValidationError):
        validate_options(name, options)


# -- pixel shuffle and weight normalisation --------------------------------------------------


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("channels", [1, 2])
def test_pixel_shuffle_is_depth_to_space(scale, channels):
    x = random(3, 4, 5, scale * scale * channels)
    inputs = keras.Input((None, None, scale * scale * channels))
    model = keras.Model(inputs, PixelShuffle(scale)(inputs))
    expected = tf.nn.depth_to_space(x, scale).numpy()
    np.testing.assert_array_equal(model.predict_on_batch(x), expected)
    assert model.output_shape == (None, None, None, channels)


def test_pixel_shuffle_undoes_a_hand_built_space_to_depth():
    image = np.arange(36, dtype=np.float32).reshape(6, 6)  # to recover
    s = 3
    packed = np.empty((1, 2, 2, s * s), np.float32)
    for row in range(2):
        for column in range(2):
            for i in range(s):
                for j in range(s):
                    packed[0, row, column, i * s + j] = image[row * s + i, column * s + j]
    shuffled = PixelShuffle(s)(packed)
    np.testing.assert_array_equal(np.asarray(shuffled)[0, :, :, 0], image)


def test_pixel_shuffle_refuses_a_channel_count_it_cannot_split():
    with pytest.raises(ValueError, match="multiple of 4 channels"):
        PixelShuffle(2)(keras.Input((None, None, 6)))


def test_weight_norm_convolution_starts_at_v_and_has_filter_norms_g():
    layer = WeightNormConv2D(5, 3)
    x = random(2, 7, 6, 4)
    layer(x)
    v = layer.v.numpy()
    assert v.shape == (3, 3, 4, 5) and layer.g.shape == (5,)
    np.testing.assert_allclose(layer.kernel.numpy(), v, rtol=1e-6, atol=1e-7)
    g = np.array([0.5, 1.0, 2.0, 3.0, 0.1], np.float32)
    layer.g.assign(g)
    layer.bias.assign(np.linspace(-1, 1, 5).astype(np.float32))
    kernel = layer.kernel.numpy()
    np.testing.assert_allclose(np.sqrt((kernel**2).sum(axis=(0, 1, 2))), g, rtol=1e-5)
    direction = v / np.sqrt((v**2).sum(axis=(0, 1, 2)))  # unchanged by g
    np.testing.assert_allclose(kernel / g, direction, rtol=1e-5, atol=1e-6)
    expected = tf.nn.conv2d(x, kernel, 1, "SAME").numpy() + layer.bias.numpy()
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=1e-5, atol=1e-5)
    assert {w.name for w in layer.trainable_weights} == {"v", "g", "bias"}
    clone = WeightNormConv2D.from_config(layer.get_config())
    assert (clone.filters, clone.kernel_size, clone.padding) == (5, 3, "same")


# -- the networks ----------------------------------------------------------------------------


def edsr_parameters(blocks: int, filters: int, scale: int) -> int:
    """EDSR's parameters for one channel in and out: 3 × 3 convolutions with biases."""
    conv = lambda inputs, outputs: 9 * inputs * outputs + outputs  # noqa: E731
    head = conv(1, filters)
    body = blocks * 2 * conv(filters, filters) + conv(filters, filters)
    stages = [2, 2] if scale == 4 else [scale]
    upsampler = sum(conv(filters, filters * s * s) for s in stages)
    tail = conv(filters, 1)
    return head + body + upsampler + tail


@pytest.mark.parametrize(("scale", "blocks", "filters"), [(2, 16, 64), (3, 2, 8), (4, 3, 8)])
def test_edsr_has_the_papers_parameters(scale, blocks, filters):
    model = edsr(scale, res_blocks=blocks, filters=filters)
    assert model.count_params() == edsr_parameters(blocks, filters, scale)
    if (scale, blocks, filters) == (2, 16, 64):
        assert model.count_params() == 1_367_553  # the baseline, for one grey channel


def test_edsr_residual_scaling_multiplies_each_residual():
    plain = edsr(2, res_blocks=2, filters=8)
    scaled = edsr(2, res_blocks=2, filters=8, residual_scaling=0.1)
    assert plain.count_params() == scaled.count_params()
    assert [layer.scale for layer in scaled.layers if "scale" in layer.name] == [0.1, 0.1]
    assert not any("scale" in layer.name for layer in plain.layers)


def test_wdsr_b_blocks_have_wide_activation_and_low_rank_widths():
    model = wdsr_b(2, res_blocks=2)  # the paper's widths: 32 filters, × 6, × 0.8
    for index in (1, 2):
        expand, low_rank, conv = (
            model.get_layer(f"block{index}_{part}") for part in ("expand", "low_rank", "conv")
        )
        assert (expand.filters, expand.kernel_size) == (32 * 6, 1)
        assert (low_rank.filters, low_rank.kernel_size) == (int(32 * 0.8), 1) == (25, 1)
        assert (conv.filters, conv.kernel_size) == (32, 3)
    convolutions = [layer for layer in model.layers if hasattr(layer, "filters")]
    assert convolutions and all(isinstance(layer, WeightNormConv2D) for layer in convolutions)
    plain = wdsr_b(2, res_blocks=2, weight_norm=False)
    assert all(
        type(layer) is keras.layers.Conv2D for layer in plain.layers if hasattr(layer, "filters")
    )
    # weight normalisation adds one length g per filter
    assert model.count_params() - plain.count_params() == sum(c.filters for c in convolutions)


def test_wdsr_b_is_the_skip_branch_when_the_body_is_silenced():
    scale = 3
    model = wdsr_b(scale, res_blocks=1, filters=8, expansion=2)
    tail = model.get_layer("tail")
    tail.g.assign(np.zeros(tail.filters, np.float32))
    tail.bias.assign(np.zeros(tail.filters, np.float32))
    x = random(2, 5, 4, 1)
    skip = model.get_layer("skip")
    assert skip.kernel.shape == (5, 5, 1, scale * scale)
    features = tf.nn.conv2d(x, skip.kernel, 1, "SAME").numpy() + skip.bias.numpy()
    expected = tf.nn.depth_to_space(features, scale).numpy()
    np.testing.assert_allclose(model.predict_on_batch(x), expected, rtol=1e-5, atol=1e-5)


def test_guided_sr_takes_the_guide_at_the_target_resolution():
    guided, plain = tiny("guided_sr", 2), tiny("unguided_sr", 2, guide_filters=4, guide_blocks=1)
    assert [tuple(i.shape) for i in guided.inputs] == [(None, None, None, 1)] * 2
    assert [i.name for i in guided.inputs] == ["low_resolution", "guide"]
    assert [i.name for i in plain.inputs] == ["low_resolution"]
    low, guide = inputs_for(guided, 1, 4, 6, 2)
    assert guide.shape == (1, 8, 12, 1)
    first = guided.predict_on_batch([low, guide])
    assert not np.allclose(first, guided.predict_on_batch([low, 2 * guide]))  # guide is used


def test_unguided_sr_is_the_guided_network_less_its_guide_branch():
    guided, plain = tiny("guided_sr", 3), tiny("unguided_sr", 3, guide_filters=4, guide_blocks=1)
    guided_weights = {w.path: tuple(w.shape) for w in guided.weights}
    plain_weights = {w.path: tuple(w.shape) for w in plain.weights}
    branch = {path: shape for path, shape in guided_weights.items() if path.startswith("guide")}
    assert branch  # the guide branch has weights, and nothing else differs
    assert plain_weights == {p: s for p, s in guided_weights.items() if p not in branch}
    assert guided.count_params() - plain.count_params() == sum(
        int(np.prod(shape)) for shape in branch.values()
    )
    # guide_filters = 4: head 9·4+4, one block 2·(9·16+4), the fusing part 9·4·8 (no bias)
    assert guided.count_params() - plain.count_params() == 40 + 296 + 288


# -- SRGAN -----------------------------------------------------------------------------------


def compiled_srgan(**changes) -> SRGAN:
    model = tiny("srgan", 2, **changes)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="mean_squared_error")
    return model


@pytest.fixture(scope="module")
def pair():
    """Low-resolution inputs and their targets, four of 8² → 16²."""
    return random(4, 8, 8, 1, seed=3), random(4, 16, 16, 1, seed=4)


@pytest.fixture(scope="module")
def fitted(pair, tmp_path_factory):
    """A tiny SRGAN before and after two steps of fit, and its checkpoint after them."""
    x, y = pair
    model = compiled_srgan()
    before = (model.generator.get_weights(), model.discriminator.get_weights())
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0, validation_data=(x, y))
    path = tmp_path_factory.mktemp("srgan") / "epoch-0001.keras"
    model.save(path)
    return model, before, history.history, path


def test_srgan_fit_updates_both_networks_and_reports_its_losses(fitted, pair):
    model, (generator, discriminator), history, _ = fitted
    for old, new in ((generator, model.generator), (discriminator, model.discriminator)):
        assert any(not np.array_equal(a, b) for a, b in zip(old, new.get_weights()))
    assert set(history) == {"loss", "d_loss", "g_adversarial"} | {
        f"val_{key}" for key in ("loss", "d_loss", "g_adversarial")
    }
    assert int(model.optimizer.iterations) == int(model.d_optimizer.iterations) == 2
    assert model.d_optimizer is not model.optimizer
    assert type(model.d_optimizer) is type(model.optimizer)
    assert float(model.d_optimizer.learning_rate) == pytest.approx(1e-3)
    # the validation loss is the compiled loss of the generator's images
    x, y = pair
    mse = float(np.mean((model.predict_on_batch(x) - y) ** 2))
    assert history["val_loss"][0] == pytest.approx(mse, rel=1e-4)


def test_srgan_trains_under_xla(pair):
    """``jit_compile="auto"`` is XLA on a GPU: both updates compile."""
    x, y = pair
    model = tiny("srgan", 2)
    model.compile(optimizer="adam", loss="mean_absolute_error", jit_compile=True)
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0).history
    assert all(np.isfinite(values[0]) for values in history.values())
    assert int(model.optimizer.iterations) == int(model.d_optimizer.iterations) == 2


def test_srgan_checkpoint_restores_both_networks_and_both_optimisers(fitted, pair):
    model, _, _, path = fitted
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, SRGAN)
    for original, restored in zip(model.get_weights(), loaded.get_weights(), strict=True):
        np.testing.assert_array_equal(original, restored)
    for mine, theirs in (
        (model.optimizer, loaded.optimizer),
        (model.d_optimizer, loaded.d_optimizer),
    ):
        assert int(theirs.iterations) == 2
        assert len(theirs.variables) == len(mine.variables) > 2
        for a, b in zip(mine.variables, theirs.variables, strict=True):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        moments = [v for v in theirs.variables if "momentum" in v.path or "velocit" in v.path]
        assert moments and any(np.any(np.asarray(v) != 0) for v in moments)
    assert len(loaded.d_optimizer.variables) != len(loaded.optimizer.variables)
    x, y = pair
    np.testing.assert_array_equal(loaded.predict_on_batch(x), model.predict_on_batch(x))
    loaded.fit(x, y, batch_size=2, epochs=1, verbose=0)  # resumes
    assert int(loaded.optimizer.iterations) == int(loaded.d_optimizer.iterations) == 4


def test_srgan_loads_without_compiling_and_takes_weights_of_a_trained_one(fitted, pair):
    model, _, _, path = fitted
    x, _ = pair
    predictor = keras.models.load_model(path, compile=False)
    assert predictor.input_shape == (None, None, None, 1)
    assert predictor.output_shape == (None, None, None, 1)
    np.testing.assert_array_equal(predictor.predict_on_batch(x), model.predict_on_batch(x))
    fresh = tiny("srgan", 2)
    fresh.set_weights(model.get_weights())
    np.testing.assert_array_equal(fresh.predict_on_batch(x), model.predict_on_batch(x))


def test_srgan_feature_network_is_required_with_features_only(tmp_path):
    with pytest.raises(ValueError, match="content 'features' needs features"):
        tiny("srgan", content="features")
    with pytest.raises(ValueError, match="only used with content 'features'"):
        tiny("srgan", features=str(tmp_path / "net.keras"))
    with pytest.raises(ValueError, match="no feature network file"):
        tiny("srgan", content="features", features=str(tmp_path / "missing.keras"))
    with pytest.raises(ValueError, match="content must be"):
        tiny("srgan", content="vgg")


def feature_network(path):
    image = keras.Input((None, None, 1))
    x = keras.layers.Conv2D(3, 3, padding="same", activation="relu", name="f1")(image)
    x = keras.layers.Conv2D(2, 3, strides=2, padding="same", name="f2")(x)
    network = keras.Model(image, x, name="features")
    network.save(path)
    return network


def test_srgan_content_loss_can_compare_feature_maps(tmp_path, pair):
    x, y = pair
    path = tmp_path / "features.keras"
    network = feature_network(path)
    model = compiled_srgan(content="features", features=str(path))
    frozen = model.feature_network.get_weights()
    generated = model.predict_on_batch(x)
    wanted = np.mean((network.predict_on_batch(generated) - network.predict_on_batch(y)) ** 2)
    loss = model.evaluate(x, y, batch_size=4, verbose=0, return_dict=True)["loss"]
    assert loss == pytest.approx(float(wanted), rel=1e-4)
    assert loss != pytest.approx(float(np.mean((generated - y) ** 2)), rel=1e-2)
    model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    for a, b in zip(frozen, model.feature_network.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)  # the feature network is not trained
    model.save(tmp_path / "srgan.keras")
    path.unlink()  # the checkpoint holds the feature network
    loaded = keras.models.load_model(tmp_path / "srgan.keras")
    np.testing.assert_array_equal(loaded.predict_on_batch(x), model.predict_on_batch(x))
    for a, b in zip(frozen, loaded.feature_network.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


def test_srgan_with_pixel_content_needs_a_compiled_loss():
    with pytest.raises(ValueError, match="give a loss"):
        tiny("srgan").compile(optimizer="adam")


def test_srgan_fetches_its_feature_network_through_the_registry(
    tmp_path, loopback_http, cache, monkeypatch
):
    import hashlib

    served = loopback_http.folder / "grey-features.keras"
    network = feature_network(served)
    digest = hashlib.sha256(served.read_bytes()).hexdigest()
    registry = tmp_path / "registry.txt"
    url = loopback_http.url("grey-features.keras")
    registry.write_text(f"grey-features.keras sha256:{digest} {url} size=- licence=- citation=-\n")
    monkeypatch.setenv("TOMOBENCH_REGISTRY", str(registry))
    model = tiny("srgan", content="features", features="registry:grey-features.keras")
    for a, b in zip(network.get_weights(), model.feature_network.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert loopback_http.requests == ["/grey-features.keras"]
    # a file that no longer matches its registered hash is refused, naming it
    served.write_bytes(served.read_bytes() + b"tampered")
    for stale in cache.iterdir():
        stale.unlink()
    with pytest.raises(ValueError, match=r"features: .*grey-features.keras"):
        tiny("srgan", content="features", features="registry:grey-features.keras")
    with pytest.raises(ValueError, match=r"features: .*unknown"):
        tiny("srgan", content="features", features="registry:unknown.keras")
