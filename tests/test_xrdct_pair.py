"""Paired XRD-CT + absorption (micro-CT) libraries: ``source.absorption`` stores, beside each
cube, the absorption image of the same phantom slice, Σ_phase μ_phase · fraction (cm⁻¹)."""

import copy
import json

import h5py
import numpy as np
import pytest
import zarr

from tomobench.builder import build
from tomobench.chunk import draw_samples, make_chunk, sample_rngs
from tomobench.errors import RecipeError
from tomobench.recipe import load_recipe, parse_recipe

from conftest import SMALL_XRDCT, run_cli

MU = {"gamma-Al2O3": 2.79, "Ni": 92.0, "CeO2": 66.1}  # cm⁻¹ at 30 keV (xrdct-pair-150)
PHASES = SMALL_XRDCT["source"]["phases"]

HASHES_BEFORE_ABSORPTION = {  # Recipe.sha256() of published recipes, before the field existed
    "xrdct-150": "93173697c957336beaefb34006757d6e41e0ea31b9d64e57746110c221da55c6",
    "tiny": "338021200b1f359e093a1dd5663847b19c6826aec256be7465b21f066d523edc",
}


def paired(absorption=None, **changes):
    """SMALL_XRDCT with ``source.absorption`` (μ of MU, pixels of 25 µm, no noise unless
    given) and top-level fields replaced."""
    data = copy.deepcopy(SMALL_XRDCT)
    data["source"]["absorption"] = {
        "coefficients": dict(MU),
        "pixel_size_um": 25.0,
        **(absorption or {}),
    }
    data.update(changes)
    return data


def by_hand(fractions: np.ndarray) -> np.ndarray:
    """Σ_p μ_p · fractions[p] of stored (N, P, H, W) float32 fractions, float64."""
    mu = np.array([MU[name] for name in PHASES])
    return np.einsum("p,nphw->nhw", mu, fractions.astype(np.float64))


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return build(parse_recipe(paired()), tmp_path_factory.mktemp("pair") / "pair.h5")


def test_the_absorption_image_is_the_cubes_phase_maps_weighted_by_mu(library):
    with h5py.File(library, "r") as file:
        absorption = file["test/absorption"][...]
        fractions = file["test/phase_fractions"][...]
        cube = file["test/images"][...]
        assert file["test/absorption"].chunks == (1, 16, 16)
        assert file.attrs["absorption_unit"].startswith("cm^-1")
        assert json.loads(file.attrs["absorption_coefficients"]) == MU
        assert file.attrs["pixel_size_um"] == 25.0
    assert absorption.shape == (3, 16, 16) and absorption.dtype == np.float32
    np.testing.assert_allclose(absorption, by_hand(fractions), rtol=2e-7, atol=0)
    # one phantom: zero exactly where the cube is zero in every channel (outside the sample),
    # positive wherever a phase is
    empty = (cube == 0).all(axis=-1)
    occupied = fractions.sum(axis=1) > 0
    assert empty.any() and occupied.any()
    np.testing.assert_array_equal(empty, ~occupied)
    assert (absorption[empty] == 0).all() and (absorption[occupied] > 0).all()
    # fractions sum to at most 1: never above the largest μ
    assert absorption.max() <= max(MU.values()) * (1 + 1e-6)


def test_library_and_info_read_the_absorption_image(library):
    from typer.testing import CliRunner

    from tomobench.cli import app
    from tomobench.store import open_library

    with open_library(library) as lib:
        lib.check_split("test")
        assert lib["test/absorption"].shape == (3, 16, 16)
        assert lib.recipe.source.absorption.coefficients == MU
    result = CliRunner().invoke(app, ["info", str(library)])
    assert result.exit_code == 0, result.output
    assert "absorption" in result.output and "3 × 16 × 16" in result.output
    assert "pixel 25 µm" in result.output


def test_absorption_noise_has_the_requested_spread_and_touches_nothing_else():
    noise = 0.05
    counted = {
        "splits": {"test": 6},
        "noise": [{"kind": "air", "level": 0.1}, {"kind": "counting", "counts": 50}],
    }
    recipe = parse_recipe(paired({"noise": noise}, **counted))
    chunk = make_chunk(recipe, "test", 0, 6, backend="matrix")
    residual = chunk["absorption"].astype(np.float64) - by_hand(chunk["phase_fractions"])
    sigma = noise * max(MU.values())  # 4.6 cm⁻¹
    # 1,536 draws: the sample std is within 4 % of sigma with overwhelming probability
    assert residual.std() == pytest.approx(sigma, rel=0.1)
    assert abs(residual.mean()) < 5 * sigma / np.sqrt(residual.size)
    outside = chunk["phase_fractions"].sum(axis=1) == 0
    assert residual[outside].std() == pytest.approx(sigma, rel=0.2)  # in the air too
    # a child generator draws it: the cube, its sinograms and their counting noise (drawn
    # from the sample's generator after the cube) are the same bytes as without the
    # absorption image, or with it noiseless
    plain = copy.deepcopy(SMALL_XRDCT) | counted
    for other in (parse_recipe(plain), parse_recipe(paired(**counted))):
        again = make_chunk(other, "test", 0, 6, backend="matrix")
        for name in ("images", "sinograms", "phase_fractions", "strain", "scale"):
            assert np.array_equal(again[name], chunk[name]), name


