import csv
import hashlib
import json
import math
import shutil

import h5py
import numpy as np
import pytest
import zarr
from rich.console import Console
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tomobench import __version__, baselines
from tomobench.errors import StoreError, SubmissionError, TomobenchError
from tomobench.leaderboard import add_to_leaderboard, identity_check
from tomobench.metrics import METRICS
from tomobench.score import (
    CONVENTIONS,
    STATISTICS,
    check_submission,
    read_submission,
    score,
    write_submission,
)
from tomobench.store import open_library

from conftest import SMALL_XRDCT, make_recipe


def skimage_ssim(reference, test):
    return structural_similarity(
        reference,
        test,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1,
    )


def noisy(truth, sigma=0.05, seed=0):
    rng = np.random.default_rng(seed)
    return (truth + rng.normal(0, sigma, truth.shape)).astype(np.float32)


# -- scores against independent references ---------------------------------------------------


def test_perfect_submission_scores_inf_and_one(tmp_path, tiny_library, tiny_truth):
    path = write_submission(tmp_path / "perfect.npy", tiny_truth)
    report = score(path, tiny_library, baseline=None)
    assert report.n == 9
    assert np.all(np.isposinf(report.scores["psnr"]))
    np.testing.assert_allclose(report.scores["ssim"], 1.0, rtol=0, atol=1e-12)
    data = report.to_json()
    json.dumps(data, allow_nan=False)  # no NaN, no bare Infinity
    psnr = data["metrics"]["psnr"]["submission"]
    assert psnr == {"mean": "inf", "std": None, "median": "inf", "min": "inf", "max": "inf"}
    assert data["per_sample"]["submission"]["psnr"] == ["inf"] * 9
    assert float(psnr["mean"]) == math.inf
    assert data["metrics"]["ssim"]["submission"]["std"] == pytest.approx(0, abs=1e-12)


def test_known_error_scores_exactly_20_db(tmp_path, tiny_library, tiny_truth):
    truth = tiny_truth.astype(np.float64)
    off = np.where(truth <= 0.5, truth + 0.1, truth - 0.1)  # 0.1 off everywhere, in [0, 1]
    path = write_submission(tmp_path / "plus.h5", off)
    report = score(path, tiny_library, baseline=None)
    np.testing.assert_allclose(report.scores["psnr"], 20.0, rtol=0, atol=1e-9)
    summary = report.summary()["psnr"]
    assert summary["mean"] == pytest.approx(20.0, abs=1e-9)
    assert summary["std"] == pytest.approx(0.0, abs=1e-9)


def test_scores_equal_skimage_per_sample_for_submission_and_fbp(
    tmp_path, tiny_library, tiny_truth
):
    submission = noisy(tiny_truth)
    report = score(write_submission(tmp_path / "noisy.npy", submission), tiny_library)
    with open_library(tiny_library) as library:
        fbp = baselines.run("fbp", library, split="test")
    # both are scored clipped to [0, 1]
    submission, fbp = np.clip(submission, 0, 1), np.clip(fbp, 0, 1)
    for index in range(len(tiny_truth)):
        truth = tiny_truth[index].astype(np.float64)
        for scores, test in ((report.scores, submission), (report.baseline_scores, fbp)):
            test = test[index].astype(np.float64)
            expected_psnr = peak_signal_noise_ratio(truth, test, data_range=1)
            assert scores["psnr"][index] == pytest.approx(expected_psnr, rel=1e-12)
            assert scores["ssim"][index] == pytest.approx(skimage_ssim(truth, test), abs=1e-12)
    stats = report.summary(baseline=True)["psnr"]
    values = report.baseline_scores["psnr"]
    assert stats["mean"] == pytest.approx(np.mean(values))
    assert stats["std"] == pytest.approx(np.std(values))
    assert stats["median"] == pytest.approx(np.median(values))
    assert (stats["min"], stats["max"]) == (values.min(), values.max())


