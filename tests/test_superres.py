"""Super-resolution: interpolation baselines against scipy's and numpy's own, scoring against
skimage's metrics on border-cropped images, wrong shapes refused, leaderboard sections."""

import json

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tomobench import superres
from tomobench.builder import build
from tomobench.errors import RecipeError, StoreError, SubmissionError
from tomobench.leaderboard import add_to_leaderboard, load_entries, render
from tomobench.score import score, write_submission
from tomobench.store import open_library

from conftest import SMALL_XRDCT, make_recipe, run_cli


def reference_upsample(image: np.ndarray, factor: int, order: int) -> np.ndarray:
    """scipy.ndimage's spline interpolation at the points where each output pixel's centre
    falls, (i + 0.5) / factor - 0.5, the edge pixel repeated beyond the image."""
    size = image.shape[0] * factor
    points = (np.arange(size) + 0.5) / factor - 0.5
    rows, cols = np.meshgrid(points, points, indexing="ij")
    return ndimage.map_coordinates(image.astype(np.float64), [rows, cols], order=order,
                                   mode="nearest")  # fmt: skip


@pytest.mark.parametrize("factor", [2, 4])
def test_each_interpolation_equals_its_reference(factor):
    rng = np.random.default_rng(3)
    low = rng.random((3, 8, 8), dtype=np.float32)
    shape = (8 * factor, 8 * factor)
    nearest = superres.upsample(low, shape, "nearest")
    assert np.array_equal(nearest, np.repeat(np.repeat(low, factor, 1), factor, 2))
    for method, order in (("bilinear", 1), ("bicubic", 3)):
        upsampled = superres.upsample(low, shape, method)
        assert upsampled.dtype == np.float32 and upsampled.shape == (3, *shape)
        for image, expected in zip(low, upsampled):
            np.testing.assert_allclose(
                expected, reference_upsample(image, factor, order), rtol=0, atol=2e-6
            )


def test_a_cube_is_upsampled_channel_by_channel():
    cube = np.random.default_rng(4).random((2, 6, 6, 5), dtype=np.float32)
    upsampled = superres.upsample(cube, (12, 12), "bicubic")
    for channel in range(5):
        alone = superres.upsample(cube[..., channel], (12, 12), "bicubic")
        np.testing.assert_allclose(upsampled[..., channel], alone, atol=1e-6)


def test_a_constant_image_stays_constant_through_every_interpolation():
    """A constant image stays constant through downsampling and every interpolation."""
    flat = np.full((1, 4, 4), 0.3, dtype=np.float32)
    for method in superres.METHODS:
        assert np.allclose(superres.upsample(flat, (16, 16), method), 0.3, atol=1e-6)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return build(make_recipe(noise=[]), tmp_path_factory.mktemp("sr") / "lib.h5")


@pytest.mark.parametrize(("scale", "border"), [(2, None), (4, None), (2, 0), (4, 3)])
def test_scores_are_skimages_on_border_cropped_images(library, tmp_path, scale, border):
    with open_library(library) as lib:
        truth = lib.read("test/images")
        low = lib.read(f"test/images_x{scale}")
    rng = np.random.default_rng(scale)
    guess = superres.upsample(low, truth.shape[1:], "bilinear")
    guess = guess + rng.normal(0, 0.02, guess.shape).astype(np.float32)
    path = write_submission(tmp_path / "sr.npy", guess)
    report = score(path, library, scale=scale, crop_border=border)
    cut = scale if border is None else border
    assert (report.scale, report.crop_border, report.baseline) == (scale, cut, "bicubic")
    end = truth.shape[1] - cut
    bicubic = superres.upsample(low, truth.shape[1:], "bicubic")
    for index in range(len(truth)):
        reference = truth[index, cut:end, cut:end].astype(np.float64)
        for scores, test in ((report.scores, guess), (report.baseline_scores, bicubic)):
            test = np.clip(test[index, cut:end, cut:end], 0, 1).astype(np.float64)
            assert scores["psnr"][index] == pytest.approx(
                peak_signal_noise_ratio(reference, test, data_range=1), rel=1e-9
            )
            assert scores["ssim"][index] == pytest.approx(
                structural_similarity(reference, test, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=1),
                abs=1e-9,
            )  # fmt: skip
    data = report.to_json()
    assert (data["scale"], data["crop_border"], data["baseline"]) == (scale, cut, "bicubic")


def test_wrong_shapes_and_scales_are_refused_in_one_line(library, tmp_path):
    with open_library(library) as lib:
        low = lib.read("test/images_x2")
        truth = lib.read("test/images")
    low_path = write_submission(tmp_path / "low.npy", low)
    with pytest.raises(SubmissionError, match="low-resolution shape .* of images_x2") as error:
        score(low_path, library, scale=2)
    assert "\n" not in str(error.value)
    other = write_submission(tmp_path / "other.npy", truth[:, :30, :30])
    with pytest.raises(SubmissionError, match=r"needs \(9, 32, 32\)"):
        score(other, library, scale=2)
    right = write_submission(tmp_path / "right.npy", truth)
    with pytest.raises(StoreError, match=r"no images_x3 .*twins: ×2, ×4"):
        score(right, library, scale=3)
    with pytest.raises(RecipeError, match="crop_border must be between 0 and 15"):
        score(right, library, scale=2, crop_border=16)
    with pytest.raises(SubmissionError, match="crop_border applies to super-resolution"):
        score(right, library, crop_border=2)
    with pytest.raises(SubmissionError, match="baseline 'sirt' does not super-resolve"):
        score(right, library, scale=2, baseline="sirt")
    assert score(right, library, scale=2).summary()["psnr"]["mean"] == float("inf")


