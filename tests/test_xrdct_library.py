"""Hyperspectral (XRD-CT) libraries: recipe → cubes → per-channel sinograms → HDF5/Zarr."""

import json

import h5py
import numpy as np
import pytest
import zarr

from tomobench import xrd
from tomobench.builder import build
from tomobench.chunk import make_chunk, project
from tomobench.errors import RecipeError
from tomobench.physics import noise
from tomobench.recipe import parse_recipe

XRDCT = {
    "name": "xrdct-test",
    "task": "hyperspectral",
    "seed": 3,
    "source": {"kind": "xrdct", "size": 24, "phases": ["gamma-Al2O3", "Ni", "CeO2"],
               "channels": 60, "two_theta": [2.0, 8.0],
               "instrument_fwhm_deg": 0.35},  # on this coarse axis peaks span >= 3 channels
    "geometry": {"angles": 20, "backend": "matrix"},
    "noise": [],
    "downsample": [2],
    "splits": {"train": 3, "test": 2},
    "output": {"chunk": 2},
}


def recipe(**changes):
    return parse_recipe({**XRDCT, **changes})


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    return build(recipe(), tmp_path_factory.mktemp("xrd") / "x.h5")


def test_library_reads_with_plain_h5py_with_its_axes(library):
    with h5py.File(library, "r") as file:
        assert file.attrs["task"] == "hyperspectral"
        assert json.loads(file.attrs["phases"]) == ["gamma-Al2O3", "Ni", "CeO2"]
        assert file.attrs["wavelength_angstrom"] == pytest.approx(12.398419843320026 / 60)
        np.testing.assert_allclose(file["two_theta"][...], np.linspace(2, 8, 60))
        images, sinograms = file["train/images"], file["train/sinograms"]
        assert images.shape == (3, 24, 24, 60) and sinograms.shape == (3, 20, 26, 60)
        assert images.chunks == (1, 24, 24, 60)
        assert file["train/images_x2"].shape == (3, 12, 12, 60)
        assert file["train/phase_fractions"].shape == (3, 3, 24, 24)
        assert file["test/crystallite_size_nm"].shape == (2, 3, 24, 24)
        cube = images[...]
        assert cube.min() >= 0 and np.allclose(cube.max(axis=(1, 2, 3)), 1)


def test_zarr_and_hdf5_hold_the_same_bytes(library, tmp_path):
    other = build(recipe(), tmp_path / "x.zarr", workers=1)
    group = zarr.open_group(str(other), mode="r")
    with h5py.File(library, "r") as file:
        for name in ("images", "sinograms", "phase_fractions", "strain", "scale"):
            assert np.array_equal(group[f"train/{name}"][...], file[f"train/{name}"][...])


def test_channel_sinograms_add_up_to_the_sinogram_of_the_summed_image(library):
    with h5py.File(library, "r") as file:
        cube = file["test/images"][...]
        sinograms = file["test/sinograms"][...]
    summed = project(recipe(), cube.sum(axis=-1), backend="matrix")
    np.testing.assert_allclose(sinograms.sum(axis=-1), summed, rtol=1e-4, atol=1e-3)


def test_a_pure_nickel_pixel_peaks_where_braggs_law_says(library):
    with h5py.File(library, "r") as file:
        fractions = file["train/phase_fractions"][...]
        cube = file["train/images"][...]
        two_theta = file["two_theta"][...]
    sample, row, col = np.unravel_index(np.argmax(fractions[:, 1] - fractions[:, 0]
                                                  - fractions[:, 2]), fractions[:, 1].shape)
    assert fractions[sample, 1, row, col] > 0.3
    spectrum = cube[sample, row, col]
    wavelength = 12.398419843320026 / 60
    d111 = 3.524 / np.sqrt(3)  # Ni fcc (111)
    expected = np.degrees(2 * np.arcsin(wavelength / (2 * d111)))
    window = np.abs(two_theta - expected) < 0.5
    peak = two_theta[window][np.argmax(spectrum[window])]
    # within one channel, plus the shift of at most 0.3 % strain (about 0.01° here)
    assert abs(peak - expected) <= (two_theta[1] - two_theta[0]) + 0.02
    assert spectrum[window].max() > 3 * np.median(spectrum)