def test_report_states_library_conventions_and_statistics(tmp_path, tiny_library, tiny_truth):
    path = write_submission(tmp_path / "noisy.zarr", noisy(tiny_truth))
    report = score(path, tiny_library)
    data = report.to_json()
    assert set(data) == {
        "report_format", "tomobench_version", "library", "library_path", "recipe_sha256",
        "identity", "task", "split", "n", "submission", "baseline", "scale", "crop_border",
        "conventions", "metrics", "per_sample", "per_channel",
    }  # fmt: skip
    assert data["report_format"] == 3
    assert data["scale"] is None and data["crop_border"] is None  # reconstruction
    assert data["library"] == "tiny-test"
    assert data["recipe_sha256"] == make_recipe().sha256()
    assert data["per_channel"] is None  # a 2-D library
    # the identity: what the library's attributes say, and the digest of the three
    with h5py.File(tiny_library, "r") as file:
        parts = {
            "recipe_sha256": file.attrs["recipe_sha256"],
            "backend": json.loads(file.attrs["backend"]).get("test")
            if file.attrs["backend"].startswith("{")
            else file.attrs["backend"],
            "tomobench_format": int(file.attrs["tomobench_format"]),
        }
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    assert data["identity"] == {**parts, "sha256": hashlib.sha256(text.encode()).hexdigest()}
    assert data["identity"]["backend"] == "matrix"
    assert (data["split"], data["n"], data["task"]) == ("test", 9, "super-resolution")
    assert data["tomobench_version"] == __version__
    assert data["baseline"] == "fbp"
    conventions = data["conventions"]
    assert conventions["data_range"] == 1
    assert {k: conventions["ssim"][k] for k in ("sigma", "taps", "K1", "K2", "covariance")} == {
        "sigma": 1.5, "taps": 11, "K1": 0.01, "K2": 0.03, "covariance": "population"
    }  # fmt: skip
    assert "clipped to [0, 1]" in conventions["postprocessing"]
    assert "H*W*C" in conventions["channels"] and "energy" in conventions["channels"]
    for name, metric in METRICS.items():
        entry = data["metrics"][name]
        assert entry["higher_is_better"] is metric.higher_is_better
        assert set(entry["submission"]) == set(entry["baseline"]) == set(STATISTICS)
        assert entry["submission"]["mean"] == pytest.approx(np.mean(report.scores[name]))
        assert len(data["per_sample"]["baseline"][name]) == 9

    json_path = report.write_json(tmp_path / "report.json")
    assert json.loads(json_path.read_text()) == json.loads(json.dumps(data))

    with open(report.write_csv(tmp_path / "report.csv"), newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == [
        "index", "submission_psnr", "submission_ssim", "fbp_psnr", "fbp_ssim"
    ]  # fmt: skip
    assert [int(row[0]) for row in rows[1:]] == list(range(9))
    np.testing.assert_array_equal([float(r[1]) for r in rows[1:]], report.scores["psnr"])
    np.testing.assert_array_equal([float(r[4]) for r in rows[1:]], report.baseline_scores["ssim"])
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_table_has_a_row_per_metric_and_statistic(tmp_path, tiny_library, tiny_truth):
    report = score(write_submission(tmp_path / "perfect.npy", tiny_truth), tiny_library)
    table = report.table()
    assert table.row_count == len(METRICS) * len(STATISTICS)
    assert [column.header for column in table.columns] == [
        "metric", "statistic", "submission", "FBP baseline"
    ]  # fmt: skip
    console = Console(record=True, width=120)
    console.print(table)
    text = console.export_text()
    assert "inf" in text and "1.0000" in text and "tiny-test" in text
    identity = report.identity
    assert f"identity {identity['sha256'][:12]}… (matrix, format" in text
    assert "clipped to [0, 1]" in text


# -- one post-processing rule: every reconstruction clipped to [0, 1] ----------------------


def test_a_submission_outside_the_data_range_scores_as_its_clipped_copy(
    tmp_path, tiny_library, tiny_truth
):
    wild = (1.4 * noisy(tiny_truth, sigma=0.1) - 0.2).astype(np.float32)
    assert wild.min() < -0.1 and wild.max() > 1.1
    path = write_submission(tmp_path / "wild.npy", wild)
    before = path.read_bytes()
    report = score(path, tiny_library)
    clipped = score(write_submission(tmp_path / "clipped.npy", np.clip(wild, 0, 1)), tiny_library)
    for name in METRICS:
        np.testing.assert_array_equal(report.scores[name], clipped.scores[name])
    for index in range(len(tiny_truth)):
        truth = tiny_truth[index].astype(np.float64)
        test = np.clip(wild[index].astype(np.float64), 0, 1)
        expected = peak_signal_noise_ratio(truth, test, data_range=1)
        assert report.scores["psnr"][index] == pytest.approx(expected, rel=1e-12)
        assert report.scores["ssim"][index] == pytest.approx(skimage_ssim(truth, test), abs=1e-12)
    assert path.read_bytes() == before  # the submission file is never changed
    assert "clipped to [0, 1]" in report.to_json()["conventions"]["postprocessing"]


def test_the_fbp_column_is_the_clipped_fbp(tmp_path, tiny_library, tiny_truth):
    report = score(write_submission(tmp_path / "s.npy", tiny_truth), tiny_library)
    with open_library(tiny_library) as library:
        fbp = baselines.run("fbp", library, split="test")
    assert fbp.min() < 0  # the baseline itself stays as reconstructed
    for index in range(len(tiny_truth)):
        truth = tiny_truth[index].astype(np.float64)
        test = np.clip(fbp[index].astype(np.float64), 0, 1)
        expected = peak_signal_noise_ratio(truth, test, data_range=1)
        assert report.baseline_scores["psnr"][index] == pytest.approx(expected, rel=1e-12)
        expected = skimage_ssim(truth, test)
        assert report.baseline_scores["ssim"][index] == pytest.approx(expected, abs=1e-12)


# -- hyperspectral: one PSNR over the cube, SSIM weighted by channel energy ------------------

SPECTRAL = {
    **SMALL_XRDCT,
    "name": "score-xrdct",
    "seed": 5,
    "geometry": {**SMALL_XRDCT["geometry"], "angles": 20},
    "noise": [{"kind": "air", "level": 0.05}, {"kind": "counting", "counts": 200}],
}


@pytest.fixture(scope="module")
def spectral_library(tmp_path_factory):
    from tomobench.builder import build
    from tomobench.recipe import parse_recipe

    return build(parse_recipe(SPECTRAL), tmp_path_factory.mktemp("spectral") / "s.h5")


def test_hyperspectral_report_scores_the_cube_and_keeps_a_per_channel_table(
    tmp_path, spectral_library
):
    with h5py.File(spectral_library, "r") as file:
        truth = file["test/images"][...].astype(np.float64)
    submission = noisy(truth, sigma=0.02, seed=3)
    report = score(write_submission(tmp_path / "s.npy", submission), spectral_library)
    with open_library(spectral_library) as library:
        fbp = baselines.run("fbp", library, split="test")
    channels = truth.shape[-1]
    for scores, test, per_channel in (
        (report.scores, submission, report.channel_scores),
        (report.baseline_scores, fbp, report.baseline_channel_scores),
    ):
        test = np.clip(test.astype(np.float64), 0, 1)
        by_channel = {"psnr": np.empty((3, channels)), "ssim": np.empty((3, channels))}
        for index in range(3):
            cube, reference = test[index], truth[index]
            expected = peak_signal_noise_ratio(reference, cube, data_range=1)
            assert scores["psnr"][index] == pytest.approx(expected, rel=1e-12)
            by_hand = 10 * np.log10(1 / np.mean((reference - cube) ** 2))
            assert scores["psnr"][index] == pytest.approx(by_hand, rel=1e-12)
            for c in range(channels):
                pair = reference[..., c], cube[..., c]
                by_channel["psnr"][index, c] = peak_signal_noise_ratio(*pair, data_range=1)
                by_channel["ssim"][index, c] = skimage_ssim(*pair)
            energy = np.sum(reference**2, axis=(0, 1))
            weighted = np.sum(by_channel["ssim"][index] * energy) / np.sum(energy)
            assert scores["ssim"][index] == pytest.approx(weighted, abs=1e-12)
        for name in ("psnr", "ssim"):
            assert per_channel[name].shape == (channels,)
            np.testing.assert_allclose(
                per_channel[name], by_channel[name].mean(axis=0), rtol=1e-12, atol=1e-12
            )
    data = report.to_json()
    json.dumps(data, allow_nan=False)
    assert data["per_channel"]["channels"] == channels
    assert data["per_channel"]["submission"]["psnr"] == pytest.approx(
        list(report.channel_scores["psnr"]), rel=1e-15
    )
    assert len(data["per_channel"]["baseline"]["ssim"]) == channels
    console = Console(record=True, width=160)
    console.print(report.table())
    text = console.export_text()
    assert "psnr (dB) per channel" in text and "lowest channel" in text
    assert "per_channel" in text


# -- submissions on disk ---------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npy", ".h5", ".hdf5", ".zarr"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_submission_round_trip(tmp_path, tiny_truth, suffix, dtype):
    array = noisy(tiny_truth).astype(dtype)
    path = write_submission(tmp_path / f"sub{suffix}", array)
    assert path == tmp_path / f"sub{suffix}"
    back = read_submission(path)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back, array)
    write_submission(path, array[::-1])  # replacing an existing one, a Zarr folder included
    np.testing.assert_array_equal(read_submission(path), array[::-1])
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left


