"""tomobench.models.ganrec: the TensorFlow projector against tomobench's, GANrec on a clean
sinogram of the tiny library (32², 24 angles × 34 detector pixels), its independence of the
batch, and ``tomobench baseline ganrec``."""

from __future__ import annotations

import os

import numpy as np
import pytest

keras = pytest.importorskip("keras")
tf = pytest.importorskip("tensorflow")

from skimage.metrics import peak_signal_noise_ratio  # noqa: E402

from tomobench import baselines  # noqa: E402
from tomobench.errors import RecipeError  # noqa: E402
from tomobench.models.ganrec import SparseProjector, ganrec  # noqa: E402
from tomobench.physics.geometry import air_pixels, circular_mask, from_recipe  # noqa: E402
from tomobench.store import open_library  # noqa: E402

from conftest import SMALL_XRDCT, make_recipe, run_cli  # noqa: E402

GEOMETRY = from_recipe(make_recipe())  # the tiny library's: 32², 24 angles, 34 pixels


@pytest.fixture(scope="module")
def projector():
    return baselines._projector(GEOMETRY, "linear", "matrix")


@pytest.fixture(scope="module")
def random_pairs():
    """Random images (3, 32, 32) and sinograms (3, 24, 34)."""
    rng = np.random.default_rng(5)
    images = rng.random((3, *GEOMETRY.image_shape), dtype=np.float32)
    sinograms = rng.standard_normal((3, *GEOMETRY.sinogram_shape), dtype=np.float32)
    return images, sinograms


def test_the_tensorflow_projector_is_tomobenchs(projector, random_pairs):
    images, _ = random_pairs
    expected = projector.forward(images)
    got = SparseProjector(projector)(tf.constant(images)).numpy()
    assert got.shape == expected.shape == (3, 24, 34)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_its_gradient_is_the_backprojection(projector, random_pairs):
    images, sinograms = random_pairs
    x = tf.Variable(images)
    with tf.GradientTape() as tape:
        inner = tf.reduce_sum(SparseProjector(projector)(x) * sinograms)  # <A x, y>
    gradient = tape.gradient(inner, x).numpy()
    expected = projector.backward(sinograms)  # Aᵀ y
    np.testing.assert_allclose(gradient, expected, rtol=0, atol=1e-5 * np.abs(expected).max())
    # the dot-product test: <A x, y> = <x, Aᵀ y>, in float64 from the float32 products
    left = np.vdot(SparseProjector(projector)(images).numpy().astype(np.float64), sinograms)
    right = np.vdot(images.astype(np.float64), expected)
    assert abs(left - right) <= 1e-5 * abs(right)


@pytest.fixture(scope="module")
def clean_sample(tiny_library, projector):
    """The tiny library's first test image and its noiseless sinogram."""
    with open_library(tiny_library) as library:
        truth = library["test/images"][0]
    return truth, projector.forward(truth)


def test_ganrec_fits_a_clean_sinogram(projector, clean_sample):
    truth, sinogram = clean_sample
    image = ganrec(sinogram, projector, iterations=200)
    assert image.shape == truth.shape and image.dtype == np.float32
    residual = np.linalg.norm(projector.forward(image) - sinogram) / np.linalg.norm(sinogram)
    score = peak_signal_noise_ratio(truth, np.clip(image, 0, 1), data_range=1)
    empty = peak_signal_noise_ratio(truth, np.zeros_like(truth), data_range=1)
    # measured: residual 0.051, PSNR 32.5 dB against 19.1 dB for an image of zeros
    assert residual < 0.1
    assert score > empty + 10


