import functools
import re

import numpy as np
import pytest
from scipy import ndimage, stats
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from tomobench.baselines import fbp
from tomobench.errors import PhysicsError
from tomobench.physics.geometry import parallel_beam
from tomobench.physics.preprocess import (
    center_sinogram,
    find_center,
    normalise,
    scale_projections,
    shift_sinogram,
    subtract_background,
    trimmed_mean,
)
from tomobench.physics.projector import Projector

SIZE, DETECTOR = 64, 96  # a detector wider than the image: shifted data stay on it
OFFSETS = (3.4, -7.25, 0.6)


@functools.cache
def phantom(name: str) -> np.ndarray:
    if name == "shepp-logan":
        image = resize(shepp_logan_phantom(), (SIZE, SIZE), anti_aliasing=True)
    else:  # Gaussian blobs inside the inscribed circle
        rng = np.random.default_rng(5)
        y, x = np.mgrid[:SIZE, :SIZE] - (SIZE - 1) / 2
        image = np.zeros((SIZE, SIZE))
        for _ in range(6):
            cy, cx = rng.uniform(-18, 18, 2)
            width = rng.uniform(3, 8)
            image += rng.uniform(0.3, 1) * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / width**2 / 2)
        image *= x**2 + y**2 < (SIZE / 2 - 1) ** 2
    return image.astype(np.float32)


def geometry(angles: int):
    return parallel_beam(SIZE, angles=angles, detector=DETECTOR)


@functools.cache
def sinogram(name: str, angles: int) -> np.ndarray:
    return Projector(geometry(angles), backend="matrix").forward(phantom(name))


def moved(sinogram: np.ndarray, offset: float) -> np.ndarray:
    """The sinogram with its axis at ``offset``: content moved by +offset along the detector
    (scipy's Fourier shift, along the detector axis only)."""
    spectrum = ndimage.fourier_shift(np.fft.fft(sinogram, axis=1), (0, offset))
    return np.fft.ifft(spectrum, axis=1).real.astype(np.float32)


def rmse(a, b) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


# -- centring --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["shepp-logan", "blobs"])
@pytest.mark.parametrize("angles", [180, 90])
def test_find_center_recovers_known_offsets(name, angles):
    clean = sinogram(name, angles)
    assert abs(find_center(clean)) < 0.01
    for offset in OFFSETS:
        assert find_center(moved(clean, offset)) == pytest.approx(offset, abs=0.01)


@pytest.mark.parametrize("interpolation", ["fourier", "linear"])
def test_center_sinogram_puts_the_axis_on_the_detector_centre(interpolation):
    clean = sinogram("shepp-logan", 90)
    for offset in OFFSETS:
        centred, found = center_sinogram(moved(clean, offset), interpolation=interpolation)
        assert found == pytest.approx(offset, abs=0.1)
        assert centred.shape == clean.shape and centred.dtype == np.float32
        assert abs(find_center(centred)) < 0.01


def test_find_center_with_noise():
    clean = sinogram("blobs", 180)
    rng = np.random.default_rng(0)
    for offset in OFFSETS:
        noisy = moved(clean, offset) + rng.normal(0, 0.01 * clean.max(), clean.shape)
        assert find_center(noisy) == pytest.approx(offset, abs=0.1)


@pytest.mark.parametrize("name", ["shepp-logan", "blobs"])
def test_centring_repairs_the_reconstruction(name):
    clean, image, scan = sinogram(name, 180), phantom(name), geometry(180)
    reference = rmse(fbp(clean, scan), image)
    for offset in (3.4, -7.25):
        shifted = moved(clean, offset)
        before = rmse(fbp(shifted, scan), image)
        after = rmse(fbp(center_sinogram(shifted)[0], scan), image)
        smoothed = rmse(fbp(center_sinogram(shifted, interpolation="linear")[0], scan), image)
        assert after < 1.02 * reference + 1e-4  # as good as the original sinogram
        assert after < 0.3 * before and smoothed < 0.3 * before


def test_find_center_from_analytic_projections_at_any_angles():
    """Gaussian blobs project to Gaussians at c + x cos θ + y sin θ, whatever the angles."""
    rng = np.random.default_rng(2)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 50))
    u = np.arange(80) - 39.5
    sino = np.zeros((50, 80))
    for x, y, width, weight in [(5, -8, 3, 1.0), (-10, 2, 4, 0.5), (0, 12, 2, 2.0)]:
        position = 2.3 + x * np.cos(angles) + y * np.sin(angles)
        sino += weight * np.exp(-((u - position[:, None]) ** 2) / width**2 / 2)
    assert find_center(sino, angles=angles) == pytest.approx(2.3, abs=1e-6)
    with pytest.raises(PhysicsError, match=r"angles must have shape \(50,\).*got shape \(49,\)"):
        find_center(sino, angles=angles[:-1])


