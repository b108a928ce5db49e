"""tomobench.models: factories, the chunked input pipeline, training (with resume) and
prediction, on the tiny library (32², 24 angles, 12 train / 5 val / 9 test, chunks of 4)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import yaml

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

# Keras converts tensors with np.array(x, copy=False) internally (not tomobench's doing)
pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation doesn't accept a copy keyword:DeprecationWarning"
)

from tomobench.errors import StoreError  # noqa: E402
from tomobench.models import (  # noqa: E402
    RECONSTRUCTION,
    ConfigError,
    RunError,
    build_model,
    cross,
    load_config,
    load_run,
    parse_config,
    predict,
    train,
)
from tomobench.models.data import (  # noqa: E402
    Normalisation,
    SplitStream,
    chunk_order,
    compute_normalisation,
    training_dataset,
)
from tomobench.score import read_submission, score  # noqa: E402
from tomobench.store import open_library  # noqa: E402

SHAPES = [(32, 32, 32), (24, 40, 32)]  # (angles, detector, size): square, non-square detector
SMALL = {
    "cnn_reconstruct": {"filters": [4, 4, 8, 8], "dense_units": 32, "refine_filters": [4, 4]},
    "dense_reconstruct": {"units": [64]},
    "automap": {"units": 64, "filters": 4},
    "gan_reconstruct": {"filters": 4, "depth": 2, "discriminator_filters": 4},
}


def config_for(library, run, **changes) -> dict:
    """A quick config on the tiny library: dense_reconstruct, batches of 4."""
    config = {
        "model": "dense_reconstruct",
        "options": {"units": [256]},
        "library": str(library),
        "run": str(run),
        "learning_rate": 0.001,
        "batch_size": 4,
        "epochs": 2,
        "early_stopping": None,
        "seed": 3,
    }
    config.update(changes)
    return config


# -- factories ------------------------------------------------------------------------------


@pytest.mark.parametrize("shapes", SHAPES, ids=["square", "wide-detector"])
@pytest.mark.parametrize("name", list(RECONSTRUCTION))
def test_factory_maps_sinograms_to_images(name, shapes):
    model = build_model(name, shapes)
    angles, detector, size = shapes
    assert model.input_shape == (None, angles, detector)
    assert model.output_shape == (None, size, size)
    batch = np.random.default_rng(0).random((3, angles, detector), dtype=np.float32)
    assert model.predict_on_batch(batch).shape == (3, size, size)
    assert not any(type(layer).__name__ == "Lambda" for layer in model.layers)


def test_models_take_their_shapes_from_a_library(tiny_library):
    model = build_model("automap", tiny_library, **SMALL["automap"])
    assert model.input_shape == (None, 24, 34)
    with open_library(tiny_library) as library:
        assert build_model("dense_reconstruct", library).output_shape == (None, 32, 32)


@pytest.mark.parametrize("name", list(RECONSTRUCTION))
def test_keras_file_round_trip_gives_identical_predictions(name, tmp_path):
    model = build_model(name, (24, 40, 32), **SMALL[name])
    batch = np.random.default_rng(1).random((4, 24, 40), dtype=np.float32)
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded.predict_on_batch(batch), model.predict_on_batch(batch))


def test_cnn_reconstruct_is_the_network_of_report_section_6_2():
    model = build_model("cnn_reconstruct", (32, 32, 32))
    kinds = [type(layer).__name__ for layer in model.layers]
    convolutions = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert [layer.strides for layer in convolutions] == [(2, 2)] * 4 + [(1, 1)] * 3
    dense = [index for index, kind in enumerate(kinds) if kind == "Dense"]
    assert [model.layers[index].units for index in dense] == [1000, 1000, 1000, 32 * 32]
    assert all(kinds[index + 1] == "Dropout" for index in dense)  # dropout after each
    # the dense layers feed one another: each one's input is the previous dropout's output
    for previous, index in zip(dense, dense[1:]):
        assert model.layers[index].input is model.layers[previous + 1].output
    assert kinds.index("Flatten") < dense[0] and dense[-1] < kinds.index("Conv2D", dense[-1])


def test_unknown_or_invalid_model_options_are_named():
    with pytest.raises(ConfigError, match=r"options\.bogus: unknown field \(allowed here: "):
        build_model("cnn_reconstruct", (32, 32, 32), bogus=1)
    with pytest.raises(ConfigError, match=r"options\.dropout: .*less than 1"):
        build_model("dense_reconstruct", (32, 32, 32), dropout=1.5)
    with pytest.raises(ConfigError, match="unknown model 'unet'"):
        build_model("unet", (32, 32, 32))


# -- input pipeline -------------------------------------------------------------------------


def stream(library, **options):
    defaults = {
        "batch_size": 5,
        "normalisation": None,
        "shuffle": True,
        "seed": 0,
        "shuffle_buffer": 8,
    }
    return SplitStream(library, "train", **{**defaults, **options})


def test_stream_reads_one_chunk_at_a_time_and_visits_every_sample(tiny_library):
    data = stream(tiny_library)
    batches = list(data.batches(epoch=0))
    assert [len(x) for x, _ in batches] == [5, 5, 2]
    assert all(x.shape[1:] == (24, 34) and y.shape[1:] == (32, 32) for x, y in batches)
    assert all(x.dtype == np.float32 and y.dtype == np.float32 for x, y in batches)
    assert data.reads == 3 and data.largest_read == 4  # 12 samples in 3 chunks of 4
    with open_library(tiny_library) as library:
        truth = library["train/images"][...]
    seen = np.concatenate([y for _, y in batches])
    assert sorted(map(bytes, seen)) == sorted(map(bytes, truth))  # each sample once


def test_stream_order_is_seeded(tiny_library):
    def order(seed, epoch):
        images = np.concatenate([y for _, y in stream(tiny_library, seed=seed).batches(epoch)])
        return images.reshape(len(images), -1).sum(axis=1)

    np.testing.assert_array_equal(order(0, 0), order(0, 0))
    assert not np.array_equal(order(0, 0), order(0, 1))  # reshuffled each epoch
    assert not np.array_equal(order(0, 0), order(1, 0))
    np.testing.assert_array_equal(
        chunk_order(50, seed=4, epoch=2), chunk_order(50, seed=4, epoch=2)
    )


def test_stream_reads_zarr_libraries_alike(tiny_library, tmp_path):
    from tomobench.builder import build

    from conftest import make_recipe

    zarr_library = build(make_recipe(output={"format": "zarr", "chunk": 4}), tmp_path / "t.zarr")
    hdf5, zarr = stream(tiny_library, seed=5), stream(zarr_library, seed=5)
    for (x1, y1), (x2, y2) in zip(hdf5.batches(2), zarr.batches(2), strict=True):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    assert zarr.reads == 3 and zarr.largest_read == 4


def test_unshuffled_stream_is_in_sample_order(tiny_library):
    data = stream(tiny_library, shuffle=False, batch_size=4)
    with open_library(tiny_library) as library:
        expected = library["train/sinograms"][...]
    np.testing.assert_array_equal(np.concatenate([x for x, _ in data.batches()]), expected)


def test_training_dataset_gives_each_epoch_its_own_batches(tiny_library):
    data = stream(tiny_library)
    got = [y.numpy() for _, y in training_dataset(data, first_epoch=1, epochs=3)]
    expected = [y for epoch in (1, 2) for _, y in data.batches(epoch)]
    assert len(got) == len(expected) == 2 * data.batches_per_epoch
    for a, b in zip(got, expected):
        np.testing.assert_array_equal(a, b)


def test_normalisation_from_the_training_chunks(tiny_library):
    with open_library(tiny_library) as library:
        values = library["train/sinograms"][...].astype(np.float64)
        whole = compute_normalisation(library, "train", chunks=100, seed=0)
        part = compute_normalisation(library, "train", chunks=1, seed=0)
    assert whole.samples == 12 and part.samples == 4
    assert whole.mean == pytest.approx(values.mean(), rel=1e-9)
    assert whole.std == pytest.approx(values.std(), rel=1e-9)
    normalised = whole.apply(values[:2])
    assert normalised.dtype == np.float32
    np.testing.assert_allclose(normalised, (values[:2] - values.mean()) / values.std(), atol=1e-5)


# -- configs --------------------------------------------------------------------------------


def test_config_with_an_unknown_key_is_rejected_naming_it(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({**config_for("lib.h5", "run"), "learnin_rate": 0.1}))
    with pytest.raises(ConfigError, match=r"learnin_rate: unknown field \(allowed here: model"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"options\.unit: unknown field"):
        parse_config(config_for("lib.h5", "run", options={"unit": [3]}))
    with pytest.raises(ConfigError, match=r"batch_size: .*greater than or equal to 1 \(got 0\)"):
        parse_config(config_for("lib.h5", "run", batch_size=0))


def test_config_defaults_follow_the_report():
    config = parse_config({"model": "cnn_reconstruct", "library": "a.h5", "run": "r"})
    assert (config.loss, config.optimiser, config.learning_rate) == ("rmse", "adam", 0.00025)
    assert config.options["dense_units"] == 1000


# -- training and prediction ----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tiny_library, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "dense"
    return train(config_for(tiny_library, run, epochs=8), verbose=0)


def test_training_lowers_the_loss_and_fills_the_run_folder(trained):
    for name in (
        "model.keras",
        "config.yaml",
        "normalisation.json",
        "history.csv",
        "loss.png",
        "run.json",
        "state.json",
    ):
        assert (trained / name).is_file(), name
    history = np.genfromtxt(trained / "history.csv", delimiter=",", names=True)
    assert list(history["epoch"]) == list(range(1, 9))
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["val_loss"][-1] < history["val_loss"][0]
    info = json.loads((trained / "run.json").read_text())
    assert (info["angles"], info["detector"], info["size"], info["train_samples"]) == (
        24,
        34,
        32,
        12,
    )
    saved = load_config(trained / "config.yaml")
    assert saved.options == {"units": (256,), "dropout": 0.0, "activation": "relu"}


def test_prediction_is_a_submission_that_scores(trained, tiny_library, tmp_path):
    out = predict(trained, tiny_library, split="test", out=tmp_path / "dense.h5")
    reconstructions = read_submission(out)
    assert reconstructions.shape == (9, 32, 32)
    assert reconstructions.min() >= 0 and reconstructions.max() <= 1  # clipped
    model, normalisation = load_run(trained)
    with open_library(tiny_library) as library:
        sinograms = library["test/sinograms"][...]
    expected = np.clip(model.predict_on_batch(normalisation.apply(sinograms)), 0, 1)
    np.testing.assert_allclose(reconstructions, expected, atol=1e-6)
    report = score(out, tiny_library, split="test")
    assert report.n == 9 and np.isfinite(report.summary()["psnr"]["mean"])


def test_prediction_refuses_a_library_of_another_geometry(trained, tmp_path):
    from tomobench.builder import build

    from conftest import make_recipe

    other = build(make_recipe(name="other", geometry={"angles": 16}), tmp_path / "other.h5")
    with pytest.raises(RunError, match=r"maps sinograms \(24, 34\).*has sinograms \(16, 34\)"):
        predict(trained, other, out=tmp_path / "x.npy")
    with pytest.raises(RunError, match="not a run folder"):
        predict(tmp_path, other, out=tmp_path / "x.npy")


class Interrupt(keras.callbacks.Callback):
    """Stop the process (as Ctrl-C would) when epoch ``at`` (0-based) begins."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt


def test_an_interrupted_run_resumes_from_its_last_completed_epoch(tiny_library, tmp_path):
    config = config_for(tiny_library, tmp_path / "run", epochs=2)
    with pytest.raises(KeyboardInterrupt):
        train(config, verbose=0, callbacks=[Interrupt(at=1)])
    run = tmp_path / "run"
    assert json.loads((run / "state.json").read_text())["completed"] == 1
    assert not (run / "model.keras").exists()
    first = (run / "history.csv").read_text().splitlines()
    assert len(first) == 2  # header + epoch 1

    # a damaged checkpoint is one line, and the run stays as it was
    checkpoint = run / "checkpoints" / json.loads((run / "state.json").read_text())["checkpoint"]
    saved = checkpoint.read_bytes()
    checkpoint.write_bytes(b"junk")
    with pytest.raises(RunError, match=r"the checkpoint to resume from does not load") as info:
        train(config, verbose=0)
    assert "\n" not in str(info.value)
    checkpoint.write_bytes(saved)

    resumed = []

    class Spy(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            resumed.append(epoch)

    train(config, verbose=0, callbacks=[Spy()])  # the same command again
    assert resumed == [1]
    lines = (run / "history.csv").read_text().splitlines()
    assert lines[:2] == first and [line.split(",")[0] for line in lines[1:]] == ["1", "2"]
    assert (run / "model.keras").exists()

    # the resumed run is the run that was never interrupted
    straight = train(config_for(tiny_library, tmp_path / "straight", epochs=2), verbose=0)
    a = np.genfromtxt(run / "history.csv", delimiter=",", names=True)
    b = np.genfromtxt(straight / "history.csv", delimiter=",", names=True)
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-4)

    # asking for more epochs continues the finished run; another config is refused
    resumed.clear()
    train({**config, "epochs": 3}, verbose=0, callbacks=[Spy()])
    assert resumed == [2] and len((run / "history.csv").read_text().splitlines()) == 4
    with pytest.raises(RunError, match=r"another config \(learning_rate differs\)"):
        train({**config, "learning_rate": 0.01}, verbose=0)


