import math
import re

import numpy as np
import pytest
import yaml
from scipy.special import erf
from scipy.stats import trim_mean

from tomobench.errors import RecipeError
from tomobench.recipe import PhaseDefinition, load_recipe, parse_recipe, published_recipes
from tomobench.xrd import (
    CU_KALPHA_ANGSTROM,
    PHASES,
    Detector,
    Phase,
    azimuthal_integration,
    bragg_two_theta,
    cube,
    frame,
    lorentz_polarisation,
    narrowest_fwhm_deg,
    pattern,
    patterns,
    phase_maps,
    pseudo_voigt,
    relative_intensities,
    two_theta_axis,
    wavelength_from_energy,
)
from tomobench.xrd.detector import _add_hot_spots

CU_KALPHA = 1.5406  # Å
WAVELENGTH_60KEV = 12.398419843320026 / 60  # Å


def lp_by_hand(wavelength, d):
    """The powder Lorentz–polarisation factor (1 + cos²2θ) / (sin²θ cos θ) of a reflection,
    written out with math alone."""
    theta = math.asin(wavelength / (2 * d))
    return (1 + math.cos(2 * theta) ** 2) / (math.sin(theta) ** 2 * math.cos(theta))


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
    with pytest.raises(ValueError, match=r"\(0 0 0\) is no reflection"):
        Phase("x", "cubic", a=3.0, reflections=[(1, 1, 1, 100), (0, 0, 0, 5)])


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


# --- Lorentz–polarisation: card intensities (Cu Kα) at another wavelength ----------------


def test_lorentz_polarisation_factor_by_hand():
    # 2θ = 90°: (1 + 0) / (sin²45° cos 45°) = 2√2; 2θ = 60°: (1 + 1/4) / (1/4 · √3/2) = 10/√3
    assert lorentz_polarisation(90.0) == pytest.approx(2 * math.sqrt(2), rel=1e-12)
    assert lorentz_polarisation(60.0) == pytest.approx(10 / math.sqrt(3), rel=1e-12)
    d = 3.524 / math.sqrt(3)  # Ni (111)
    two_theta = math.degrees(2 * math.asin(CU_KALPHA / (2 * d)))
    assert lorentz_polarisation(two_theta) == pytest.approx(lp_by_hand(CU_KALPHA, d), rel=1e-12)


def test_card_intensities_are_carried_to_60_kev_by_the_lp_factor():
    """Ni (200) / (111): 42 / 100 on the Cu Kα card, 42 / 100 · LP ratio at 60 keV."""
    nickel = PHASES["Ni"]
    d111, d200 = 3.524 / math.sqrt(3), 3.524 / 2
    card_ratio = 42 / 100
    factor_111 = lp_by_hand(WAVELENGTH_60KEV, d111) / lp_by_hand(CU_KALPHA, d111)
    factor_200 = lp_by_hand(WAVELENGTH_60KEV, d200) / lp_by_hand(CU_KALPHA, d200)
    expected_ratio = card_ratio * factor_200 / factor_111
    # LP: (111) 772.56 at 60 keV, 11.373 at Cu Kα (× 67.93); (200) 578.67, 8.0379 (× 71.99)
    assert expected_ratio == pytest.approx(0.42 * 71.99 / 67.93, abs=1e-4)
    # the intensities themselves: the card's at Cu Kα, the card's × LP ratio at 60 keV
    _, at_card = relative_intensities(nickel, wavelength=CU_KALPHA)
    _, at_60 = relative_intensities(nickel, wavelength=WAVELENGTH_60KEV)
    assert np.array_equal(at_card, [r[3] for r in nickel.reflections])
    assert at_60[0] == pytest.approx(100 * factor_111, rel=1e-12)
    assert at_60[1] / at_60[0] == pytest.approx(expected_ratio, rel=1e-12)
    # and in the patterns: peak areas (Gaussian peaks, unit area × intensity), before and after
    for wavelength, ratio, window in (
        (CU_KALPHA, card_ratio, (42.0, 53.0)),
        (WAVELENGTH_60KEV, expected_ratio, (5.3, 7.2)),
    ):
        axis = two_theta_axis(*window, 22001)
        profile = pattern(nickel, axis, wavelength=wavelength, crystallite_size_nm=20, eta=0.0)
        centres = bragg_two_theta([d111, d200], wavelength=wavelength)
        middle = centres.mean()
        area_111 = np.trapezoid(profile[axis < middle], axis[axis < middle])
        area_200 = np.trapezoid(profile[axis >= middle], axis[axis >= middle])
        assert area_200 / area_111 == pytest.approx(ratio, rel=1e-4)


