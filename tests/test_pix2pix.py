"""gan_reconstruct (pix2pix for reconstruction) and its FilteredBackprojection layer, on tiny
networks and the tiny library (32², 24 angles × 34 detector pixels)."""

from __future__ import annotations

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

# Keras converts tensors with np.array(x, copy=False) internally (not tomobench's doing)
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

from pydantic import ValidationError  # noqa: E402

from tomobench import baselines  # noqa: E402
from tomobench.models import ConfigError, build_model, load_run, predict, train  # noqa: E402
from tomobench.models.fbp_layer import (  # noqa: E402
    FilteredBackprojection,
    padded_length,
    ramp_filter,
)
from tomobench.models.pix2pix import Pix2Pix, gan_reconstruct, patch_discriminator  # noqa: E402
from tomobench.models.registry import validate_options  # noqa: E402
from tomobench.physics.geometry import from_recipe, parallel_beam  # noqa: E402
from tomobench.score import read_submission, score  # noqa: E402
from tomobench.store import open_library  # noqa: E402

SHAPES = (24, 34, 32)  # the tiny library's (angles, detector, size)
TINY = {"filters": 4, "depth": 2, "discriminator_filters": 4}
TINY_FRONT = {"front_filters": (4, 4, 8, 8), "front_units": 16}


def tiny(input: str = "fbp", shapes=SHAPES, **changes) -> Pix2Pix:
    front = TINY_FRONT if input == "sinogram" else {}
    return gan_reconstruct(*shapes, input=input, **{**TINY, **front, **changes})