def test_stack_shares_the_centre_and_shifts_channel_by_channel():
    single = moved(sinogram("blobs", 90), -7.25)
    stack = np.stack([single, single, single], axis=-1)
    assert find_center(stack) == pytest.approx(find_center(single), abs=1e-9)
    different = np.stack([single, 3 * single, single[:, ::-1]], axis=-1)
    for interpolation in ("fourier", "linear"):
        for fill in ("zero", "edge"):
            whole = shift_sinogram(different, 1.7, interpolation=interpolation, fill=fill)
            for channel in range(3):
                alone = shift_sinogram(
                    different[..., channel], 1.7, interpolation=interpolation, fill=fill
                )
                np.testing.assert_allclose(whole[..., channel], alone, rtol=1e-5, atol=1e-5)


def test_shift_by_whole_pixels_fills_the_edges():
    data = np.arange(1.0, 13.0).reshape(2, 6)
    np.testing.assert_allclose(
        shift_sinogram(data, 2, interpolation="linear")[0], [3, 4, 5, 6, 0, 0]
    )
    np.testing.assert_allclose(
        shift_sinogram(data, -2, interpolation="linear", fill="edge")[1], [7, 7, 7, 8, 9, 10]
    )
    np.testing.assert_allclose(shift_sinogram(data, 2)[0], [3, 4, 5, 6, 0, 0], atol=1e-9)
    np.testing.assert_allclose(
        shift_sinogram(data, 0.5, interpolation="linear")[0], [1.5, 2.5, 3.5, 4.5, 5.5, 3]
    )


def test_fourier_shift_of_a_smooth_profile():
    u = np.arange(64.0)
    profile = np.exp(-((u - 30) ** 2) / 18)
    result = shift_sinogram(np.stack([profile, 2 * profile]), -3.3)
    np.testing.assert_allclose(result[0], np.exp(-((u - 33.3) ** 2) / 18), atol=1e-6)
    np.testing.assert_allclose(result[1], 2 * result[0])
    assert result.dtype == np.float64


def test_shift_rejects_bad_options():
    with pytest.raises(PhysicsError, match="unknown interpolation 'cubic'"):
        shift_sinogram(np.ones((3, 4)), 1.0, interpolation="cubic")
    with pytest.raises(PhysicsError, match="unknown fill 'wrap'"):
        shift_sinogram(np.ones((3, 4)), 1.0, fill="wrap")
    with pytest.raises(PhysicsError, match="offset must be a finite"):
        shift_sinogram(np.ones((3, 4)), np.nan)


def test_find_center_needs_signal():
    with pytest.raises(PhysicsError, match="cannot find the centre from 0 projection"):
        find_center(np.zeros((10, 8)))
    with pytest.raises(PhysicsError, match="NaN"):
        find_center(np.full((10, 8), np.nan))


# -- intensities -----------------------------------------------------------------------------


def test_scale_projections_undoes_per_angle_factors():
    clean = sinogram("shepp-logan", 90)
    factors = np.random.default_rng(3).uniform(0.5, 2.0, 90).astype(np.float32)
    scaled = scale_projections(clean * factors[:, None])
    sums = scaled.sum(axis=1, dtype=np.float64)
    np.testing.assert_allclose(sums, sums.mean(), rtol=1e-5)
    ratio = scaled / np.where(clean > 1e-3, clean, np.nan)
    np.testing.assert_allclose(ratio[np.isfinite(ratio)], np.nanmean(ratio), rtol=5e-3)
    np.testing.assert_allclose(
        scaled, scale_projections(clean) * scaled.sum() / clean.sum(), rtol=1e-4, atol=1e-5
    )


def test_scale_projections_target_zero_rows_and_channels():
    rng = np.random.default_rng(4)
    stack = rng.uniform(0, 1, (6, 10, 3))
    stack[2] = 0
    scaled = scale_projections(stack, target=7.0)
    sums = scaled.sum(axis=(1, 2))
    np.testing.assert_allclose(sums[[0, 1, 3, 4, 5]], 7.0)
    assert sums[2] == 0
    np.testing.assert_allclose(scaled[0] / stack[0], 7.0 / stack[0].sum())  # one factor an angle
    with pytest.raises(PhysicsError, match="target must be a positive"):
        scale_projections(stack, target=-1.0)


def test_subtract_given_background_exactly():
    clean = sinogram("blobs", 90).astype(np.float64)
    profile = np.linspace(0.2, 0.4, DETECTOR)
    np.testing.assert_allclose(subtract_background(clean + 0.3, background=0.3), clean, atol=1e-12)
    np.testing.assert_allclose(
        subtract_background(clean + profile, background=profile), clean, atol=1e-12
    )
    stack = np.stack([clean, 2 * clean], axis=-1)
    levels = np.array([0.1, 0.5])
    np.testing.assert_allclose(
        subtract_background(stack + levels, background=levels), stack, atol=1e-12
    )
    both = np.stack([profile, 3 * profile], axis=-1)
    np.testing.assert_allclose(
        subtract_background(stack + both, background=both), stack, atol=1e-12
    )
    np.testing.assert_allclose(
        subtract_background(stack + profile[:, None], background=profile[:, None]),
        stack,
        atol=1e-12,
    )


