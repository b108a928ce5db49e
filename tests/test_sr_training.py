"""Super-resolution through the model machinery: which arrays a model learns from
(:class:`~tomobench.models.data.Pairs`), the stream's patches and per-channel samples, the
config's checks, and a train → predict → score round trip for each model."""

from __future__ import annotations

import copy
import json

import h5py
import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

from tomobench.models import (  # noqa: E402
    SUPER_RESOLUTION,
    ConfigError,
    RunError,
    load_run,
    parse_config,
    predict,
    superresolve,
    train,
)
from tomobench.models.data import (  # noqa: E402
    Normalisation,
    Pairs,
    SplitStream,
    compute_normalisation,
)
from tomobench.recipe import Recipe  # noqa: E402
from tomobench.score import read_submission  # noqa: E402
from tomobench.store import open_library  # noqa: E402

from conftest import SMALL_XRDCT, run_cli  # noqa: E402

TINY_OPTIONS = {
    "edsr": {"res_blocks": 1, "filters": 8},
    "wdsr_b": {"res_blocks": 1, "filters": 8, "expansion": 2},
    "srgan": {"res_blocks": 1, "filters": 8, "discriminator_filters": 4},
    "guided_sr": {"res_blocks": 1, "filters": 8, "guide": False},
}


def sr_config(library, run, model="edsr", **changes) -> dict:
    config = {
        "model": model,
        "options": TINY_OPTIONS[model],
        "scale": 2,
        "library": str(library),
        "run": str(run),
        "learning_rate": 0.001,
        "batch_size": 4,
        "epochs": 1,
        "early_stopping": None,
        "seed": 5,
    }
    config.update(changes)
    return config


@pytest.fixture(scope="module")
def cube_library(tmp_path_factory):
    """A hyperspectral library of 16² × 24 channels with 8² twins: 4 train, 2 test cubes."""
    from tomobench.builder import build

    recipe = copy.deepcopy(SMALL_XRDCT)
    recipe.update(downsample=[2], splits={"train": 4, "test": 2}, output={"chunk": 2})
    folder = tmp_path_factory.mktemp("cubes")
    path = folder / "cubes.h5"
    build(Recipe.model_validate(recipe), path, workers=1)
    return path


@pytest.fixture(scope="module")
def pair_library(tmp_path_factory):
    """cube_library's recipe with the absorption image of every slice."""
    from tomobench.builder import build

    recipe = copy.deepcopy(SMALL_XRDCT)
    recipe["source"] = {
        **recipe["source"],
        "absorption": {"coefficients": {"gamma-Al2O3": 2.79, "Ni": 92.0, "CeO2": 66.1},
                       "pixel_size_um": 25.0},
    }  # fmt: skip
    recipe.update(downsample=[2], splits={"train": 4, "test": 2}, output={"chunk": 2})
    path = tmp_path_factory.mktemp("pairs") / "pairs.h5"
    build(Recipe.model_validate(recipe), path, workers=1)
    return path


# -- pairs ----------------------------------------------------------------------------------


def test_a_cube_gives_one_sample_per_channel_in_sample_major_order():
    rng = np.random.default_rng(0)
    low = rng.random((2, 4, 4, 3), dtype=np.float32)
    high = rng.random((2, 8, 8, 3), dtype=np.float32)
    guide = rng.random((2, 8, 8), dtype=np.float32)
    pairs = Pairs(inputs=("images_x2", "absorption"), scale=2)
    x, g, y = pairs.arrange({"images_x2": low, "absorption": guide, "images": high}, None)
    assert x.shape == (6, 4, 4, 1) and g.shape == (6, 8, 8, 1) and y.shape == (6, 8, 8, 1)
    for sample in range(2):
        for channel in range(3):
            row = 3 * sample + channel
            np.testing.assert_array_equal(x[row, ..., 0], low[sample, ..., channel])
            np.testing.assert_array_equal(y[row, ..., 0], high[sample, ..., channel])
            np.testing.assert_array_equal(g[row, ..., 0], guide[sample])


def test_channel_sums_are_divided_by_the_channel_count():
    rng = np.random.default_rng(1)
    low = rng.random((2, 4, 4, 5), dtype=np.float32)
    high = rng.random((2, 8, 8, 5), dtype=np.float32)
    x, y = Pairs(inputs=("images_x2",), scale=2, channels="sum").arrange(
        {"images_x2": low, "images": high}, None
    )
    np.testing.assert_allclose(x[..., 0], low.sum(axis=-1) / 5, rtol=1e-6)
    np.testing.assert_allclose(y[..., 0], high.sum(axis=-1) / 5, rtol=1e-6)