def random(*shape, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random(shape, dtype=np.float32)


@pytest.fixture(scope="module")
def test_split(tiny_library):
    """The tiny library's test sinograms and images, and its geometry."""
    with open_library(tiny_library) as library:
        return (
            library["test/sinograms"][...],
            library["test/images"][...],
            from_recipe(library.recipe),
        )


# -- the FBP layer --------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["linear", "strip", "line"])
def test_fbp_layer_equals_tomobench_fbp(test_split, model):
    sinograms, _, geometry = test_split
    assert (geometry.angles, geometry.detector, geometry.size) == SHAPES
    layer = FilteredBackprojection(*SHAPES, model=model)
    expected = baselines.fbp(sinograms, geometry, model=model, backend="matrix")
    got = np.asarray(layer(sinograms))
    scale = expected.max() - expected.min()
    np.testing.assert_allclose(got, expected, atol=1e-4 * scale, rtol=0)


def test_fbp_layer_equals_fbp_for_any_spacing_and_odd_shapes():
    geometry = parallel_beam(17, angles=10, detector=29, spacing=0.7)
    sinograms = random(3, 10, 29, seed=5)
    expected = baselines.fbp(sinograms, geometry, model="strip", backend="matrix")
    got = FilteredBackprojection(10, 29, 17, model="strip", spacing=0.7)(sinograms)
    np.testing.assert_allclose(np.asarray(got), expected, atol=1e-4 * np.ptp(expected), rtol=0)


def test_ramp_filter_is_astra_ram_lak_padded_to_a_power_of_two():
    assert [padded_length(d) for d in (1, 32, 33, 34, 64, 65)] == [2, 64, 128, 128, 128, 256]
    response = ramp_filter(34)
    assert response.shape == (65,)
    # the ram-lak response: about |frequency| / n · 2, with ASTRA's value 1/2 at zero
    # frequency (h[0] = 1/4, doubled) and 1 at the Nyquist frequency
    assert response[0] == pytest.approx(
        0.5 - 4 / np.pi**2 * sum(1 / k**2 for k in range(1, 64, 2))
    )
    assert response[-1] == pytest.approx(1.0, abs=1e-2)
    assert np.all(np.diff(response) > 0)


def test_fbp_layer_saves_its_geometry_not_its_matrix(test_split, tmp_path):
    sinograms, _, _ = test_split
    inputs = keras.Input(shape=SHAPES[:2])
    model = keras.Model(inputs, FilteredBackprojection(*SHAPES, model="strip")(inputs))
    assert model.count_params() == 0 and not model.layers[-1].trainable
    model.save(tmp_path / "fbp.keras")
    loaded = keras.models.load_model(tmp_path / "fbp.keras")
    layer = loaded.layers[-1]
    assert isinstance(layer, FilteredBackprojection)
    assert (layer.angles, layer.detector, layer.size, layer.model) == (*SHAPES, "strip")
    np.testing.assert_array_equal(loaded.predict_on_batch(sinograms), model(sinograms))
    assert (tmp_path / "fbp.keras").stat().st_size < 20_000  # the matrix alone: ~150 kB


def test_fbp_layer_refuses_bad_geometries_and_sinograms():
    with pytest.raises(ValueError, match="projector must be one of line, strip, linear"):
        FilteredBackprojection(24, 34, 32, model="cone")
    with pytest.raises(ValueError, match="spacing must be a positive number, got 0"):
        FilteredBackprojection(24, 34, 32, spacing=0)
    with pytest.raises(ValueError, match=r"sinograms of 24 angles × 34 pixels, not \(24, 30\)"):
        FilteredBackprojection(24, 34, 32)(keras.Input(shape=(24, 30)))


# -- the networks ---------------------------------------------------------------------------


@pytest.mark.parametrize("input", ["fbp", "sinogram"])
@pytest.mark.parametrize("shapes", [SHAPES, (12, 20, 30), (12, 20, 150)], ids=str)
def test_generator_maps_sinograms_to_images_of_any_size(input, shapes):
    model = tiny(input, shapes, depth=4)
    angles, detector, size = shapes
    assert model.input_shape == (None, angles, detector)
    assert model.output_shape == (None, size, size)
    images = model.predict_on_batch(random(2, angles, detector))
    assert images.shape == (2, size, size) and images.dtype == np.float32
    assert not any(type(layer).__name__ == "Lambda" for layer in model.generator._flatten_layers())


def test_unet_and_discriminator_are_the_papers():
    model = gan_reconstruct(*SHAPES, depth=3)
    unet = model.refiner
    down = [layer for layer in unet.layers if type(layer).__name__ == "Conv2D"]
    up = [layer for layer in unet.layers if type(layer).__name__ == "Conv2DTranspose"]
    assert [(layer.filters, layer.kernel_size, layer.strides) for layer in down] == [
        (64, (4, 4), (2, 2)),
        (128, (4, 4), (2, 2)),
        (256, (4, 4), (2, 2)),
    ]
    assert [layer.filters for layer in up] == [128, 64, 1]  # the last makes the image
    assert len([layer for layer in unet.layers if type(layer).__name__ == "Dropout"]) == 2
    assert all(layer.rate == 0.5 for layer in unet.layers if type(layer).__name__ == "Dropout")
    assert len([layer for layer in unet.layers if type(layer).__name__ == "Concatenate"]) == 2
    assert [layer.name for layer in model.generator.layers[1:]] == ["front", "unet"]
    assert isinstance(model.front.get_layer("fbp"), FilteredBackprojection)
    critic = model.discriminator
    assert critic.output_shape == (None, 4, 4, 1)  # 32 / 2³ patches a side
    assert [layer.filters for layer in critic.layers if type(layer).__name__ == "Conv2D"] == [
        64,
        128,
        256,
        512,
        1,
    ]


def test_patch_discriminator_sees_70_by_70_pixels():
    critic = patch_discriminator(96, filters=2, layers_count=3)
    condition, image = tf.constant(random(1, 96, 96, seed=1)), tf.Variable(random(1, 96, 96))
    with tf.GradientTape() as tape:
        logits = critic([condition, image], training=False)
        centre = logits[0, 6, 6, 0]
    seen = np.nonzero(np.asarray(tape.gradient(centre, image))[0])
    assert np.ptp(seen[0]) + 1 == np.ptp(seen[1]) + 1 == 70


# -- training and checkpoints ---------------------------------------------------------------


def compiled(input: str = "fbp", **changes) -> Pix2Pix:
    model = tiny(input, **changes)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="mean_absolute_error")
    return model


