import numpy as np
import pytest

from tomobench.physics import noise


def rng(seed=0):
    return np.random.default_rng(seed)


@pytest.mark.parametrize(
    ("photons", "attenuation", "line_integral"), [(1e4, 0.05, 20.0), (50, 1.0, 0.7)]
)
def test_poisson_counts_have_poisson_statistics(photons, attenuation, line_integral):
    clean = np.full((400, 500), line_integral, dtype=np.float32)
    noisy = noise.poisson(clean, photons=photons, attenuation=attenuation, rng=rng())
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape
    counts = photons * np.exp(-attenuation * noisy.astype(np.float64))
    assert np.allclose(counts, np.round(counts), atol=1e-2 * np.sqrt(counts.max()))
    counts = np.round(counts)
    expected = photons * np.exp(-attenuation * line_integral)
    n = counts.size
    # mean and variance of a Poisson law both equal its rate; allow 5 standard errors
    assert abs(counts.mean() - expected) < 5 * np.sqrt(expected / n)
    variance_error = np.sqrt((expected + 2 * expected**2) / n)
    assert abs(counts.var() - expected) < 5 * variance_error


def test_poisson_noise_shrinks_with_more_photons():
    clean = np.full((200, 200), 10.0)
    spread = [
        noise.poisson(clean, photons=photons, attenuation=0.1, rng=rng()).std()
        for photons in (1e2, 1e4, 1e6)
    ]
    assert spread[0] > 5 * spread[1] > 25 * spread[2]


def test_zero_counts_stay_finite():
    clean = np.full((10, 10), 1e3, dtype=np.float32)  # nothing gets through
    noisy = noise.poisson(clean, photons=100, attenuation=1.0, min_counts=0.1, rng=rng())
    assert np.all(np.isfinite(noisy))
    assert np.allclose(noisy, -np.log(0.1 / 100))


def test_gaussian_absolute_and_relative():
    clean = np.zeros((300, 300))
    clean[0, 0] = 8.0
    absolute = noise.gaussian(clean, sigma=0.5, rng=rng()) - clean
    relative = noise.gaussian(clean, sigma=0.5, relative=True, rng=rng()) - clean
    assert abs(absolute.std() - 0.5) < 0.01
    assert abs(relative.std() - 4.0) < 0.08
    assert abs(absolute.mean()) < 0.01


def test_counting_is_counts_over_counts():
    image = np.full((300, 300), 0.25)
    noisy = noise.counting(image, counts=256, rng=rng())
    counts = noisy * 256
    assert np.allclose(counts, np.round(counts))
    assert abs(counts.mean() - 64) < 5 * np.sqrt(64 / counts.size)
    assert abs(counts.var() - 64) < 0.05 * 64


def test_same_generator_seed_same_noise():
    clean = np.full((20, 20), 3.0)
    first = noise.poisson(clean, photons=1e3, attenuation=0.1, rng=rng(5))
    again = noise.poisson(clean, photons=1e3, attenuation=0.1, rng=rng(5))
    other = noise.poisson(clean, photons=1e3, attenuation=0.1, rng=rng(6))
    assert np.array_equal(first, again) and not np.array_equal(first, other)


def test_poisson_is_the_plain_beer_lambert_expression():
    """The noise works in one buffer; it must give the bits of the textbook expression."""
    clean = np.random.default_rng(2).uniform(0, 700, (90, 64)).astype(np.float32)
    for photons, attenuation in ((1e4, 1 / 128), (50.0, 1.0)):
        expected = photons * np.exp(-attenuation * clean.astype(np.float64))
        counts = np.maximum(rng(9).poisson(expected), 0.1)
        reference = (-np.log(counts / photons) / attenuation).astype(np.float32)
        noisy = noise.poisson(clean, photons=photons, attenuation=attenuation, rng=rng(9))
        assert np.array_equal(noisy, reference)