def test_the_card_wavelength_of_a_phase():
    default = PhaseDefinition(name="x", d_list=[(2, 1)]).card_wavelength
    assert CU_KALPHA_ANGSTROM == CU_KALPHA == default
    lines = [(2.0, 100), (1.2, 50)]
    synchrotron = Phase("s", "cubic", d_list=lines, card_wavelength=WAVELENGTH_60KEV)
    _, unchanged = relative_intensities(synchrotron, wavelength=WAVELENGTH_60KEV)
    assert np.array_equal(unchanged, [100, 50])
    _, at_cu = relative_intensities(synchrotron, wavelength=CU_KALPHA)
    expected = [i * lp_by_hand(CU_KALPHA, d) / lp_by_hand(WAVELENGTH_60KEV, d) for d, i in lines]
    assert np.allclose(at_cu, expected, rtol=1e-12)
    # a line that Cu Kα cannot reach (d < 1.5406 / 2) cannot carry a Cu Kα card value
    with pytest.raises(ValueError, match=r"d = 0\.6000 Å does not diffract at card_wavelength"):
        Phase("short", "cubic", d_list=[(2.0, 100), (0.6, 10)])
    with pytest.raises(ValueError, match=r"reflection \(6 2 2\) of d = 0\.5000 Å"):
        Phase("fine", "cubic", a=3.3166, reflections=[(1, 1, 1, 100), (6, 2, 2, 5)])
    assert Phase("short", "cubic", d_list=[(0.6, 10)], card_wavelength=0.5).card_wavelength == 0.5
    # in a recipe: the field reaches the phase, and the refusal names the source
    base = {
        "name": "x", "task": "hyperspectral", "seed": 1, "geometry": {"angles": 8},
        "noise": [], "splits": {"test": 1},
        "source": {"kind": "xrdct", "size": 16, "channels": 800, "two_theta": [1.0, 12.0]},
    }
    own = {"name": "short", "d_list": [[0.6, 10]], "card_wavelength": 0.5}
    recipe = parse_recipe({**base, "source": {**base["source"], "phases": [own]}})
    assert recipe.source.phases[0].to_phase().card_wavelength == 0.5
    del own["card_wavelength"]
    with pytest.raises(RecipeError, match="source.*does not diffract at card_wavelength"):
        parse_recipe({**base, "source": {**base["source"], "phases": [own]}})


# --- the sampling rule: the narrowest peak spans at least 3 channels ---------------------


def narrowest_by_hand(d, size_nm, instrument):
    theta = math.asin(WAVELENGTH_60KEV / (2 * d))
    scherrer = math.degrees(0.9 * WAVELENGTH_60KEV / (10 * size_nm * math.cos(theta)))
    return math.sqrt(scherrer**2 + instrument**2)


def test_narrowest_fwhm_by_hand():
    phases = [PHASES["Ni"], PHASES["CeO2"]]
    options = {"wavelength": WAVELENGTH_60KEV, "crystallite_size_nm": 30.0}
    # the lowest reflection in 1–12° is CeO2 (111) at 3.79°; above 4° it is CeO2 (200), 4.38°
    for low, d in ((1.0, 5.411 / math.sqrt(3)), (4.0, 5.411 / 2)):
        for instrument in (0.0, 0.05):
            found = narrowest_fwhm_deg(phases, (low, 12.0), instrument_fwhm_deg=instrument,
                                       **options)
            assert found == pytest.approx(narrowest_by_hand(d, 30.0, instrument), rel=1e-12)
    assert narrowest_fwhm_deg(phases, (1.0, 12.0), instrument_fwhm_deg=0.0, **options) == (
        pytest.approx(0.0355, abs=1e-4)
    )
    assert narrowest_fwhm_deg(phases, (20.0, 30.0), instrument_fwhm_deg=0.05, **options) == (
        math.inf
    )
    # the width the patterns have: CeO2 (111) alone, Gaussian, measured on a fine axis
    axis = two_theta_axis(3.5, 4.1, 6001)
    profile = pattern(PHASES["CeO2"], axis, wavelength=WAVELENGTH_60KEV, crystallite_size_nm=30,
                      eta=0.0, instrument_fwhm_deg=0.05)
    expected = narrowest_fwhm_deg(phases, (1.0, 12.0), instrument_fwhm_deg=0.05, **options)
    assert measured_fwhm(axis, profile) == pytest.approx(expected, rel=0.002)