def test_noisy_pairs_are_the_same_bytes_in_any_chunking_workers_and_format(tmp_path):
    recipe = parse_recipe(paired({"noise": 0.02}, splits={"train": 4, "test": 3}))
    one = build(recipe, tmp_path / "one.h5", workers=1)
    again = build(recipe, tmp_path / "again.h5", workers=1)
    other = build(recipe.with_output(chunk=1), tmp_path / "two.zarr", workers=2)
    group = zarr.open_group(str(other), mode="r")
    with h5py.File(one, "r") as first, h5py.File(again, "r") as second:
        for split in ("train", "test"):
            for name in ("absorption", "images", "sinograms", "phase_fractions"):
                key = f"{split}/{name}"
                assert first[key][...].tobytes() == second[key][...].tobytes(), key
                assert first[key][...].tobytes() == group[key][...].tobytes(), key
        alone = make_chunk(recipe, "train", 2, 3, backend="matrix")["absorption"]
        assert alone.tobytes() == first["train/absorption"][2:3].tobytes()
        assert not np.array_equal(first["train/absorption"][0], first["test/absorption"][0])


@pytest.mark.parametrize(
    ("coefficients", "words"),
    [
        ({"gamma-Al2O3": 2.79, "CeO2": 66.1}, ("source.absorption", "missing 'Ni'")),
        ({**MU, "Pt": 80.0}, ("source.absorption", "not a phase of the source: 'Pt'")),
        ({**MU, "Ni": -92.0}, ("source.absorption.coefficients.Ni", "greater than or equal to 0")),
    ],
)
def test_a_bad_coefficient_is_one_line_naming_the_field_and_exit_2(tmp_path, coefficients, words):
    path = tmp_path / "bad.yaml"
    path.write_text(json.dumps(paired({"coefficients": coefficients})))  # JSON is YAML
    result = run_cli("build", path, "--out", tmp_path / "bad.h5")
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]
    assert not list(tmp_path.glob("bad.h5*"))


def test_other_bad_absorption_fields_are_named():
    cases = [
        ({"pixel_size_um": 0}, "source.absorption.pixel_size_um: Input should be greater than 0"),
        ({"noise": -0.1}, "source.absorption.noise: Input should be greater than or equal to 0"),
        ({"coefficients": {**MU, "Ni": True}}, "source.absorption.coefficients.Ni: Input should"),
        ({"coefficients": {**MU, "Ni": float("nan")}}, "coefficients.Ni: Input should be a"),
        ({"colour": "red"}, "source.absorption.colour: unknown field (allowed here: coefficients"),
    ]
    for change, words in cases:
        with pytest.raises(RecipeError) as info:
            parse_recipe(paired(change))
        assert words in str(info.value)
    without_pixels = paired()
    del without_pixels["source"]["absorption"]["pixel_size_um"]
    with pytest.raises(RecipeError, match="source.absorption.pixel_size_um: field required"):
        parse_recipe(without_pixels)
    # an unknown phase is named as such, not as a missing coefficient
    unknown = paired()
    unknown["source"]["phases"] = ["Unobtainium"]
    with pytest.raises(RecipeError, match="unknown phase 'Unobtainium'"):
        parse_recipe(unknown)


def test_recipes_without_absorption_keep_their_hash_and_their_arrays():
    for name, digest in HASHES_BEFORE_ABSORPTION.items():
        assert load_recipe(name).sha256() == digest, name
    plain = load_recipe("xrdct-150")
    assert plain.source.absorption is None
    assert "absorption" not in plain.canonical_json()
    assert "absorption" not in make_chunk(
        parse_recipe(SMALL_XRDCT), "test", 0, 1, backend="matrix"
    )
    # the field is hashed when given; the order of the coefficients is not
    with_it = parse_recipe(paired())
    reordered = paired({"coefficients": dict(reversed(list(MU.items())))})
    assert with_it.sha256() != parse_recipe(SMALL_XRDCT).sha256()
    assert parse_recipe(reordered).sha256() == with_it.sha256()
    assert parse_recipe(paired({"noise": 0.01})).sha256() != with_it.sha256()


def test_the_published_pair_recipe():
    recipe = load_recipe("xrdct-pair-150")
    source = recipe.source
    assert (recipe.image_size, recipe.downsample, source.channels) == (150, (2,), 192)
    assert recipe.splits == {"train": 200, "val": 20, "test": 20}
    assert (recipe.output.chunk, recipe.output.format) == (4, "hdf5")
    assert set(source.absorption.coefficients) == set(source.phase_names)
    # the channels of xrdct-150's axis from 84 on: the same channel width
    reference = load_recipe("xrdct-150").source
    full = np.linspace(*reference.two_theta, reference.channels)
    np.testing.assert_allclose(
        np.linspace(*source.two_theta, source.channels), full[84:276], atol=1e-6
    )
    # one slice: its absorption image is its phase maps' μ, plus 0.5 % of μ(Ni) of noise
    drawn = draw_samples(recipe, "test", 0, sample_rngs(recipe, "test", 0, 1))
    mu = np.array([source.absorption.coefficients[p] for p in source.phase_names])
    clean = np.einsum("p,nphw->nhw", mu, drawn["phase_fractions"].astype(np.float64))
    assert drawn["absorption"].shape == (1, 150, 150)
    residual = drawn["absorption"] - clean
    assert residual.std() == pytest.approx(0.005 * 92.0, rel=0.05)
