import math

import numpy as np
import pytest
from scipy.special import erf
from scipy.stats import trim_mean

from tomobench.xrd import (
    PHASES,
    Detector,
    Phase,
    azimuthal_integration,
    bragg_two_theta,
    cube,
    frame,
    pattern,
    patterns,
    phase_maps,
    pseudo_voigt,
    two_theta_axis,
    wavelength_from_energy,
)

CU_KALPHA = 1.5406  # Å


def peak_tops(axis, values, threshold):
    """2θ of the local maxima above ``threshold``, refined by a parabola through 3 samples."""
    inner = (values[1:-1] > values[:-2]) & (values[1:-1] >= values[2:])
    tops = np.flatnonzero(inner & (values[1:-1] > threshold)) + 1
    left, mid, right = values[tops - 1], values[tops], values[tops + 1]
    offset = 0.5 * (left - right) / (left - 2 * mid + right)
    return axis[tops] + offset * (axis[1] - axis[0])


def measured_fwhm(axis, values):
    """Full width at half maximum of the single highest peak, by linear interpolation."""
    top = int(np.argmax(values))
    half = values[top] / 2
    left = top - np.argmax(values[top::-1] < half)  # first sample below half, going left
    right = top + np.argmax(values[top:] < half)
    x_left = np.interp(half, values[left : left + 2], axis[left : left + 2])
    falling = [right, right - 1]  # the two samples around the crossing, in rising order
    x_right = np.interp(half, values[falling], axis[falling])
    return x_right - x_left


# --- phases -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "hkl", "d_card"),
    [  # d-spacings in Å from the powder diffraction cards (independent of the formulas)
        ("Cu", (1, 1, 1), 2.088),
        ("Cu", (2, 0, 0), 1.808),
        ("Ni", (1, 1, 1), 2.034),
        ("Pt", (1, 1, 1), 2.265),
        ("CeO2", (1, 1, 1), 3.124),
        ("CeO2", (2, 2, 0), 1.913),
        ("gamma-Al2O3", (4, 4, 0), 1.397),
        ("ZnO", (1, 0, 0), 2.814),
        ("ZnO", (0, 0, 2), 2.603),
        ("ZnO", (1, 0, 1), 2.476),
        ("TiO2-anatase", (1, 0, 1), 3.52),
        ("TiO2-anatase", (2, 0, 0), 1.892),
    ],
)
def test_d_spacings_match_powder_cards(name, hkl, d_card):
    phase = PHASES[name]
    d, _ = phase.d_spacings()
    row = [tuple(r[:3]) for r in phase.reflections].index(hkl)
    assert d[row] == pytest.approx(d_card, abs=0.005)


def test_d_spacing_formulas_by_hand_and_a_scale():
    tetragonal = Phase("t", "tetragonal", a=4.0, c=6.0, reflections=[(1, 1, 2, 50)])
    hexagonal = Phase("h", "hexagonal", a=3.0, c=5.0, reflections=[(1, 1, 2, 50)])
    cubic = Phase("c", "cubic", a=4.0, reflections=[(2, 2, 0, 50)])
    assert tetragonal.d_spacings()[0][0] == pytest.approx(1 / math.sqrt(2 / 16 + 4 / 36))
    assert hexagonal.d_spacings()[0][0] == pytest.approx(1 / math.sqrt(4 / 3 * 3 / 9 + 4 / 25))
    assert cubic.d_spacings()[0][0] == pytest.approx(4 / math.sqrt(8))
    assert hexagonal.d_spacings(a_scale=1.01)[0][0] == pytest.approx(
        1.01 * hexagonal.d_spacings()[0][0]
    )
    direct = Phase("list", "cubic", d_list=[(2.0, 100), (1.5, 30)])
    d, intensity = direct.d_spacings(a_scale=1.1)
    assert np.allclose(d, [2.2, 1.65]) and np.allclose(intensity, [100, 30])


def test_shipped_phases_obey_selection_rules():
    for name in ("Cu", "Ni", "Pt", "CeO2", "gamma-Al2O3"):  # face-centred lattices
        for h, k, ell, _ in PHASES[name].reflections:
            assert h % 2 == k % 2 == ell % 2, (name, (h, k, ell))
    for h, k, ell, _ in PHASES["TiO2-anatase"].reflections:  # body-centred
        assert (h + k + ell) % 2 == 0, (h, k, ell)
    for phase in PHASES.values():
        intensities = [r[3] for r in phase.reflections]
        assert max(intensities) == 100 and min(intensities) > 0