@pytest.fixture(scope="module", params=["fbp", "sinogram"])
def fitted(request, test_split, tmp_path_factory):
    """A tiny model before and after two steps of fit, and its checkpoint after them."""
    sinograms, images, _ = test_split
    x, y = sinograms[:4], images[:4]
    model = compiled(request.param)
    before = [network.get_weights() for network in (model.front, model.generator)]
    before.append(model.discriminator.get_weights())
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0, validation_data=(x, y))
    path = tmp_path_factory.mktemp("pix2pix") / "epoch-0001.keras"
    model.save(path)
    return model, before, history.history, path, (x, y)


def test_fit_updates_both_networks_and_reports_its_losses(fitted):
    model, (front, generator, discriminator), history, _, (x, y) = fitted
    for old, network in ((generator, model.generator), (discriminator, model.discriminator)):
        assert any(not np.array_equal(a, b) for a, b in zip(old, network.get_weights()))
    changed = any(not np.array_equal(a, b) for a, b in zip(front, model.front.get_weights()))
    assert changed == (model.options["input"] == "sinogram")  # the FBP is not trained
    assert set(history) == {"loss", "d_loss", "g_adversarial"} | {
        f"val_{key}" for key in ("loss", "d_loss", "g_adversarial")
    }
    assert int(model.optimizer.iterations) == int(model.d_optimizer.iterations) == 2
    assert type(model.d_optimizer) is type(model.optimizer)
    assert model.d_optimizer is not model.optimizer
    # val_loss is the compiled loss of the generator's images; d_loss is halved
    generated = model.predict_on_batch(x)
    y, generated = tf.constant(y), tf.constant(generated)
    assert history["val_loss"][0] == pytest.approx(np.mean(np.abs(generated - y)), rel=1e-4)
    first = model.front(x, training=False)
    real = np.asarray(model.discriminator([first, y], training=False), np.float64)
    fake = np.asarray(model.discriminator([first, generated], training=False), np.float64)
    d_loss = 0.5 * (np.logaddexp(0, -real).mean() + np.logaddexp(0, fake).mean())
    assert history["val_d_loss"][0] == pytest.approx(d_loss, rel=1e-4)
    assert history["val_g_adversarial"][0] == pytest.approx(
        np.logaddexp(0, -fake).mean(), rel=1e-4
    )


def test_checkpoint_restores_both_networks_and_both_optimisers(fitted):
    model, _, _, path, (x, y) = fitted
    loaded = keras.models.load_model(path)
    assert isinstance(loaded, Pix2Pix) and loaded.get_config() == model.get_config()
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
    np.testing.assert_array_equal(loaded.predict_on_batch(x), model.predict_on_batch(x))
    loaded.fit(x, y, batch_size=2, epochs=1, verbose=0)  # resumes
    assert int(loaded.optimizer.iterations) == int(loaded.d_optimizer.iterations) == 4


def test_loads_without_compiling_and_takes_weights_of_a_trained_one(fitted):
    model, _, _, path, (x, _) = fitted
    predictor = keras.models.load_model(path, compile=False)
    assert predictor.input_shape == (None, *SHAPES[:2])
    assert predictor.output_shape == (None, SHAPES[2], SHAPES[2])
    np.testing.assert_array_equal(predictor.predict_on_batch(x), model.predict_on_batch(x))
    fresh = tiny(model.options["input"])
    fresh.set_weights(model.get_weights())
    np.testing.assert_array_equal(fresh.predict_on_batch(x), model.predict_on_batch(x))