SAMPLING = {
    "name": "x", "task": "hyperspectral", "seed": 1, "geometry": {"angles": 8}, "noise": [],
    "splits": {"test": 1},
    "source": {"kind": "xrdct", "size": 16, "phases": ["gamma-Al2O3", "Ni", "CeO2"],
               "energy_kev": 60, "two_theta": [1.0, 12.0], "channels": 250,
               "size_range_nm": [5, 30], "instrument_fwhm_deg": 0.05},
}


def sampled(**source):
    return {**SAMPLING, "source": {**SAMPLING["source"], **source}}


def test_a_recipe_whose_narrowest_peak_spans_under_3_channels_is_refused():
    # the published recipes' former source: γ-Al2O3 (111) at 30 nm, 0.061° wide, step 0.044°
    fwhm = narrowest_by_hand(7.90 / math.sqrt(3), 30, 0.05)
    step = 11 / 249
    assert fwhm / step == pytest.approx(1.388, abs=0.0005)
    with pytest.raises(RecipeError) as info:
        parse_recipe(sampled(), origin="r.yaml")
    message = str(info.value)
    assert "\n" not in message and message.startswith("r.yaml: source: ")
    assert f"FWHM of {fwhm:.4g}°, only {math.floor(100 * fwhm / step) / 100} channels" in message
    assert "0.06134°, only 1.38 channels" in message
    # each way out that the message names is enough alone, and none is more than needed
    channels = int(re.search(r"give at least (\d+) channels", message)[1])
    width = float(re.search(r"2θ range at most ([\d.]+)° wide", message)[1])
    instrument = float(re.search(r"instrument_fwhm_deg at least ([\d.]+)", message)[1])
    largest = float(re.search(r"size_range_nm\) of at most ([\d.]+) nm", message)[1])
    assert channels == math.ceil(3 * 11 / fwhm) + 1 == 540
    for enough in (
        {"channels": channels},
        {"two_theta": [1.0, 1.0 + width]},
        {"instrument_fwhm_deg": instrument},
        {"size_range_nm": [5, largest]},
    ):
        parse_recipe(sampled(**enough))
    for short in ({"channels": channels - 1}, {"instrument_fwhm_deg": instrument - 0.002},
                  {"size_range_nm": [5, largest + 0.2]}):
        with pytest.raises(RecipeError, match=r"only 2\.9\d channels"):
            parse_recipe(sampled(**short))
    # only peaks inside the 2θ range count (γ-Al2O3 starts at 2.60°), and a phase given in
    # full counts too: a d of 5 Å peaks at 2.37°
    own = {"name": "wide-d", "d_list": [[5.0, 100]]}
    parse_recipe(sampled(two_theta=[1.0, 2.5], channels=30, phases=["gamma-Al2O3"]))
    with pytest.raises(RecipeError, match="source: the narrowest peak .* only 1.18 channels"):
        parse_recipe(sampled(two_theta=[1.0, 2.5], channels=30, phases=["gamma-Al2O3", own]))