def test_a_sinogram_gives_the_same_image_in_any_batch(projector, random_pairs):
    images, _ = random_pairs
    sinograms = projector.forward(images * circular_mask(32))
    alone = ganrec(sinograms[1], projector, iterations=20, seed=3)
    batch = ganrec(sinograms, projector, iterations=20, seed=3)
    assert alone.shape == (32, 32) and batch.shape == (3, 32, 32)
    np.testing.assert_array_equal(batch[1], alone)
    assert not np.array_equal(batch[0], batch[2])
    # elsewhere in another batch; the image is proportional to the data; zeros give zeros
    scaled, zeros, last = ganrec(
        [4 * sinograms[1], 0 * sinograms[1], sinograms[1]], projector, iterations=20, seed=3
    )
    np.testing.assert_array_equal(last, alone)
    np.testing.assert_allclose(scaled, 4 * alone, rtol=0, atol=1e-5 * np.abs(4 * alone).max())
    assert not zeros.any()


def test_bad_options_are_one_line_errors(projector, random_pairs):
    _, sinograms = random_pairs
    with pytest.raises(RecipeError, match="iterations must be a positive integer, got 0"):
        ganrec(sinograms, projector, iterations=0)
    with pytest.raises(RecipeError, match="l1_weight must be a positive number, got -1"):
        ganrec(sinograms, projector, l1_weight=-1)
    with pytest.raises(RecipeError, match=r"sinograms must have shape \(24, 34\)"):
        ganrec(sinograms[:, :10], projector)
    with pytest.raises(RecipeError, match="NaN"):
        ganrec(np.full((24, 34), np.nan, np.float32), projector, iterations=1)


def test_a_hyperspectral_library_is_reconstructed_channel_by_channel(tmp_path):
    from tomobench.builder import build
    from tomobench.recipe import parse_recipe

    recipe = parse_recipe(SMALL_XRDCT)
    with open_library(build(recipe, tmp_path / "xrdct.h5")) as library:
        cubes = baselines.run("ganrec", library, indices=[1], iterations=3)
        raw = library.read("test/sinograms", 1)
    assert cubes.shape == (1, 16, 16, 24) and cubes.dtype == np.float32
    subtracted = raw - baselines.air_background(raw, air_pixels(recipe))
    channels = np.moveaxis(subtracted.astype(np.float32), -1, 0)[[0, 7]]
    alone = baselines.ganrec(channels, from_recipe(recipe), iterations=3)
    np.testing.assert_array_equal(np.moveaxis(cubes[0][..., [0, 7]], -1, 0), alone)


# -- the command line ------------------------------------------------------------------


def test_baseline_ganrec_writes_a_submission_score_takes(tmp_path, tiny_library):
    out = tmp_path / "ganrec.npy"
    result = run_cli("baseline", "ganrec", tiny_library, "--out", out, "--iterations", "5")
    assert result.returncode == 0, result.stderr
    assert "wrote" in result.stdout and "ganrec of 9 samples" in result.stdout
    assert "GANrec, test sinograms" in result.stdout  # the progress bar
    assert np.load(out).shape == (9, 32, 32)
    result = run_cli("score", out, tiny_library)
    assert result.returncode == 0, result.stderr
    assert "n = 9" in result.stdout


@pytest.mark.parametrize(
    ("options", "words"),
    [(["--iterations", "0"], "--iterations"),
     (["--scale", "2"], "--scale applies to nearest, bilinear and bicubic, not ganrec"),
     (["--filter", "hann"], "--filter applies to fbp, not ganrec")],
)  # fmt: skip
def test_baseline_ganrec_refuses_bad_options_in_one_line(tmp_path, tiny_library, options, words):
    out = tmp_path / "never.npy"
    result = run_cli("baseline", "ganrec", tiny_library, "--out", out, *options)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], lines
    assert not out.exists()


def test_baseline_ganrec_without_the_models_extra_is_one_line(tmp_path, tiny_library):
    fake = tmp_path / "site" / "keras"  # an environment where keras cannot be imported
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError(\"No module named 'keras'\")\n")
    paths = [str(tmp_path / "site"), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, paths))}
    result = run_cli("baseline", "ganrec", tiny_library, "--out", tmp_path / "g.npy", env=env)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "pip install 'tomobench[models]'" in lines[0], lines
