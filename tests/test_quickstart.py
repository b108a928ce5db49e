"""tomobench.demo (in quickstart.py): the quick start as one Python call."""

import json

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

import tomobench
from tomobench import baselines
from tomobench.score import read_submission
from tomobench.store import open_library


def test_demo_builds_scores_and_draws_into_its_folder(tmp_path):
    folder = tmp_path / "quick"
    result = tomobench.demo(folder)
    assert isinstance(result, tomobench.DemoResult)
    assert result.library == folder / "demo.h5" and result.submission == folder / "fbp-hann.npy"
    assert result.report_path == folder / "fbp-hann.json"
    assert result.figure == folder / "demo.png" and result.build_seconds > 0
    with open_library(result.library) as library:
        assert library.complete and library.recipe.name == "demo"
        assert library["test/images"].shape == (50, 64, 64)
        hann = baselines.run("fbp", library, filter="hann")
        truth = library.read("test/images")
    np.testing.assert_array_equal(read_submission(result.submission), hann)
    report = result.report
    assert (report.library, report.split, report.n, report.baseline) == ("demo", "test", 50, "fbp")
    assert report.submission == str(result.submission)
    assert json.loads(result.report_path.read_text()) == json.loads(json.dumps(report.to_json()))
    assert result.figure.read_bytes()[:4] == b"\x89PNG"
    for index in (0, 49):  # the hann reconstruction, clipped, against the ground truth
        expected = peak_signal_noise_ratio(
            truth[index].astype(np.float64), np.clip(hann[index], 0, 1).astype(np.float64),
            data_range=1,
        )
        assert report.scores["psnr"][index] == pytest.approx(expected, rel=1e-9)