def test_phase_errors_name_the_problem():
    with pytest.raises(ValueError, match="crystal_system='orthorhombic'"):
        Phase("x", "orthorhombic", a=3.0, reflections=[(1, 0, 0, 1)])
    with pytest.raises(ValueError, match="c=None"):
        Phase("x", "hexagonal", a=3.0, reflections=[(1, 0, 0, 1)])
    with pytest.raises(ValueError, match="exactly one"):
        Phase("x", "cubic", a=3.0)


# --- patterns -----------------------------------------------------------------------------


def test_wavelength_from_energy():
    assert wavelength_from_energy(8.0) == 12.398419843320026 / 8.0
    assert wavelength_from_energy(8.04778) == pytest.approx(CU_KALPHA, abs=1e-4)


def test_peak_positions_follow_bragg():
    axis = two_theta_axis(20, 100, 8001)  # step 0.01°
    step = axis[1] - axis[0]
    cu = pattern(PHASES["Cu"], axis, wavelength=CU_KALPHA, crystallite_size_nm=50)
    tops = peak_tops(axis, cu, threshold=0.02 * cu.max())
    d, _ = PHASES["Cu"].d_spacings()
    expected = np.degrees(2 * np.arcsin(CU_KALPHA / (2 * d)))
    expected = expected[expected < 100]
    assert len(tops) == len(expected) == 5
    assert np.all(np.abs(tops - expected) < step)
    assert tops[0] == pytest.approx(43.30, abs=0.02) and tops[1] == pytest.approx(50.43, abs=0.02)


def test_reflections_that_cannot_diffract_are_left_out():
    d, _ = PHASES["Cu"].d_spacings()
    assert np.isnan(bragg_two_theta(d, wavelength=3.0)).sum() == 6  # λ/2d > 1 for all but 2
    axis = two_theta_axis(0.5, 179.5, 3000)
    long_wave = pattern(PHASES["Cu"], axis, wavelength=3.0, crystallite_size_nm=50)
    assert np.all(np.isfinite(long_wave)) and len(peak_tops(axis, long_wave, 1.0)) == 2


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_scherrer_width_scales_as_inverse_size(eta):
    axis = two_theta_axis(38, 48.5, 21001)  # Cu (111) alone, step 0.0005°
    widths = {}
    for size in (10, 20, 40):
        cu = pattern(
            PHASES["Cu"], axis, wavelength=CU_KALPHA, crystallite_size_nm=size, eta=eta,
            instrument_fwhm_deg=0.0,
        )
        widths[size] = measured_fwhm(axis, cu)
    assert widths[10] > widths[20] > widths[40]
    theta = math.asin(CU_KALPHA / (2 * PHASES["Cu"].d_spacings()[0][0]))
    for size, width in widths.items():
        scherrer = math.degrees(0.9 * CU_KALPHA / (10 * size * math.cos(theta)))
        assert width == pytest.approx(scherrer, rel=0.01)
        assert width * size == pytest.approx(widths[10] * 10, rel=0.01)


def test_instrument_width_adds_in_quadrature():
    axis = two_theta_axis(38, 48.5, 21001)
    sample_only = measured_fwhm(axis, pattern(PHASES["Cu"], axis, wavelength=CU_KALPHA,
                                               crystallite_size_nm=20, eta=0.0))
    both = measured_fwhm(axis, pattern(PHASES["Cu"], axis, wavelength=CU_KALPHA,
                                       crystallite_size_nm=20, eta=0.0, instrument_fwhm_deg=0.3))
    assert both == pytest.approx(math.hypot(sample_only, 0.3), rel=0.01)


def test_strain_shifts_peaks_to_lower_angles():
    axis = two_theta_axis(40, 46, 6001)  # step 0.001°
    d111 = PHASES["Cu"].d_spacings()[0][0]
    for strain in (-0.005, 0.01):
        cu = pattern(PHASES["Cu"], axis, wavelength=CU_KALPHA, crystallite_size_nm=30,
                     strain=strain)
        (top,) = peak_tops(axis, cu, 0.5 * cu.max())
        expected = math.degrees(2 * math.asin(CU_KALPHA / (2 * d111 * (1 + strain))))
        assert top == pytest.approx(expected, abs=0.001)
        unstrained = math.degrees(2 * math.asin(CU_KALPHA / (2 * d111)))
        assert np.sign(top - unstrained) == -np.sign(strain)
    # to first order Δ2θ = -2·tanθ·ε (radians): -0.455° for 1 % expansion at 43.3°
    theta = math.radians(unstrained / 2)
    first_order = math.degrees(-2 * math.tan(theta) * 0.01)
    assert expected - unstrained == pytest.approx(first_order, rel=0.02)


