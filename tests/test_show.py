import shutil

import matplotlib.image
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import tomobench.show as show_module
from tomobench import baselines
from tomobench.errors import SubmissionError
from tomobench.score import write_submission
from tomobench.show import PANEL_PIXELS, show
from tomobench.store import open_library


@pytest.fixture
def figures(monkeypatch):
    """The matplotlib figures show() saves, kept for inspection."""
    kept = []
    save = show_module._save

    def keep(figure, *args):
        kept.append(figure)
        return save(figure, *args)

    monkeypatch.setattr(show_module, "_save", keep)
    return kept


def test_grid_size_panels_and_titles(tmp_path, tiny_library, tiny_truth, figures):
    noisy = np.clip(tiny_truth + 0.05, 0, 1).astype(np.float32)
    subs = [
        write_submission(tmp_path / "a.npy", tiny_truth),
        write_submission(tmp_path / "b.h5", noisy),
    ]
    out = show(tiny_library, subs, samples=[7, 2, 5], out=tmp_path / "grid.png")
    assert out == tmp_path / "grid.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    image = matplotlib.image.imread(out)
    assert image.shape == (3 * PANEL_PIXELS, 4 * PANEL_PIXELS, 4)  # 3 samples; truth, FBP, a, b
    assert image[..., :3].std() > 0.05  # something was drawn

    with open_library(tiny_library) as library:
        fbp = baselines.run("fbp", library, split="test")
    axes = np.asarray(figures[0].axes).reshape(3, 4)
    for row, index in enumerate([7, 2, 5]):
        assert axes[row, 0].get_title() == f"ground truth\nsample {index}"
        panels = [tiny_truth[index], fbp[index], tiny_truth[index], noisy[index]]
        for column, expected in enumerate(panels):
            (shown,) = axes[row, column].get_images()
            np.testing.assert_array_equal(shown.get_array(), expected)
            assert shown.get_clim() == (0.0, 1.0)
        for column, label, test in ((1, "FBP", fbp), (3, "b.h5", noisy)):
            # scored as score scores them: the reconstruction clipped to [0, 1]
            truth, test = tiny_truth[index].astype(float), np.clip(test[index], 0, 1)
            psnr = peak_signal_noise_ratio(truth, test, data_range=1)
            ssim = structural_similarity(
                truth, test, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                data_range=1,
            )  # fmt: skip
            title = f"{label}\nPSNR {psnr:.2f} dB · SSIM {ssim:.3f}"
            assert axes[row, column].get_title() == title
        assert axes[row, 2].get_title() == "a.npy\nPSNR inf dB · SSIM 1.000"


def test_sample_count_and_no_submissions(tmp_path, tiny_library):
    out = show(tiny_library, samples=2, out=tmp_path / "two.png")
    assert matplotlib.image.imread(out).shape == (2 * PANEL_PIXELS, 2 * PANEL_PIXELS, 4)
    out = show(tiny_library, split="val", samples=50, out=tmp_path / "all.png")  # val has 5
    assert matplotlib.image.imread(out).shape == (5 * PANEL_PIXELS, 2 * PANEL_PIXELS, 4)


def test_fbp_is_computed_for_the_chosen_samples_only(tmp_path, tiny_library, monkeypatch):
    calls = []
    run = baselines.run

    def spy(method, library, **options):
        calls.append((method, options))
        return run(method, library, **options)

    monkeypatch.setattr(baselines, "run", spy)
    show(tiny_library, samples=[3, 1], out=tmp_path / "f.png")
    assert calls == [("fbp", {"split": "test", "indices": [3, 1]})]


@pytest.mark.parametrize(
    ("samples", "words"),
    [([9], "index 9 is out of range for split 'test' of tiny-test (9 samples)"),
     ([-1], "index -1 is out of range"),
     ([], "no sample index"),
     (0, "samples must be at least 1")],
)  # fmt: skip
def test_bad_samples_are_refused(tmp_path, tiny_library, samples, words):
    with pytest.raises(SubmissionError) as caught:
        show(tiny_library, samples=samples, out=tmp_path / "x.png")
    assert words in str(caught.value)
    assert not (tmp_path / "x.png").exists()


def test_bad_submission_is_refused_and_nothing_written(tmp_path, tiny_library, tiny_truth):
    bad = tiny_truth.copy()
    bad[0, 0, 0] = np.nan
    good = write_submission(tmp_path / "good.npy", tiny_truth)
    path = write_submission(tmp_path / "bad.h5", bad)
    with pytest.raises(SubmissionError, match=r"bad.h5: reconstructions has 1 NaN"):
        show(tiny_library, [good, path], out=tmp_path / "x.png")
    with pytest.raises(SubmissionError, match="split 'nope' is not in library tiny-test"):
        show(tiny_library, [good], split="nope", out=tmp_path / "x.png")
    figure = r"^out \S*x.bmpx: name the figure .*\*.pdf, .*\*.png"  # the parameter, not --out
    with pytest.raises(SubmissionError, match=figure):
        show(tiny_library, [good], out=tmp_path / "x.bmpx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.h5", "good.npy"]


def test_the_suffix_chooses_the_figure_format(tmp_path, tiny_library):
    starts = {"png": b"\x89PNG", "pdf": b"%PDF", "jpg": b"\xff\xd8\xff", "svg": b"<?xml"}
    for suffix, start in starts.items():
        out = show(tiny_library, samples=1, out=tmp_path / f"f.{suffix}")
        assert out.read_bytes().startswith(start), suffix


def test_an_incomplete_library_is_not_shown(tmp_path, tiny_library):
    partial = shutil.copy(tiny_library, tmp_path / "lib.h5.partial")
    with pytest.raises(SubmissionError) as caught:
        show(tmp_path / "lib.h5", out=tmp_path / "x.png")
    assert str(caught.value) == (
        f"{partial}: the library is incomplete (a build in progress or interrupted); finish "
        "the build before showing it"
    )
    assert not (tmp_path / "x.png").exists()