def test_a_run_that_never_started_does_not_hold_its_folder(tiny_library, tmp_path):
    """A config whose library is missing is refused before its run folder is made; a folder
    whose run completed no epoch (its training cut short) takes a corrected config and
    forgets what the old one left, while a run with a completed epoch is kept."""
    run = tmp_path / "run"
    with pytest.raises(StoreError, match=r"no library at"):
        train(config_for(tmp_path / "missing.h5", run), verbose=0)
    assert not run.exists()

    class Stop(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # cut short in its first epoch
        train(config_for(tiny_library, run, seed=4), verbose=0, callbacks=[Stop()])
    assert (run / "config.yaml").exists() and (run / "normalisation.json").exists()
    assert not (run / "state.json").exists()
    stale = (run / "normalisation.json").read_text()
    (run / "normalisation.json").write_text(stale.replace("0.", "9."))  # as another library's

    train(config_for(tiny_library, run, epochs=1), verbose=0)
    assert yaml.safe_load((run / "config.yaml").read_text())["seed"] == 3
    assert (run / "normalisation.json").read_text() == stale  # computed anew
    with pytest.raises(RunError, match=r"another config \(seed differs\)"):
        train(config_for(tiny_library, run, epochs=1, seed=4), verbose=0)


def test_an_incomplete_library_is_refused_for_training_and_prediction(
    trained, tiny_library, tmp_path
):
    partial = shutil.copy(tiny_library, tmp_path / "lib.h5.partial")  # a build under way
    refused = (
        f"{partial}: the library is incomplete (a build in progress or interrupted); finish "
        "the build before "
    )
    with pytest.raises(ConfigError) as caught:
        train(config_for(tmp_path / "lib.h5", tmp_path / "run"), verbose=0)
    assert str(caught.value) == refused + "training on it"
    with pytest.raises(RunError) as caught:
        predict(trained, tmp_path / "lib.h5", out=tmp_path / "x.npy")
    assert str(caught.value) == refused + "predicting on it"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["lib.h5.partial"]


def test_a_run_folder_file_that_cannot_be_written_is_one_run_error(tmp_path):
    path = tmp_path / "gone" / "normalisation.json"
    with pytest.raises(RunError) as caught:
        Normalisation(mean=0.5, std=2.0).save(path)
    assert str(caught.value) == f"cannot write {path}: No such file or directory"
    saved = Normalisation(mean=0.5, std=2.0, samples=3).save(tmp_path / "n.json")
    assert Normalisation.load(saved) == Normalisation(mean=0.5, std=2.0, samples=3)
    assert [p.name for p in tmp_path.iterdir()] == ["n.json"]  # no temporary left


# -- train on A, test on B ------------------------------------------------------------------


@pytest.fixture(scope="module")
def particles_library(tmp_path_factory):
    """Catalyst bodies in the tiny library's geometry (24 angles, 32 detector pixels, 32²)."""
    from tomobench.builder import build
    from tomobench.recipe import parse_recipe

    from conftest import make_recipe

    recipe = make_recipe(name="tiny-particles", downsample=[], task="reconstruction")
    data = recipe.model_dump(mode="json")
    data["source"] = {"kind": "particles", "size": 32}
    return build(parse_recipe(data), tmp_path_factory.mktemp("particles") / "particles.h5")


def test_cross_scores_every_run_on_every_library_beside_fbp(
    trained, tiny_library, particles_library, tmp_path
):
    table = cross([trained], [tiny_library, particles_library], fbp_filters=("ram-lak", "hann"))
    assert [method["name"] for method in table.methods] == [
        "dense_reconstruct",
        "FBP (ram-lak)",
        "FBP (hann)",
    ]
    assert table.methods[0]["trained_on"] == "tiny-test"
    assert [library["name"] for library in table.libraries] == ["tiny-test", "tiny-particles"]
    for b, library in enumerate((tiny_library, particles_library)):
        # the same numbers as a submission written, read back and scored beside FBP
        report = score(predict(trained, library, out=tmp_path / f"{b}.npy"), library)
        for name in ("psnr", "ssim"):
            assert table.cells[(0, b)][name] == pytest.approx(report.summary()[name], rel=1e-9)
            fbp = report.summary(baseline=True)[name]
            assert table.cells[(1, b)][name] == pytest.approx(fbp, rel=1e-9)
    # hann smooths the noisy tiny sinograms: a different (better) FBP than ram-lak
    assert table.cells[(2, 0)]["psnr"]["mean"] > table.cells[(1, 0)]["psnr"]["mean"]

    markdown = table.markdown()
    assert "| method | trained on | tiny-test | tiny-particles |" in markdown
    psnr = table.cells[(0, 1)]["psnr"]
    assert "| dense_reconstruct | tiny-test | " in markdown
    assert f"{psnr['mean']:.2f} ± {psnr['std']:.2f} |" in markdown
    saved = json.loads(table.write_json(tmp_path / "cross.json").read_text())
    assert len(saved["scores"]) == 6 and saved["conventions"]["data_range"] == 1.0


def test_cross_refuses_a_library_that_no_run_takes(trained, tmp_path):
    from tomobench.builder import build

    from conftest import make_recipe

    other = build(make_recipe(name="other", geometry={"angles": 16}), tmp_path / "other.h5")
    with pytest.raises(RunError, match="no run's model takes"):
        cross([trained], [other])
    with pytest.raises(RunError, match=r"split 'train2' is not in library .*other.h5"):
        cross([trained], [other], split="train2")


# -- the command line -----------------------------------------------------------------------


def test_train_predict_score_and_cross_from_the_command_line(tiny_library, tmp_path):
    from typer.testing import CliRunner

    from tomobench.cli import app

    runner = CliRunner()
    config = tmp_path / "dense.yaml"
    config.write_text(yaml.safe_dump(config_for(tiny_library, tmp_path / "run", epochs=2)))
    result = runner.invoke(app, ["train", str(config), "--quiet"])
    assert result.exit_code == 0, result.output
    assert "trained dense_reconstruct" in result.output and "2 epochs" in result.output
    assert (tmp_path / "run" / "model.keras").is_file()

    out = tmp_path / "dense.npy"
    arguments = ["predict", str(tmp_path / "run"), str(tiny_library), "--out", str(out)]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert read_submission(out).shape == (9, 32, 32)
    result = runner.invoke(app, ["score", str(out), str(tiny_library)])
    assert result.exit_code == 0, result.output

    markdown = tmp_path / "cross.md"
    arguments = ["cross", str(tiny_library), str(tmp_path / "run"), "--markdown", str(markdown)]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    assert "| dense_reconstruct | tiny-test |" in markdown.read_text()


def run_cli(*args):
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, "-m", "tomobench.cli", *map(str, args)], capture_output=True, text=True
    )


def test_command_line_errors_are_one_line(tiny_library, tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({**config_for(tiny_library, tmp_path / "r"), "epoch": 3}))
    results = [
        (run_cli("train", config), "epoch: unknown field"),
        (run_cli("predict", tmp_path, tiny_library, "--out", tmp_path / "x.npy"), "not a run"),
    ]
    for result, words in results:
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
    assert not (tmp_path / "r").exists() and not (tmp_path / "x.npy").exists()