@pytest.mark.parametrize("eta", [0.0, 0.3, 1.0])
def test_pseudo_voigt_has_unit_area(eta):
    fwhm, reach = 0.2, 100.0  # integrate over ±100° around the centre
    x = np.linspace(-reach, reach, 2_000_001)
    area = np.trapezoid(pseudo_voigt(x, center=0.0, fwhm=fwhm, eta=eta), x)
    inside = eta * 2 / np.pi * np.arctan(2 * reach / fwhm) + (1 - eta) * erf(
        2 * math.sqrt(math.log(2)) * reach / fwhm
    )
    assert area == pytest.approx(inside, abs=1e-6)
    assert inside == pytest.approx(1.0, abs=7e-4)  # what the Lorentzian tails leave out
    assert pseudo_voigt(0.1, center=0.0, fwhm=fwhm, eta=eta) == pytest.approx(
        pseudo_voigt(0.0, center=0.0, fwhm=fwhm, eta=eta) / 2
    )


def test_patterns_for_many_pixels_equal_one_call_per_pixel():
    axis = two_theta_axis(1, 12, 400)
    wavelength = wavelength_from_energy(60)
    rng = np.random.default_rng(3)
    sizes, strains = rng.uniform(4, 60, 300), rng.uniform(-0.01, 0.01, 300)
    many = patterns(PHASES["ZnO"], axis, wavelength=wavelength, crystallite_size_nm=sizes,
                    strain=strains, instrument_fwhm_deg=0.03)
    assert many.shape == (300, 400)
    for p in (0, 17, 255, 256, 299):  # on both sides of an internal block boundary
        one = pattern(PHASES["ZnO"], axis, wavelength=wavelength, crystallite_size_nm=sizes[p],
                      strain=strains[p], instrument_fwhm_deg=0.03)
        assert np.allclose(many[p], one, rtol=1e-12, atol=0)


# --- phantoms -----------------------------------------------------------------------------


def reference_pattern(phase, axis, wavelength, size_nm, strain, eta, instrument):
    """The pattern model written out reflection by reflection, for a hand check."""
    total = np.zeros_like(axis)
    for d, intensity in zip(*phase.d_spacings()):
        ratio = wavelength / (2 * d * (1 + strain))
        if ratio >= 1:
            continue
        theta = math.asin(ratio)
        center = math.degrees(2 * theta)
        fwhm = math.hypot(math.degrees(0.9 * wavelength / (10 * size_nm * math.cos(theta))),
                          instrument)
        gauss = math.sqrt(4 * math.log(2) / math.pi) / fwhm * np.exp(
            -4 * math.log(2) * (axis - center) ** 2 / fwhm**2
        )
        lorentz = fwhm / (2 * math.pi) / ((axis - center) ** 2 + fwhm**2 / 4)
        total += intensity * (eta * lorentz + (1 - eta) * gauss)
    return total


def make_cube(seed, kind="particles", size=32, **options):
    rng = np.random.default_rng(seed)
    names = ("gamma-Al2O3", "Ni", "CeO2")
    maps = phase_maps(kind, size, len(names), rng)
    options = {
        "wavelength": wavelength_from_energy(60),
        "size_range_nm": [(20, 40), (5, 15), (8, 30)],
        "strain_range": (-0.004, 0.004),
        "background": 0.05,
        "instrument_fwhm_deg": 0.03,
        "rng": rng,
    } | options
    return maps, *cube(maps, [PHASES[n] for n in names], two_theta_axis(1, 12, 300), **options)