def test_counting_noise_has_poisson_statistics():
    signal = np.full((400, 400), 2.5)
    noisy = noise.counting(signal, counts=40, rng=np.random.default_rng(1))
    counts = noisy * 40
    assert np.allclose(counts, np.round(counts))
    assert abs(counts.mean() - 100) < 5 * np.sqrt(100 / counts.size)
    assert abs(counts.var() - 100) < 0.03 * 100


def test_noise_and_air_scatter_in_the_build():
    noisy = recipe(noise=[{"kind": "air", "level": 0.1}, {"kind": "counting", "counts": 50}])
    clean = make_chunk(recipe(), "test", 0, 1, backend="matrix")
    dirty = make_chunk(noisy, "test", 0, 1, backend="matrix")
    assert np.array_equal(clean["images"], dirty["images"])
    difference = dirty["sinograms"] - clean["sinograms"]
    # air scatter adds a hump at low 2θ everywhere, even where no ray meets the object
    empty_ray = clean["sinograms"][0, :, 0].max(axis=-1) == 0
    assert empty_ray.any()
    assert difference[0][:, 0][empty_ray].mean() > 0


def test_air_hump_and_counting_noise_follow_the_recipe_and_the_samples_generator():
    """Air scatter: level × the sinogram's peak × a Gaussian in 2θ (centre 10 % into the
    range, FWHM half the range, unless given); then counting noise, Poisson(v · counts) /
    counts, drawn from the sample's generator after its cube: computed here by hand."""
    from tomobench.chunk import draw_samples

    for air in ({"kind": "air", "level": 0.1},
                {"kind": "air", "level": 0.05, "center_deg": 5.0, "fwhm_deg": 1.0}):
        noisy = recipe(noise=[air, {"kind": "counting", "counts": 50}])
        clean = make_chunk(recipe(), "test", 1, 2, backend="matrix")["sinograms"][0]
        rng = np.random.default_rng(np.random.SeedSequence([3, 2, 1]))  # test split, sample 1
        draw_samples(noisy, "test", 1, [rng])  # the cube's own draws come first
        two_theta = np.linspace(2.0, 8.0, 60)
        centre, fwhm = air.get("center_deg", 2.0 + 0.6), air.get("fwhm_deg", 3.0)
        sigma = fwhm / (2 * np.sqrt(2 * np.log(2)))
        hump = np.exp(-0.5 * ((two_theta - centre) / sigma) ** 2).astype(np.float32)
        with_air = clean + air["level"] * float(clean.max()) * hump
        counted = rng.poisson(np.clip(with_air.astype(np.float64), 0, None) * 50) / 50
        built = make_chunk(noisy, "test", 1, 2, backend="matrix")["sinograms"][0]
        assert np.array_equal(built, counted.astype(np.float32))


def test_hyperspectral_recipes_refuse_absorption_noise_and_need_xrdct():
    with pytest.raises(RecipeError, match="use kind 'counting'"):
        recipe(noise=[{"kind": "poisson", "photons": 100}])
    with pytest.raises(RecipeError, match="goes with a hyperspectral source"):
        recipe(task="reconstruction")
    with pytest.raises(RecipeError, match="unknown phase 'Unobtainium'"):
        recipe(source={**XRDCT["source"], "phases": ["Unobtainium"]})


def test_shipped_xrdct_recipes_are_valid():
    from tomobench.recipe import load_recipe

    assert load_recipe("xrdct").channels == 384
    pairs = load_recipe("xrdct-150")
    assert pairs.image_size == 150 and pairs.downsample == (2,)
    assert xrd.PHASES["Ni"].crystal_system == "cubic"