def test_trains_under_xla_from_the_sinogram_and_refuses_it_with_the_fbp(test_split):
    """``jit_compile="auto"`` is XLA on a GPU, unless the model holds the FBP layer."""
    sinograms, images, _ = test_split
    model = tiny("sinogram")
    model.compile(optimizer="adam", loss="mean_absolute_error", jit_compile=True)
    history = model.fit(sinograms[:4], images[:4], batch_size=2, verbose=0).history
    assert all(np.isfinite(values[0]) for values in history.values())
    assert int(model.optimizer.iterations) == int(model.d_optimizer.iterations) == 2
    with pytest.raises(ValueError, match="input 'fbp' cannot be compiled with XLA"):
        tiny("fbp").compile(optimizer="adam", loss="mean_absolute_error", jit_compile=True)
    assert not tiny("fbp").front.get_layer("fbp").supports_jit


# -- options --------------------------------------------------------------------------------


def test_defaults_are_the_papers_but_for_depth():
    options = validate_options("gan_reconstruct", {})
    assert options == {
        "input": "fbp",
        "projector": "linear",
        "detector_spacing": 1.0,
        "filters": 64,
        "depth": 4,
        "dropout": 0.5,
        "discriminator_filters": 64,
        "discriminator_layers": 3,
        "l1_weight": 100.0,
        "front_filters": (32, 64, 128, 256),
        "front_units": 1000,
        "front_dropout": 0.1,
    }


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"depth": 9}, r"options\.depth: .*less than or equal to 8 \(got 9\)"),
        ({"input": "radon"}, r"options\.input: Input should be 'fbp' or 'sinogram'"),
        ({"projector": "cuda"}, r"options\.projector: Input should be 'linear', 'strip'"),
        ({"front_filters": [4, 4]}, r"options\.front_filters\[2\]: field required"),
        ({"l1_weight": -1}, r"options\.l1_weight: .*greater than or equal to 0"),
        ({"dropout": 1.0}, r"options\.dropout: .*less than 1"),
        ({"bogus": 1}, r"options\.bogus: unknown field \(allowed here: input, projector"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(ConfigError, match=message):
        build_model("gan_reconstruct", SHAPES, **options)
    if "bogus" not in options:
        with pytest.raises(ValidationError):
            validate_options("gan_reconstruct", options)


def test_options_of_the_other_input_are_refused():
    with pytest.raises(ConfigError, match=r"front_units \(16\) is only used with input 'sinog"):
        build_model("gan_reconstruct", SHAPES, front_units=16)
    with pytest.raises(ConfigError, match=r"projector \('strip'\) is only used with input 'fbp'"):
        build_model("gan_reconstruct", SHAPES, input="sinogram", projector="strip")
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\), got 1.5"):
        gan_reconstruct(*SHAPES, dropout=1.5)
    with pytest.raises(ValueError, match="takes its content loss from compile: give a loss"):
        tiny().compile(optimizer="adam")


# -- through the trainer --------------------------------------------------------------------


def test_train_resume_predict_and_score(tiny_library, test_split, tmp_path):
    config = {
        "model": "gan_reconstruct",
        "options": TINY,
        "library": str(tiny_library),
        "run": str(tmp_path / "run"),
        "loss": "mae",
        "learning_rate": 0.001,
        "batch_size": 4,
        "epochs": 1,
        "early_stopping": None,
        "seed": 3,
    }
    run = train(config, verbose=0)
    train({**config, "epochs": 2}, verbose=0)  # resumes from the epoch-1 checkpoint
    resumed = keras.models.load_model(run / "checkpoints" / "epoch-0002.keras")
    steps = 3  # 12 training samples in batches of 4
    assert int(resumed.optimizer.iterations) == int(resumed.d_optimizer.iterations) == 2 * steps
    history = (run / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,loss,val_loss") and len(history) == 3
    info = json.loads((run / "run.json").read_text())
    assert info["parameters"] == resumed.generator.count_params()
    out = predict(run, tiny_library, split="test", out=tmp_path / "gan.npy")
    images = read_submission(out)
    model, normalisation = load_run(run)
    sinograms, _, _ = test_split
    expected = np.clip(model.predict_on_batch(normalisation.apply(sinograms)), 0, 1)
    np.testing.assert_allclose(images, expected, atol=1e-6)
    report = score(out, tiny_library, split="test")
    assert report.n == 9 and np.isfinite(report.summary()["psnr"]["mean"])