def test_cube_is_the_sum_of_fractions_times_patterns():
    maps, data, truth = make_cube(0)
    axis = two_theta_axis(1, 12, 300)
    wavelength = wavelength_from_energy(60)
    assert data.shape == (32, 32, 300) and data.dtype == np.float32
    assert data.min() >= 0 and data.max() == 1.0
    mixed = np.argwhere((maps > 0).sum(axis=0) >= 2)
    assert len(mixed) > 0
    hump = np.exp(-4 * math.log(2) * ((axis - 6.5) / (11 / 3)) ** 2)
    for row, col in [tuple(mixed[0]), tuple(mixed[-1]), (0, 0)]:
        expected = sum(
            maps[k, row, col] * reference_pattern(
                PHASES[name], axis, wavelength, float(truth.crystallite_size_nm[k, row, col]),
                float(truth.strain[k, row, col]), 0.5, 0.03,
            )
            for k, name in enumerate(truth.phase_names)
        )
        crystalline = expected / truth.scale
        background = truth.background[row, col] * hump
        assert np.allclose(data[row, col], crystalline + background, rtol=1e-4, atol=1e-6)
    assert not data[0, 0].any()  # outside the sample: nothing


def test_cube_ground_truth_stays_in_the_ranges():
    maps, data, truth = make_cube(1, kind="shapes", size=48)
    assert np.array_equal(truth.fractions, maps)
    for k, (low, high) in enumerate([(20, 40), (5, 15), (8, 30)]):
        sizes = truth.crystallite_size_nm[k]
        assert low <= sizes.min() and sizes.max() <= high
        assert sizes.max() - sizes.min() > 0.5 * (high - low)  # the spread is used
    assert -0.004 <= truth.strain.min() and truth.strain.max() <= 0.004
    # smooth fields: neighbours differ far less than random pixels
    size_map = truth.crystallite_size_nm[0]
    neighbours = np.abs(np.diff(size_map, axis=1)).mean()
    assert neighbours < 0.2 * np.abs(size_map - size_map.mean()).mean()
    # the amorphous hump: one height (5 % of the strongest crystalline value) × occupancy
    occupancy = np.minimum(maps.sum(axis=0), 1)
    height = truth.background.max() / occupancy.max()
    assert 0.04 < height <= 0.05
    assert np.allclose(truth.background, height * occupancy, atol=1e-7)
    assert set(truth.arrays()) == {"fractions", "crystallite_size_nm", "strain", "background"}


def test_same_seed_same_cube():
    _, first, _ = make_cube(7)
    _, again, _ = make_cube(7)
    _, other, _ = make_cube(8)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.mark.parametrize("kind", ["shapes", "particles"])
def test_phase_maps_are_fractions_inside_the_field_of_view(kind):
    middle = 31.5
    rows, cols = np.mgrid[:64, :64]
    outside = (rows - middle) ** 2 + (cols - middle) ** 2 > 32**2
    for seed in range(5):
        maps = phase_maps(kind, 64, 3, np.random.default_rng(seed))
        assert maps.shape == (3, 64, 64) and maps.dtype == np.float32
        assert maps.min() >= 0 and maps.sum(axis=0).max() <= 1 + 1e-6
        assert not maps[:, outside].any()
        assert (maps.sum(axis=0) > 0).mean() > 0.03
    assert np.array_equal(phase_maps(kind, 64, 3, np.random.default_rng(9)),
                          phase_maps(kind, 64, 3, np.random.default_rng(9)))


def test_particles_are_support_bodies_carrying_active_phases():
    from scipy.ndimage import label

    for seed in range(5):
        rng = np.random.default_rng(seed)
        maps = phase_maps("particles", 64, 3, rng, fraction_range=(0.3, 0.9))
        bodies, count = label(maps.sum(axis=0) > 0)
        assert 2 <= count <= 5
        for body in range(1, count + 1):
            assert maps[0][bodies == body].max() > 0  # every body has its support
    only_support = phase_maps("particles", 64, 1, np.random.default_rng(0))
    assert only_support.max() == 1.0


def test_masks_kind_and_errors():
    masks = np.zeros((2, 16, 16), dtype=bool)
    masks[0, 4:8, 4:8] = masks[1, 8:12, 8:12] = True
    maps = phase_maps("masks", 16, 2, np.random.default_rng(0), masks=masks)
    assert np.array_equal(maps, masks.astype(np.float32))
    with pytest.raises(ValueError, match="kind='blobs'"):
        phase_maps("blobs", 16, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match=r"expected \(3, 16, 16\)"):
        phase_maps("masks", 16, 3, np.random.default_rng(0), masks=masks)
    for bad in (np.nan, np.inf, -0.5, 1.5):
        values = masks.astype(np.float64)
        values[1, 0, 0] = bad
        with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
            phase_maps("masks", 16, 2, np.random.default_rng(0), masks=values)
    with pytest.raises(ValueError, match="n_phases=2"):
        cube(maps[:1], [PHASES["Cu"], PHASES["Ni"]], two_theta_axis(1, 10, 50),
             wavelength=0.2, rng=np.random.default_rng(0))