def test_patches_cover_the_same_place_at_both_resolutions(tiny_library):
    pairs = Pairs(inputs=("images_x2",), scale=2, patch=5)
    stream = SplitStream(
        tiny_library, "train", batch_size=4, normalisation=None, pairs=pairs, shuffle=True
    )
    with h5py.File(tiny_library, "r") as file:
        low, high = file["train/images_x2"][:], file["train/images"][:]
    seen = 0
    for x, y in stream.batches(0):
        assert x.shape[1:] == (5, 5, 1) and y.shape[1:] == (10, 10, 1)
        for patch_low, patch_high in zip(x[..., 0], y[..., 0], strict=True):
            # find the patch in the stored low-resolution images: the high-resolution patch
            # must be the square twice as large at twice the offset of the same sample
            found = [
                (n, r, c)
                for n in range(len(low))
                for r in range(12)
                for c in range(12)
                if np.array_equal(low[n, r : r + 5, c : c + 5], patch_low)
            ]
            assert found, "a low-resolution patch is not in the library"
            assert any(
                np.array_equal(high[n, 2 * r : 2 * r + 10, 2 * c : 2 * c + 10], patch_high)
                for n, r, c in found
            )
            seen += 1
    assert seen == stream.count == 12


def test_an_epoch_draws_samples_per_epoch_samples(cube_library):
    pairs = Pairs(inputs=("images_x2",), scale=2)
    stream = SplitStream(
        cube_library,
        "train",
        batch_size=7,
        normalisation=None,
        pairs=pairs,
        shuffle=True,
        limit=30,
    )
    assert stream.count == 4 * 24 and stream.batches_per_epoch == 5
    sizes = [len(x) for x, _ in stream.batches(0)]
    assert sizes == [7, 7, 7, 7, 2]
    # another epoch draws other samples (its own chunk order and permutation)
    first = np.concatenate([x for x, _ in stream.batches(0)])
    second = np.concatenate([x for x, _ in stream.batches(1)])
    assert not np.array_equal(first, second)