def test_fbp_scores_and_figures_a_hyperspectral_library_channel_by_channel(library, tmp_path):
    from skimage.metrics import peak_signal_noise_ratio

    from tomobench import baselines
    from tomobench.physics.geometry import from_recipe
    from tomobench.score import score, write_submission
    from tomobench.show import show
    from tomobench.store import open_library

    with open_library(library) as lib:
        cubes = baselines.run("fbp", lib, filter="hann")
        truth = lib["test/images"][...]
        sinograms = lib["test/sinograms"][...]
        late = baselines.run("fbp", lib, indices=[1], filter="hann")
    assert cubes.shape == truth.shape == (2, 24, 24, 60) and cubes.dtype == np.float32
    # channel 17 of sample 1 is the FBP of that channel's sinogram alone
    alone = baselines.fbp(sinograms[1, :, :, 17], from_recipe(recipe()), filter="hann")
    np.testing.assert_allclose(cubes[1, :, :, 17], alone, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(late[0], cubes[1])

    report = score(write_submission(tmp_path / "fbp.npy", cubes), library)
    # one MSE over the whole cube, of the reconstruction clipped to [0, 1]
    expected = peak_signal_noise_ratio(truth[0], np.clip(cubes[0], 0, 1), data_range=1)
    assert report.scores["psnr"][0] == pytest.approx(expected, rel=1e-9)
    assert report.baseline_scores["psnr"].shape == (2,)  # FBP beside it, per channel too
    figure = show(library, [tmp_path / "fbp.npy"], samples=2, out=tmp_path / "fig.png")
    assert figure.stat().st_size > 0


def test_a_recipe_gives_phases_in_full_and_the_phase_maps_of_a_masks_file(tmp_path):
    # two phases of the recipe's own: one by its d-spacing, one by its lattice, each filling
    # one half of a disc; every sample has these maps (only sizes and strains are drawn)
    rows, cols = np.mgrid[:24, :24]
    disc = np.hypot(rows - 11.5, cols - 11.5) < 9
    masks = np.stack([disc & (cols < 12), disc & (cols >= 12)]).astype(np.float32)
    np.save(tmp_path / "masks.npy", masks)
    phases = [
        {"name": "d2", "d_list": [[2.0, 100]]},
        {"name": "tetra", "crystal_system": "tetragonal", "a": 3.0, "c": 5.0,
         "reflections": [[1, 0, 1, 100]]},
    ]
    source = {**XRDCT["source"], "phases": phases, "phantom": "masks",
              "masks": str(tmp_path / "masks.npy"), "strain_range": [0, 0]}
    path = build(recipe(source=source), tmp_path / "own.h5")
    with h5py.File(path, "r") as file:
        assert json.loads(file.attrs["phases"]) == ["d2", "tetra"]
        np.testing.assert_array_equal(file["train/phase_fractions"][1], masks)
        cube, two_theta = file["train/images"][0], file["two_theta"][...]
    wavelength = 12.398419843320026 / 60
    d101 = 1 / np.sqrt(1 / 3.0**2 + 1 / 5.0**2)  # tetragonal (101)
    for (row, col), d in (((11, 6), 2.0), ((11, 17), d101)):
        expected = np.degrees(2 * np.arcsin(wavelength / (2 * d)))
        assert abs(two_theta[np.argmax(cube[row, col])] - expected) <= two_theta[1] - two_theta[0]


def test_bad_phase_definitions_and_masks_are_named(tmp_path):
    base = XRDCT["source"]
    cases = [
        ({"phases": [{"name": "x", "crystal_system": "hexagonal", "a": 3.0,
                      "reflections": [[1, 0, 0, 100]]}]}, "needs a positive c"),
        ({"phases": ["Ni", {"name": "Ni", "d_list": [[2.0, 1]]}]}, "phases repeat a name"),
        ({"phantom": "masks"}, "give masks (a .npy file) exactly when phantom is 'masks'"),
    ]
    for change, words in cases:
        with pytest.raises(RecipeError, match="source") as info:
            recipe(source={**base, **change})
        assert words in str(info.value)
    np.save(tmp_path / "wrong.npy", np.ones((2, 24, 24), np.float32))  # 3 phases asked
    wrong = recipe(source={**base, "phantom": "masks", "masks": str(tmp_path / "wrong.npy")})
    with pytest.raises(RecipeError, match=r"source.masks: .*expected \(3, 24, 24\)"):
        build(wrong, tmp_path / "w.h5")
    missing = recipe(source={**base, "phantom": "masks", "masks": str(tmp_path / "none.npy")})
    with pytest.raises(RecipeError, match="source.masks: cannot read"):
        build(missing, tmp_path / "m.h5")
    assert not list(tmp_path.glob("*.h5*"))


def test_baselines_refuse_non_finite_sinograms_of_a_damaged_library(library, tmp_path):
    import shutil

    from tomobench import baselines
    from tomobench.errors import StoreError
    from tomobench.store import open_library

    damaged = shutil.copy(library, tmp_path / "damaged.h5")
    with h5py.File(damaged, "r+") as file:
        file["test/sinograms"][1, 0, 0, 0] = np.nan
    with open_library(damaged) as opened:
        with pytest.raises(StoreError, match=r"test/sinograms\[1\] holds 1 non-finite"):
            baselines.run("fbp", opened, split="test")
        assert baselines.run("fbp", opened, split="test", indices=[0]).shape[0] == 1