# --- detector -----------------------------------------------------------------------------


def test_detector_pixel_angles_by_hand():
    detector = Detector((101, 81), pixel_size_mm=0.2, distance_mm=150.0, center=(50, 30))
    two_theta = detector.two_theta_deg()
    assert two_theta[50, 30] == 0
    assert two_theta[50, 80] == pytest.approx(math.degrees(math.atan(50 * 0.2 / 150)))
    corner = math.hypot(50, 30) * 0.2  # mm from the beam centre
    assert two_theta[0, 0] == pytest.approx(math.degrees(math.atan(corner / 150)))
    assert repr(Detector((4, 4), pixel_size_mm=0.1, distance_mm=100)) == (
        "Detector(shape=(4, 4), pixel_size_mm=0.1, distance_mm=100, center=(1.5, 1.5))"
    )


def test_trimmed_mean_is_the_per_bin_trimmed_mean():
    detector = Detector((64, 64), pixel_size_mm=0.2, distance_mm=100.0)
    axis = two_theta_axis(1, 9, 40)
    rng = np.random.default_rng(0)
    image = rng.exponential(size=detector.shape)
    trimmed, counts = azimuthal_integration(image, axis, detector, method="trimmed", lower=10,
                                            upper=90, return_counts=True)
    mean = azimuthal_integration(image, axis, detector)
    edges = np.concatenate([[axis[0] - 0.1], (axis[1:] + axis[:-1]) / 2, [axis[-1] + 0.1]])
    bins = np.digitize(detector.two_theta_deg(), edges) - 1
    for c in range(axis.size):
        values = image[bins == c]
        assert counts[c] == values.size
        if values.size:
            assert trimmed[c] == pytest.approx(trim_mean(values, 0.1))
            assert mean[c] == pytest.approx(values.mean())
        else:
            assert np.isnan(trimmed[c]) and np.isnan(mean[c])
    assert np.isnan(mean).sum() > 0  # 2θ beyond the detector's corners: no pixels


def test_trimmed_mean_removes_hot_spots_that_the_mean_keeps():
    wavelength = wavelength_from_energy(60)
    axis = two_theta_axis(2, 10, 400)
    clean = sum(
        pattern(PHASES[name], axis, wavelength=wavelength, crystallite_size_nm=size,
                instrument_fwhm_deg=0.05)
        for name, size in (("CeO2", 10), ("Ni", 8))
    )
    clean /= clean.max()
    detector = Detector((256, 256), pixel_size_mm=0.2, distance_mm=150.0)
    _, counts = azimuthal_integration(np.zeros(detector.shape), axis, detector, return_counts=True)
    seen = counts >= 20

    def error(profile):
        return np.linalg.norm(profile[seen] - clean[seen]) / np.linalg.norm(clean[seen])

    plain = frame(clean, axis, detector, rng=np.random.default_rng(0))
    spotty = frame(clean, axis, detector, hot_spots=10, hot_spot_height=20.0,
                   rng=np.random.default_rng(1))
    assert spotty.max() > 10 * plain.max()  # the spots are there, on strong rings
    spot_angles = detector.two_theta_deg()[spotty - plain > 10]
    ring_angles = peak_tops(axis, clean, 0.1)
    pixel_angle = math.degrees(0.2 / 150)  # 2θ across one pixel near the axis
    assert np.abs(spot_angles[:, None] - ring_angles).min(axis=1).max() < 1.5 * pixel_angle
    assert error(azimuthal_integration(plain, axis, detector)) < 0.03
    mean_error = error(azimuthal_integration(spotty, axis, detector))
    trimmed_error = error(azimuthal_integration(spotty, axis, detector, method="trimmed",
                                                lower=10, upper=90))
    assert mean_error > 0.3 and trimmed_error < 0.03
    # masking the spots' pixels works too
    masked = azimuthal_integration(spotty, axis, detector, mask=spotty > plain + 0.01)
    assert error(masked) < 0.03
    # Poisson noise on top: the trimmed mean still follows the pattern
    noisy = frame(clean, axis, detector, hot_spots=10, counts=1000, rng=np.random.default_rng(1))
    assert error(azimuthal_integration(noisy, axis, detector, method="trimmed")) < 0.05