def test_subtract_background_estimated_from_the_edges():
    clean = sinogram("shepp-logan", 90).astype(np.float64)
    rng = np.random.default_rng(6)
    air = rng.uniform(0.5, 1.5, (90, 1, 1)) * np.array([1.0, 0.2])  # per angle and channel
    stack = np.stack([clean, 4 * clean], axis=-1)
    measured = stack + air
    np.testing.assert_allclose(subtract_background(measured, edge=8), stack, atol=1e-9)
    noisy = measured + rng.normal(0, 0.01, measured.shape)
    error = subtract_background(noisy, edge=8) - stack
    assert abs(error.mean()) < 1e-3 and error.std() < 0.015
    floored = subtract_background(noisy, edge=8, nonnegative=True)
    assert floored.min() == 0 and np.array_equal(floored, np.maximum(error + stack, 0))


def test_subtract_background_rejects_bad_shapes():
    data = np.ones((4, 10, 3))
    with pytest.raises(
        PhysicsError, match=r"background must be a scalar, \(C,\) = \(3,\).*got shape \(10,\)"
    ):
        subtract_background(data, background=np.ones(10))
    with pytest.raises(PhysicsError, match=r"background must be a scalar or \(D,\) = \(10,\)"):
        subtract_background(data[..., 0], background=np.ones(3))
    with pytest.raises(PhysicsError, match="edge must be an integer from 1 to 4"):
        subtract_background(data, edge=5)


# -- trimmed mean ----------------------------------------------------------------------------


@pytest.mark.parametrize("proportion", [0.1, 0.25])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_trimmed_mean_matches_scipy_when_symmetric(proportion, axis):
    values = np.random.default_rng(7).standard_cauchy((37, 23, 4))
    expected = stats.trim_mean(values, proportion, axis=axis)
    result = trimmed_mean(values, axis=axis, lower=100 * proportion, upper=100 * (1 - proportion))
    np.testing.assert_allclose(result, expected, rtol=1e-12)


def test_trimmed_mean_drops_hot_spots_and_ignores_nan():
    rng = np.random.default_rng(8)
    ring = rng.normal(1.0, 0.05, (5, 400))  # 5 radial bins, 400 pixels each
    ring[:, rng.choice(400, 12, replace=False)] = 100.0  # single-crystal hot spots
    assert np.all(ring.mean(axis=1) > 3)
    np.testing.assert_allclose(trimmed_mean(ring, axis=1, lower=0, upper=95), 1.0, atol=0.01)
    masked = ring.copy()
    masked[:, :150] = np.nan  # masked detector pixels
    masked[3] = np.nan
    result = trimmed_mean(masked, axis=1, lower=10, upper=90)
    expected = [stats.trim_mean(row[150:], 0.1) for row in ring]
    np.testing.assert_allclose(result[[0, 1, 2, 4]], np.array(expected)[[0, 1, 2, 4]])
    assert np.isnan(result[3])


def test_trimmed_mean_axes_and_types():
    values = np.random.default_rng(9).random((6, 5, 8)).astype(np.float32)
    result = trimmed_mean(values, axis=(0, 2), lower=0, upper=100)
    assert result.shape == (5,) and result.dtype == np.float32
    np.testing.assert_allclose(result, values.mean(axis=(0, 2)), rtol=1e-6)
    with pytest.raises(PhysicsError, match="0 <= lower < upper <= 100 .*got lower=60, upper=40"):
        trimmed_mean(values, axis=0, lower=60, upper=40)
    with pytest.raises(PhysicsError, match="axis must be an int or tuple"):
        trimmed_mean(values, axis=3)


# -- normalise -------------------------------------------------------------------------------


def test_normalise_image_and_cube():
    image = np.array([[-1.0, 0.5], [2.0, 1.0]])
    np.testing.assert_array_equal(normalise(image), [[0, 0.25], [1, 0.5]])
    assert normalise(image).dtype == np.float32
    cube = np.stack([image, 4 * image], axis=-1)  # one maximum for the whole cube
    result = normalise(cube)
    assert result.max() == 1 and result.min() == 0 and result.dtype == np.float32
    np.testing.assert_allclose(result[..., 0], normalise(image) / 4)
    np.testing.assert_array_equal(normalise(-(image**2)), np.zeros((2, 2)))
    with pytest.raises(PhysicsError, match="NaN or infinite"):
        normalise(np.array([[np.nan, 1.0]]))


# -- shapes ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call",
    [
        find_center,
        lambda s: shift_sinogram(s, 1.0),
        center_sinogram,
        scale_projections,
        subtract_background,
    ],
)
@pytest.mark.parametrize("shape", [(5,), (2, 3, 4, 5)])
def test_sinograms_of_the_wrong_rank_are_refused(call, shape):
    with pytest.raises(
        ValueError,
        match=r"sinogram must have shape \(A, D\) or \(A, D, C\), got shape "
        + re.escape(str(shape)),
    ):
        call(np.ones(shape))


def test_images_of_the_wrong_rank_are_refused():
    with pytest.raises(ValueError, match=r"\(H, W\) or \(H, W, C\), got shape \(1, 2, 3, 4\)"):
        normalise(np.ones((1, 2, 3, 4)))
    with pytest.raises(ValueError, match=r"at least one axis, got a scalar"):
        trimmed_mean(np.float64(1.0), axis=0)