def test_submission_formats_read_with_plain_libraries(tmp_path, tiny_truth):
    write_submission(tmp_path / "s.h5", tiny_truth)
    write_submission(tmp_path / "s.zarr", tiny_truth)
    write_submission(tmp_path / "s.npy", tiny_truth)
    with h5py.File(tmp_path / "s.h5", "r") as file:
        np.testing.assert_array_equal(file["reconstructions"][...], tiny_truth)
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    np.testing.assert_array_equal(group["reconstructions"][...], tiny_truth)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), tiny_truth)


def test_zarr_submission_with_a_lost_chunk_is_refused(tmp_path, tiny_library, tiny_truth):
    path = write_submission(tmp_path / "s.zarr", tiny_truth + 0.01)
    chunk = next(p for p in (path / "reconstructions" / "c").rglob("*") if p.is_file())
    chunk.unlink()
    with pytest.raises(SubmissionError, match="NaN"):
        score(path, tiny_library, baseline=None)


# -- bad input -------------------------------------------------------------------------------


def _write_h5(path, **arrays):
    with h5py.File(path, "w") as file:
        for name, values in arrays.items():
            file[name] = values
    return path


def _write_zarr(path, **arrays):
    group = zarr.open_group(str(path), mode="w")
    for name, values in arrays.items():
        group.create_array(name, data=values)
    return path


