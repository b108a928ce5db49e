"""Tests of tomobench.metrics against skimage's per-image reference implementations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from tomobench import metrics
from tomobench.metrics import METRICS, Metric, psnr, ssim

ATOL = 1e-6


def skimage_psnr(reference: np.ndarray, test: np.ndarray) -> float:
    return peak_signal_noise_ratio(reference, test, data_range=1)


def skimage_ssim(reference: np.ndarray, test: np.ndarray) -> float:
    return structural_similarity(
        reference,
        test,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1,
    )


def smooth_and_noisy(
    n: int, height: int, width: int, *, seed: int, channels: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Smooth random images in [0, 1] and noisy versions of them, clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    shape = (n, height, width) if channels is None else (n, height, width, channels)
    sigma = (0, 3, 3) if channels is None else (0, 3, 3, 0)
    smooth = gaussian_filter(rng.random(shape), sigma)
    axes = (1, 2)
    low = smooth.min(axis=axes, keepdims=True)
    high = smooth.max(axis=axes, keepdims=True)
    reference = (smooth - low) / (high - low)
    noise_level = rng.uniform(0.01, 0.2, size=(n,) + (1,) * (len(shape) - 1))
    test = np.clip(reference + noise_level * rng.standard_normal(shape), 0.0, 1.0)
    return reference, test


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("n", "height", "width"), [(12, 32, 32), (7, 64, 48)])
def test_matches_skimage_per_image(dtype, n, height, width):
    reference, test = smooth_and_noisy(n, height, width, seed=n + height)
    reference = reference.astype(dtype)
    test = test.astype(dtype)

    got_psnr = psnr(reference, test)
    got_ssim = ssim(reference, test)

    assert got_psnr.shape == (n,)
    assert got_ssim.shape == (n,)
    assert got_psnr.dtype == np.float64
    assert got_ssim.dtype == np.float64
    # The scores must spread: a constant output would not be a meaningful match.
    assert np.ptp(got_ssim) > 0.05
    for i in range(n):
        assert got_psnr[i] == pytest.approx(skimage_psnr(reference[i], test[i]), abs=ATOL)
        assert got_ssim[i] == pytest.approx(skimage_ssim(reference[i], test[i]), abs=ATOL)


def test_ssim_float64_agrees_with_skimage_to_rounding():
    # Same filter and formula: float64 input differs from skimage by rounding only.
    reference, test = smooth_and_noisy(5, 40, 40, seed=3)
    expected = [skimage_ssim(r, t) for r, t in zip(reference, test)]
    np.testing.assert_allclose(ssim(reference, test), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("channels", [None, 2])
@pytest.mark.parametrize("name", ["psnr", "ssim"])
def test_block_size_does_not_change_scores(monkeypatch, name, channels):
    function = METRICS[name].function
    reference, test = smooth_and_noisy(10, 32, 32, seed=17, channels=channels)
    per_image = reference[0].size
    monkeypatch.setattr(metrics, "_BLOCK_PIXELS", 10 * per_image)  # one block
    whole = function(reference, test)
    monkeypatch.setattr(metrics, "_BLOCK_PIXELS", 3 * per_image)  # blocks of 3, 3, 3, 1
    blocked = function(reference, test)
    monkeypatch.setattr(metrics, "_BLOCK_PIXELS", 1)  # one image per block
    one_by_one = function(reference, test)
    assert blocked.shape == one_by_one.shape == (10,)
    np.testing.assert_allclose(blocked, whole, rtol=0, atol=1e-12)
    np.testing.assert_allclose(one_by_one, whole, rtol=0, atol=1e-12)


@pytest.mark.parametrize("function", [psnr, ssim])
def test_empty_stack(function):
    images = np.zeros((0, 16, 16))
    assert function(images, images).shape == (0,)


def test_psnr_hand_computed():
    reference = np.full((3, 16, 16), 0.5)
    test = reference + 0.1  # MSE = 0.01 everywhere -> 10 * log10(1 / 0.01) = 20 dB
    np.testing.assert_allclose(psnr(reference, test), [20.0, 20.0, 20.0], rtol=0, atol=1e-9)
    # data_range enters squared: range 2 adds 20 * log10(2) dB.
    np.testing.assert_allclose(
        psnr(reference, test, data_range=2.0), 20.0 + 20.0 * np.log10(2.0), rtol=0, atol=1e-9
    )


def test_identical_images():
    reference, _ = smooth_and_noisy(4, 24, 24, seed=5)
    assert np.all(np.isposinf(psnr(reference, reference)))
    np.testing.assert_allclose(ssim(reference, reference), 1.0, rtol=0, atol=1e-12)


def test_single_image_gives_scalar():
    reference, test = smooth_and_noisy(1, 32, 32, seed=7)
    got_psnr = psnr(reference[0], test[0])
    got_ssim = ssim(reference[0], test[0])
    assert np.ndim(got_psnr) == 0
    assert np.ndim(got_ssim) == 0
    assert float(got_psnr) == pytest.approx(skimage_psnr(reference[0], test[0]), abs=ATOL)
    assert float(got_ssim) == pytest.approx(skimage_ssim(reference[0], test[0]), abs=ATOL)


def spectral_cubes(n: int = 3, size: int = 24, channels: int = 12, *, seed: int = 11):
    """Cubes whose channels differ in energy as XRD-CT's do: a few carry the signal (peaks),
    most are nearly empty; and copies with counting-like noise (its spread grows with the
    signal), clipped to [0, 1]."""
    rng = np.random.default_rng(seed)
    maps = gaussian_filter(rng.random((n, size, size, 1)), (0, 2, 2, 0))
    maps = (maps - maps.min()) / np.ptp(maps)
    heights = np.full(channels, 0.01)
    heights[[1, channels // 2, channels // 2 + 1]] = [1.0, 0.6, 0.3]  # the peak channels
    reference = maps * heights
    spread = 0.05 * np.sqrt(reference)
    test = np.clip(reference + spread * rng.standard_normal(reference.shape), 0.0, 1.0)
    return reference, test


def test_hyperspectral_psnr_is_one_mse_over_the_whole_cube():
    reference, test = spectral_cubes()
    got = psnr(reference, test)
    assert got.shape == (3,)
    for i in range(3):
        by_hand = 10 * np.log10(1.0 / np.mean((reference[i] - test[i]) ** 2))
        assert got[i] == pytest.approx(by_hand, rel=1e-12)
        assert got[i] == pytest.approx(skimage_psnr(reference[i], test[i]), rel=1e-12)
        # not the mean of the channels' dB values, which the near-empty channels inflate
        channel_mean = np.mean([skimage_psnr(reference[i, ..., c], test[i, ..., c])
                                for c in range(12)])  # fmt: skip
        assert abs(got[i] - channel_mean) > 0.5


def test_hyperspectral_ssim_is_weighted_by_channel_energy():
    reference, test = spectral_cubes()
    got = ssim(reference, test)
    assert got.shape == (3,)
    for i in range(3):
        values = [skimage_ssim(reference[i, ..., c], test[i, ..., c]) for c in range(12)]
        energy = [np.sum(reference[i, ..., c] ** 2) for c in range(12)]
        weighted = sum(v * e for v, e in zip(values, energy)) / sum(energy)
        assert got[i] == pytest.approx(weighted, abs=1e-12)
        assert abs(got[i] - np.mean(values)) > 0.02  # the plain mean is another score
    weights = metrics.channel_weights(reference)
    assert weights.shape == (3, 12)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # a cube whose reference is all zero has no energy: its channels weigh alike
    zero = np.zeros_like(reference[:1])
    noisy = np.clip(zero + 0.2 * np.random.default_rng(2).random(zero.shape), 0, 1)
    values = [skimage_ssim(zero[0, ..., c], noisy[0, ..., c]) for c in range(12)]
    assert ssim(zero, noisy)[0] == pytest.approx(np.mean(values), abs=1e-12)
    np.testing.assert_array_equal(metrics.channel_weights(zero), np.full((1, 12), 1 / 12))


def test_per_channel_scores_equal_skimage_per_channel():
    reference, test = spectral_cubes(n=2, channels=5, seed=4)
    got_psnr = psnr(reference, test, per_channel=True)
    got_ssim = ssim(reference, test, per_channel=True)
    assert got_psnr.shape == got_ssim.shape == (2, 5)
    for i in range(2):
        for c in range(5):
            pair = reference[i, ..., c], test[i, ..., c]
            assert got_psnr[i, c] == pytest.approx(skimage_psnr(*pair), rel=1e-12)
            assert got_ssim[i, c] == pytest.approx(skimage_ssim(*pair), abs=1e-12)
    for function in (psnr, ssim):
        with pytest.raises(ValueError, match=r"per_channel needs a hyperspectral stack"):
            function(reference[..., 0], test[..., 0], per_channel=True)


@pytest.mark.parametrize("name", ["psnr", "ssim"])
def test_batch_of_one_equals_element_of_batch(name):
    function = METRICS[name].function
    reference, test = smooth_and_noisy(9, 32, 32, seed=13)
    batch = function(reference, test)
    for i in (0, 4, 8):
        single = function(reference[i : i + 1], test[i : i + 1])
        assert single.shape == (1,)
        assert single[0] == batch[i]
    # No leakage between images: changing one image leaves the others' scores alone.
    altered = test.copy()
    altered[4] = 1.0 - altered[4]
    rescored = function(reference, altered)
    assert rescored[4] != batch[4]
    np.testing.assert_array_equal(np.delete(rescored, 4), np.delete(batch, 4))


def test_integer_input_is_converted_not_rescaled():
    reference = np.zeros((2, 16, 16), dtype=np.uint8)
    test = np.ones((2, 16, 16), dtype=np.uint8)
    # MSE 1 with data_range 1 -> 0 dB: the values are used as they are, not rescaled.
    np.testing.assert_allclose(psnr(test, reference), [0.0, 0.0], rtol=0, atol=1e-12)
    # Full-range uint8 in both arguments: products such as 200 * 200 must not wrap.
    rng = np.random.default_rng(19)
    reference = rng.integers(0, 256, size=(3, 24, 24), dtype=np.uint8)
    test = rng.integers(0, 256, size=(3, 24, 24), dtype=np.uint8)
    for first, second in ((reference, test), (test, reference)):
        a, b = first.astype(np.float64), second.astype(np.float64)
        expected_psnr = [peak_signal_noise_ratio(p, q, data_range=255) for p, q in zip(a, b)]
        expected_ssim = [
            structural_similarity(
                p, q, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255
            )
            for p, q in zip(a, b)
        ]
        np.testing.assert_allclose(
            psnr(first, second, data_range=255), expected_psnr, rtol=0, atol=ATOL
        )
        np.testing.assert_allclose(
            ssim(first, second, data_range=255), expected_ssim, rtol=0, atol=ATOL
        )


@pytest.mark.parametrize("function", [psnr, ssim])
def test_shape_mismatch_raises(function):
    reference = np.zeros((2, 32, 32))
    test = np.zeros((2, 32, 30))
    with pytest.raises(ValueError, match=r"\(2, 32, 32\).*\(2, 32, 30\)"):
        function(reference, test)


@pytest.mark.parametrize("function", [psnr, ssim])
def test_complex_input_raises(function):
    reference = np.zeros((2, 32, 32), dtype=np.complex128)
    test = np.zeros((2, 32, 32))
    with pytest.raises(ValueError, match="complex128"):
        function(reference, test)
    with pytest.raises(ValueError, match="complex64"):
        function(test, test.astype(np.complex64))


@pytest.mark.parametrize("function", [psnr, ssim])
@pytest.mark.parametrize("shape", [(32,), (1, 2, 32, 32, 1)])
def test_wrong_dimensionality_raises(function, shape):
    with pytest.raises(ValueError, match=str(shape).replace("(", r"\(").replace(")", r"\)")):
        function(np.zeros(shape), np.zeros(shape))


def test_ssim_rejects_images_smaller_than_window():
    with pytest.raises(ValueError, match="11x11"):
        ssim(np.zeros((2, 10, 32)), np.zeros((2, 10, 32)))


@pytest.mark.parametrize("function", [psnr, ssim])
@pytest.mark.parametrize("data_range", [0.0, -1.0, np.inf])
def test_bad_data_range_raises(function, data_range):
    images = np.zeros((1, 16, 16))
    with pytest.raises(ValueError, match="data_range"):
        function(images, images, data_range=data_range)


def test_metrics_registry_declares_direction():
    assert set(METRICS) == {"psnr", "ssim"}
    for name, metric in METRICS.items():
        assert isinstance(metric, Metric)
        assert metric.name == name
        assert metric.higher_is_better is True
    assert METRICS["psnr"].function is psnr
    assert METRICS["ssim"].function is ssim
    assert METRICS["psnr"].unit == "dB"
    assert METRICS["ssim"].unit == ""
    with pytest.raises(AttributeError):
        METRICS["psnr"].higher_is_better = False  # frozen