def test_super_resolution_targets_share_the_input_normalisation(tiny_library):
    pairs = Pairs(inputs=("images_x2",), scale=2)
    with open_library(tiny_library) as library:
        normalisation = compute_normalisation(library, "train", chunks=100, pairs=pairs)
        low = library.read("train/images_x2").astype(np.float64)
    assert normalisation.array == "images_x2" and normalisation.target
    assert normalisation.mean == pytest.approx(low.mean(), rel=1e-9)
    assert normalisation.std == pytest.approx(low.std(), rel=1e-9)
    stream = SplitStream(tiny_library, "train", batch_size=12, normalisation=normalisation,
                         pairs=pairs)  # fmt: skip
    x, y = next(stream.batches(0))
    with h5py.File(tiny_library, "r") as file:
        high = file["train/images"][:]
    np.testing.assert_allclose(y[..., 0], (high - normalisation.mean) / normalisation.std,
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    np.testing.assert_allclose(normalisation.restore(y[..., 0]), high, atol=1e-6)


def test_a_normalisation_saved_before_super_resolution_still_loads(tmp_path):
    path = tmp_path / "normalisation.json"
    path.write_text(json.dumps({"method": "standardise", "mean": 1.5, "std": 2.0}))
    loaded = Normalisation.load(path)
    assert loaded.array == "sinograms" and not loaded.target and loaded.guide_mean is None


# -- configs --------------------------------------------------------------------------------


def test_a_super_resolution_model_needs_a_scale(tiny_library, tmp_path):
    config = sr_config(tiny_library, tmp_path / "run")
    del config["scale"]
    with pytest.raises(ConfigError, match=r"scale: model edsr super-resolves"):
        parse_config(config)


def test_a_reconstruction_model_takes_no_scale_or_patch(tiny_library, tmp_path):
    base = {"model": "dense_reconstruct", "library": str(tiny_library), "run": "r"}
    with pytest.raises(ConfigError, match=r"scale: model dense_reconstruct reconstructs"):
        parse_config({**base, "scale": 2})
    with pytest.raises(ConfigError, match=r"patch: model dense_reconstruct reconstructs"):
        parse_config({**base, "patch": 8})


def test_a_factor_the_library_lacks_is_named_with_those_it_has(tiny_library, tmp_path):
    config = sr_config(tiny_library, tmp_path / "run", scale=3)
    with pytest.raises(ConfigError, match=r"holds no images_x3 .*images_x2, images_x4"):
        train(config, verbose=0)
    assert not (tmp_path / "run").exists()


def test_a_patch_larger_than_the_low_resolution_images_is_refused(tiny_library, tmp_path):
    config = sr_config(tiny_library, tmp_path / "run", scale=4, patch=9)
    with pytest.raises(ConfigError, match=r"patch: 9 is larger than .* \(8 × 8\)"):
        train(config, verbose=0)


def test_a_guided_model_needs_the_absorption_image(tiny_library, tmp_path):
    options = {**TINY_OPTIONS["guided_sr"], "guide": True}
    config = sr_config(tiny_library, tmp_path / "run", model="guided_sr", options=options)
    with pytest.raises(ConfigError, match=r"holds no absorption"):
        train(config, verbose=0)


# -- round trips ----------------------------------------------------------------------------


@pytest.mark.parametrize("model", list(SUPER_RESOLUTION))
def test_train_predict_score(model, tiny_library, tmp_path):
    run = train(sr_config(tiny_library, tmp_path / "run", model=model, patch=6), verbose=0)
    info = json.loads((run / "run.json").read_text())
    assert info["scale"] == 2 and info["epochs_completed"] == 1
    out = predict(run, tiny_library, split="test", out=tmp_path / "sr.npy")
    images = read_submission(out)
    with h5py.File(tiny_library, "r") as file:
        assert images.shape == file["test/images"].shape
    assert images.dtype == np.float32 and images.min() >= 0 and images.max() <= 1
    result = run_cli("score", out, tiny_library, "--scale", "2", "--json", tmp_path / "r.json")
    assert result.returncode == 0, result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["scale"] == 2 and report["crop_border"] == 2


def test_a_cube_is_super_resolved_channel_by_channel(cube_library, tmp_path):
    config = sr_config(cube_library, tmp_path / "run", validation_split=None, channels="sum")
    run = train(config, verbose=0)
    images = read_submission(predict(run, cube_library, split="test", out=tmp_path / "s.npy"))
    model, normalisation = load_run(run)
    with h5py.File(cube_library, "r") as file:
        low = file["test/images_x2"][:]
        assert images.shape == file["test/images"].shape == (2, 16, 16, 24)
    for sample, channel in [(0, 0), (1, 23), (1, 7)]:
        one = superresolve(model, low[sample : sample + 1, ..., channel], normalisation)
        np.testing.assert_allclose(images[sample, ..., channel], one[0], atol=1e-5)


def test_a_guided_model_learns_from_the_absorption_image(pair_library, tmp_path):
    options = {**TINY_OPTIONS["guided_sr"], "guide": True}
    config = sr_config(pair_library, tmp_path / "run", model="guided_sr", options=options,
                       validation_split=None, patch=4, samples_per_epoch=40)  # fmt: skip
    run = train(config, verbose=0)
    model, normalisation = load_run(run)
    assert [tuple(shape) for shape in model.input_shape] == [(None, None, None, 1)] * 2
    with h5py.File(pair_library, "r") as file:
        absorption = file["train/absorption"][:].astype(np.float64)
        low = file["test/images_x2"][:]
        guide = file["test/absorption"][:]
    assert normalisation.guide_mean == pytest.approx(absorption.mean(), rel=1e-6)
    assert normalisation.guide_std == pytest.approx(absorption.std(), rel=1e-6)
    images = read_submission(predict(run, pair_library, split="test", out=tmp_path / "g.npy"))
    assert images.shape == (2, 16, 16, 24)
    one = superresolve(model, low[1:2, ..., 5], normalisation, guide=guide[1:2])
    np.testing.assert_allclose(images[1, ..., 5], one[0], atol=1e-5)
    other = superresolve(model, low[1:2, ..., 5], normalisation, guide=guide[0:1])
    assert not np.allclose(one, other)  # the guide is an input: another slice's changes it


def test_srgan_resumes_with_both_optimisers(tiny_library, tmp_path):
    config = sr_config(tiny_library, tmp_path / "run", model="srgan", patch=6)
    run = train(config, verbose=0)
    train({**config, "epochs": 2}, verbose=0)
    rows = (run / "history.csv").read_text().splitlines()
    assert len(rows) == 3  # header and two epochs
    resumed = keras.models.load_model(next((run / "checkpoints").glob("epoch-0002.keras")))
    steps = 3  # 12 samples in batches of 4, per epoch
    assert int(resumed.optimizer.iterations.numpy()) == 2 * steps
    discriminator = [
        value for name, value in vars(resumed).items() if isinstance(value, keras.Optimizer)
        and value is not resumed.optimizer
    ]  # fmt: skip
    assert discriminator and int(discriminator[0].iterations.numpy()) == 2 * steps


def test_a_reconstruction_library_is_no_input_for_a_super_resolution_run(tiny_library, tmp_path):
    run = train(sr_config(tiny_library, tmp_path / "run", scale=4), verbose=0)
    with h5py.File(tiny_library, "r") as file:
        assert "test/images_x4" in file
    cube = tmp_path / "no-twins.h5"
    from tomobench.builder import build

    recipe = copy.deepcopy(SMALL_XRDCT)
    build(Recipe.model_validate(recipe), cube, workers=1)
    with pytest.raises(RunError, match=r"holds no test/images_x4"):
        predict(run, cube, split="test", out=tmp_path / "x.npy")