def test_a_hyperspectral_library_is_scored_per_cube_and_per_channel(tmp_path):
    recipe = {**SMALL_XRDCT, "downsample": [2], "noise": []}
    from tomobench.recipe import parse_recipe

    path = build(parse_recipe(recipe), tmp_path / "x.h5")
    with open_library(path) as lib:
        truth, low = lib.read("test/images"), lib.read("test/images_x2")
    guess = write_submission(tmp_path / "g.npy", superres.upsample(low, (16, 16), "nearest"))
    report = score(guess, path, scale=2)
    assert report.channel_scores["psnr"].shape == (24,)
    cropped = truth[:, 2:-2, 2:-2]
    nearest = np.clip(superres.upsample(low, (16, 16), "nearest")[:, 2:-2, 2:-2], 0, 1)
    for index in range(len(truth)):
        mse = np.mean((cropped[index].astype(np.float64) - nearest[index]) ** 2)
        assert report.scores["psnr"][index] == pytest.approx(10 * np.log10(1 / mse), rel=1e-9)


def test_leaderboard_entries_record_the_scale_and_have_their_own_section(library, tmp_path):
    with open_library(library) as lib:
        low = lib.read("test/images_x2")
    board = tmp_path / "board"
    for method in ("nearest", "bicubic"):
        upsampled = superres.upsample(low, (32, 32), method)
        sub = write_submission(tmp_path / f"{method}.npy", upsampled)
        add_to_leaderboard(score(sub, library, scale=2), board, method=method, who="test",
                           reproduce=[f"tomobench baseline {method} LIB --scale 2"])  # fmt: skip
    fbp = write_submission(tmp_path / "fbp.npy", np.zeros((9, 32, 32), np.float32))
    add_to_leaderboard(score(fbp, library), board, method="zeros", who="test",
                       reproduce=["numpy zeros"])  # fmt: skip
    entries = {entry.method: entry for entry in load_entries(board)}
    assert (entries["bicubic"].scale, entries["bicubic"].crop_border) == (2, 2)
    assert entries["zeros"].scale is None
    names = sorted(p.name for p in (board / "entries").iterdir())
    assert names == ["tiny-test--test--x2--bicubic.json", "tiny-test--test--x2--nearest.json",
                     "tiny-test--test--zeros.json"]  # fmt: skip
    assert "scale" not in json.loads((board / "entries" / names[2]).read_text())
    text = render(board)
    assert text.count("## tiny-test · split test") == 2
    assert "## tiny-test · split test · super-resolution ×2, border 2 ·" in text
    section = text.split("super-resolution ×2")[1]
    assert section.index("[bicubic]") < section.index("[nearest]")  # ranked by PSNR


def test_the_command_line_writes_and_scores_interpolation_baselines(library, tmp_path):
    done = run_cli("baseline", "bicubic", library, "--scale", "4", "--out", tmp_path / "b.npy",
                   timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    with open_library(library) as lib:
        expected = superres.upsample(lib.read("test/images_x4"), (32, 32), "bicubic")
    assert np.array_equal(np.load(tmp_path / "b.npy"), expected)
    scored = run_cli("score", tmp_path / "b.npy", library, "--scale", "4", "--json",
                     tmp_path / "r.json", timeout=120)  # fmt: skip
    assert scored.returncode == 0, scored.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["scale"], report["crop_border"], report["baseline"]) == (4, 4, "bicubic")
    assert report["metrics"]["psnr"]["submission"] == report["metrics"]["psnr"]["baseline"]
    with open_library(library) as lib:
        np.save(tmp_path / "low.npy", lib.read("test/images_x2"))
    for args, words in (
        (["baseline", "bicubic", library, "--out", tmp_path / "c.npy"], "give --scale S"),
        (["baseline", "fbp", library, "--scale", "2", "--out", tmp_path / "c.npy"],
         "--scale applies to nearest, bilinear and bicubic"),
        (["score", tmp_path / "low.npy", library, "--scale", "2"], "low-resolution shape"),
    ):
        result = run_cli(*args, timeout=120)
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and words in lines[0], result.stderr


def test_show_draws_low_resolution_bicubic_submissions_and_truth(library, tmp_path):
    import imageio.v3 as iio

    from tomobench.show import PANEL_PIXELS, show

    with open_library(library) as lib:
        low = lib.read("test/images_x2")
    sub = write_submission(tmp_path / "s.npy", superres.upsample(low, (32, 32), "bilinear"))
    figure = show(library, [sub], samples=3, out=tmp_path / "f.png", scale=2)
    height, width = iio.imread(figure).shape[:2]
    assert (height, width) == (3 * PANEL_PIXELS, 4 * PANEL_PIXELS)  # low | bicubic | sub | truth
    low_path = write_submission(tmp_path / "low.npy", low)
    with pytest.raises(SubmissionError, match="low-resolution shape"):
        show(library, [low_path], out=tmp_path / "g.png", scale=2)
    assert not (tmp_path / "g.png").exists()