def _truncated(path, truth):
    write_submission(path, truth)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _file(path, data=b""):
    path.write_bytes(data)
    return path


def _pickled(path, truth):
    np.save(path, truth.astype(object), allow_pickle=True)
    return path


def _with(truth, index, value):
    array = truth.copy()
    array.flat[index] = value
    return array


BAD = {
    "wrong shape": (
        lambda p, t: write_submission(p / "sub.h5", t[:, :, :31]),
        [
            "sub.h5: reconstructions has shape (9, 32, 31); split 'test' of tiny-test needs "
            "(9, 32, 32)"
        ],
    ),
    "too few samples": (
        lambda p, t: write_submission(p / "sub.npy", t[:8]),
        ["sub.npy", "(8, 32, 32)", "(9, 32, 32)"],
    ),
    "nan": (
        lambda p, t: write_submission(p / "sub.npy", _with(_with(t, [1, 5, 9], np.nan), 3, 0)),
        ["sub.npy", "3 NaN values (of 9216)", "finite"],
    ),
    "inf": (
        lambda p, t: write_submission(p / "sub.zarr", _with(_with(t, 4, np.inf), 7, -np.inf)),
        ["sub.zarr", "2 infinite values", "finite"],
    ),
    "nan and inf": (
        lambda p, t: write_submission(p / "sub.h5", _with(_with(t, 4, np.inf), 7, np.nan)),
        ["1 NaN and 1 infinite"],
    ),
    "int": (
        lambda p, t: write_submission(p / "sub.h5", (t * 255).astype(np.int32)),
        ["sub.h5", "dtype int32", "real floating point"],
    ),
    "bool": (
        lambda p, t: write_submission(p / "sub.npy", t > 0.5),
        ["dtype bool", "real floating point"],
    ),
    "complex": (
        lambda p, t: write_submission(p / "sub.npy", t.astype(np.complex64)),
        ["sub.npy", "dtype complex64", "real floating point"],
    ),
    "object": (
        lambda p, t: _pickled(p / "sub.npy", t),
        ["sub.npy", "Python objects", "real floating point"],
    ),
    "missing key h5": (
        lambda p, t: _write_h5(p / "sub.h5", recon=t),
        ["sub.h5: no array 'reconstructions' (the file has 'recon')"],
    ),
    "missing key zarr": (
        lambda p, t: _write_zarr(p / "sub.zarr", images=t),
        ["sub.zarr: no array 'reconstructions' (the group has 'images')"],
    ),
    "empty h5": (lambda p, t: _file(p / "sub.h5"), ["sub.h5: the file is empty"]),
    "empty npy": (lambda p, t: _file(p / "sub.npy"), ["sub.npy: the file is empty"]),
    "truncated npy": (
        lambda p, t: _truncated(p / "sub.npy", t),
        ["sub.npy: the file is truncated: it holds", "of the 36864 bytes"],
    ),
    "truncated h5": (lambda p, t: _truncated(p / "sub.h5", t), ["sub.h5", "not a readable HDF5"]),
    "not a zarr group": (
        lambda p, t: _file(p / "sub.zarr", b"hello"),
        ["sub.zarr", "not a readable Zarr group"],
    ),
    "unknown suffix": (
        lambda p, t: _file(p / "sub.txt", b"1 2 3"),
        ["sub.txt: unknown submission format '.txt'", "*.npy"],
    ),
    "missing file": (lambda p, t: p / "absent.h5", ["absent.h5: no such submission"]),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_submission_is_refused_with_one_line_and_no_entry(
    tmp_path, tiny_library, tiny_truth, case
):
    make, words = BAD[case]
    path = make(tmp_path, tiny_truth)
    leaderboard = tmp_path / "board"
    with pytest.raises(SubmissionError) as caught:
        # what `tomobench score SUB LIB --leaderboard DIR` does
        report = score(path, tiny_library, check=identity_check(leaderboard))
        add_to_leaderboard(report, leaderboard, method="m", who="w", reproduce=["x"])
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    for word in words:
        assert word in message
    assert isinstance(caught.value, TomobenchError)
    assert not leaderboard.exists()


def test_unknown_split_is_refused(tmp_path, tiny_library, tiny_truth):
    path = write_submission(tmp_path / "sub.npy", tiny_truth)
    with pytest.raises(SubmissionError, match=r"split 'valid' is not in library tiny-test "
                       r"\(it has train, val, test\)"):  # fmt: skip
        score(path, tiny_library, split="valid")


def test_scores_on_another_split_need_its_shape(tmp_path, tiny_library, tiny_truth):
    path = write_submission(tmp_path / "sub.npy", tiny_truth)
    with pytest.raises(SubmissionError, match=r"split 'val' of tiny-test needs \(5, 32, 32\)"):
        score(path, tiny_library, split="val")
    with h5py.File(tiny_library, "r") as file:
        val = file["val/images"][...]
    report = score(write_submission(tmp_path / "val.npy", val), tiny_library, split="val")
    assert report.n == 5 and report.split == "val"


def test_incomplete_library_is_refused(tmp_path, tiny_library, tiny_truth):
    submission = write_submission(tmp_path / "sub.npy", tiny_truth)
    flagged = shutil.copy(tiny_library, tmp_path / "flagged.h5")
    with h5py.File(flagged, "r+") as file:
        file.attrs["complete"] = False
    renamed = shutil.copy(tiny_library, tmp_path / "renamed.h5.partial")
    for library, path in ((flagged, flagged), (tmp_path / "renamed.h5", renamed)):
        with pytest.raises(SubmissionError) as caught:
            score(submission, library)
        assert str(caught.value) == (
            f"{path}: the library is incomplete (a build in progress or interrupted); "
            "finish the build before scoring on it"
        )
    with open_library(renamed) as library, pytest.raises(SubmissionError, match="incomplete"):
        check_submission(tiny_truth, library, "test", source=submission)


def test_missing_library_is_a_store_error(tmp_path, tiny_truth):
    path = write_submission(tmp_path / "sub.npy", tiny_truth)
    with pytest.raises(StoreError, match="no library at"):
        score(path, tmp_path / "absent.h5")


def test_check_submission_accepts_float_and_returns_it(tiny_library, tiny_truth):
    with open_library(tiny_library) as library:
        array = check_submission(tiny_truth.astype(np.float64), library, "test")
    assert array.dtype == np.float64 and array.shape == tiny_truth.shape


def test_conventions_state_the_metrics_module_values():
    from tomobench import metrics

    # the values DESIGN.md and docs/scoring.md state, as literals
    assert CONVENTIONS["data_range"] == 1.0
    ssim = CONVENTIONS["ssim"]
    assert (ssim["sigma"], ssim["K1"], ssim["K2"]) == (1.5, 0.01, 0.03)
    assert ssim["covariance"] == "population" and ssim["window"] == "gaussian"
    assert ssim["taps"] == 2 * int(3.5 * 1.5 + 0.5) + 1 == 11  # skimage's truncate 3.5
    # and they are the values the metrics module computes with
    assert (metrics.SSIM_SIGMA, metrics.SSIM_K1, metrics.SSIM_K2) == (1.5, 0.01, 0.03)


def test_write_submission_makes_the_folder(tmp_path, tiny_truth):
    path = write_submission(tmp_path / "new" / "dir" / "sub.h5", tiny_truth)
    np.testing.assert_array_equal(read_submission(path), tiny_truth)