def test_every_published_xrdct_recipe_samples_its_narrowest_peak_with_3_channels():
    xrdct = [
        name for name, path in published_recipes().items()
        if yaml.safe_load(path.read_text())["source"]["kind"] == "xrdct"
    ]
    assert {"xrdct", "xrdct-150", "xrdct-pair-150"} <= set(xrdct)
    for name in xrdct:
        source = load_recipe(name).source
        low, high = source.two_theta
        # the lowest-angle reflection inside the range (the largest d that lands in it)
        lowest_d = max(
            d
            for p in source.phase_names
            for d in PHASES[p].d_spacings()[0]
            if low <= math.degrees(2 * math.asin(WAVELENGTH_60KEV / (2 * d))) <= high
        )
        fwhm = narrowest_by_hand(lowest_d, source.size_range_nm[1], source.instrument_fwhm_deg)
        assert fwhm / ((high - low) / (source.channels - 1)) >= 3, name
    # and so does a recipe that leaves the source's fields at their defaults: γ-Al2O3 (111)
    # at 30 nm, instrument 0.1°, 400 channels over 1–12°
    defaults = parse_recipe({**SAMPLING, "source": {"kind": "xrdct", "size": 16}}).source
    assert (defaults.channels, defaults.two_theta, defaults.instrument_fwhm_deg) == (
        400, (1.0, 12.0), 0.1
    )
    fwhm = narrowest_by_hand(7.90 / math.sqrt(3), 30, 0.1)
    assert fwhm / (11 / 399) == pytest.approx(3.85, abs=0.005)


# --- phantoms -----------------------------------------------------------------------------


def reference_pattern(phase, axis, wavelength, size_nm, strain, eta, instrument):
    """The pattern model written out reflection by reflection, for a hand check; the card
    intensities (Cu Kα) carried to ``wavelength`` by the Lorentz–polarisation factor."""
    total = np.zeros_like(axis)
    for d, card in zip(*phase.d_spacings()):
        ratio = wavelength / (2 * d * (1 + strain))
        if ratio >= 1:
            continue
        intensity = card * lp_by_hand(wavelength, d) / lp_by_hand(CU_KALPHA, d)
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


def test_hot_spots_at_every_edge_and_corner_are_the_cropped_gaussian():
    """A spot centred near an edge adds the part of its Gaussian inside the frame: the same
    values as on a frame 20 pixels larger on every side, cropped (computed here by hand)."""
    shape, sigma, height = (9, 11), 1.5, 7.0
    reach = math.ceil(4 * sigma)  # 6: a spot covers ±6 pixels, more than half the frame
    pattern_1d = np.array([0.0, 1.0, 0.0])  # one ring, on bin 1
    corners = [(0, 0), (0, 10), (8, 0), (8, 10)]
    edges = [(0, 5), (8, 5), (4, 0), (4, 10), (7, 9), (1, 1)]
    for row, col in corners + edges:
        bins = np.full(shape, -1)
        bins[row, col] = 1  # the only pixel of the ring: the spot's centre
        base = np.arange(99, dtype=np.float64).reshape(shape)
        image = base.copy()
        _add_hot_spots(image, pattern_1d, bins, 1, height, sigma, np.random.default_rng(0))
        larger = np.zeros((shape[0] + 40, shape[1] + 40))
        for r in range(row - reach, row + reach + 1):
            for c in range(col - reach, col + reach + 1):
                distance2 = (r - row) ** 2 + (c - col) ** 2
                larger[r + 20, c + 20] = height * math.exp(-distance2 / (2 * sigma**2))
        expected = base + larger[20:-20, 20:-20]
        np.testing.assert_allclose(image, expected, rtol=1e-14, atol=0)
        assert (image - base).max() == height  # the centre, always inside


def test_frames_with_many_hot_spots_near_the_edges_never_raise():
    """Rings that cross the edges of a small detector: spots on them are cropped."""
    detector = Detector((24, 20), pixel_size_mm=0.2, distance_mm=100.0)
    axis = two_theta_axis(0.0, 2.0, 201)
    rings = np.exp(-0.5 * ((axis[:, None] - [0.8, 1.15, 1.5, 1.75]) / 0.02) ** 2).sum(axis=1)
    clean = frame(rings, axis, detector, rng=np.random.default_rng(0))
    border = np.ones(detector.shape, dtype=bool)
    border[1:-1, 1:-1] = False
    sigma = 1.5
    spot_area = 2 * math.pi * sigma**2  # the volume of one whole spot of unit height
    touched = 0
    for seed in range(40):
        spotty = frame(rings, axis, detector, hot_spots=30, hot_spot_sigma_px=sigma,
                       rng=np.random.default_rng(seed))
        added = spotty - clean
        assert added.min() >= 0
        assert 0 < added.sum() <= 30 * 20 * spot_area * (1 + 1e-9)  # peak 20 × the maximum
        touched += added[border].max() > 1
    assert touched == 40  # the spots reach the edges in every frame
