"""DIV2K and experimental sources, from files served over loopback through the registry."""

import hashlib
import io
import zipfile

import h5py
import imageio.v3 as iio
import numpy as np
import pytest
from skimage.color import rgb2gray
from skimage.data import shepp_logan_phantom
from skimage.transform import resize

from tomobench.builder import build
from tomobench.errors import RecipeError, TomobenchError
from tomobench.physics.geometry import parallel_beam
from tomobench.physics.projector import Projector
from tomobench.recipe import parse_recipe
from tomobench.store import open_library

from conftest import TINY


@pytest.fixture
def registry(loopback_http, tmp_path, monkeypatch):
    """Serve files and register them: ``add(name, bytes)``; the cache is a fresh folder."""
    monkeypatch.setenv("TOMOBENCH_DATA_DIR", str(tmp_path / "cache"))
    path = tmp_path / "registry.txt"
    lines = []

    def add(name, data):
        (loopback_http.folder / name).write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        lines.append(
            f"{name} sha256:{digest} {loopback_http.url(name)} size={len(data)} "
            "licence=CC0-1.0 citation=test"
        )
        path.write_text("\n".join(lines) + "\n")
        monkeypatch.setenv("TOMOBENCH_REGISTRY", str(path))

    return add


def png_zip(images):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, image in images.items():
            archive.writestr(name, iio.imwrite("<bytes>", image, extension=".png"))
    return buffer.getvalue()


def recipe_of(source, splits, **changes):
    data = {**TINY, "source": source, "splits": splits, "task": "reconstruction",
            "downsample": [], "noise": [], **changes}
    return parse_recipe(data)


@pytest.fixture
def div2k(registry):
    rng = np.random.default_rng(5)
    train = {f"DIV2K_train_HR/{i:04d}.png": rng.integers(0, 256, (40, 56, 3), np.uint8)
             for i in range(1, 7)}
    valid = {f"DIV2K_valid_HR/{i:04d}.png": rng.integers(0, 256, (48, 40, 3), np.uint8)
             for i in (7, 8)}
    registry("train.zip", png_zip(train))
    registry("valid.zip", png_zip(valid))
    return list(train.values()), list(valid.values())


def central(image, size):
    """The reference: central square, rgb2gray, bilinear anti-aliased resize."""
    grey = rgb2gray(image)
    side = min(grey.shape)
    top, left = (grey.shape[0] - side) // 2, (grey.shape[1] - side) // 2
    return resize(grey[top : top + side, left : left + side], (size, size), order=1,
                  anti_aliasing=True)


def test_div2k_splits_take_disjoint_images(div2k, tmp_path):
    train, valid = div2k
    source = {"kind": "div2k", "size": 16, "train_dataset": "train.zip",
              "test_dataset": "valid.zip", "val_images": 2, "crop": None}
    path = build(recipe_of(source, {"train": 4, "val": 2, "test": 2}), tmp_path / "d.h5")
    with open_library(path) as library:
        for split, expected in (("train", train[:4]), ("val", train[4:]), ("test", valid)):
            images = library[f"{split}/images"][...]
            for image, png in zip(images, expected, strict=True):
                np.testing.assert_allclose(image, central(png, 16), atol=1e-6)


def test_div2k_random_crops(div2k, tmp_path):
    source = {"kind": "div2k", "size": 8, "train_dataset": "train.zip",
              "test_dataset": "valid.zip", "val_images": 2, "crop": 24, "crops_per_image": 5}
    path = build(recipe_of(source, {"train": 20, "test": 10}), tmp_path / "d.zarr")
    with open_library(path) as library:
        images = library["train/images"][...]
    assert images.shape == (20, 8, 8) and 0 <= images.min() and images.max() <= 1
    assert len({image.tobytes() for image in images}) == 20  # crops differ


def test_div2k_asking_for_too_many_samples(div2k, tmp_path):
    source = {"kind": "div2k", "size": 8, "train_dataset": "train.zip",
              "test_dataset": "valid.zip", "val_images": 2, "crop": 24, "crops_per_image": 5}
    with pytest.raises(RecipeError, match="asks for 11 samples but DIV2K gives it 2 images"):
        build(recipe_of(source, {"test": 11}), tmp_path / "d.h5")
    assert not list(tmp_path.glob("d.h5*"))


def test_div2k_missing_dataset_is_a_clear_error(registry, tmp_path):
    registry("other.bin", b"x")
    source = {"kind": "div2k", "size": 8, "train_dataset": "nope.zip", "crop": None}
    with pytest.raises(TomobenchError, match="unknown dataset 'nope.zip'") as info:
        build(recipe_of(source, {"test": 1}), tmp_path / "d.h5")
    assert "\n" not in str(info.value)  # the command's one line
    assert not list(tmp_path.glob("d.h5*"))  # found before anything is written


# -- experimental -----------------------------------------------------------------------------

SIZE, ANGLES, DETECTOR = 48, 120, 64


def measured(phantom, *, offset, background, rng):
    """A 'measured' sinogram: off-centre by ``offset`` pixels, per-angle intensity drift,
    and a constant air background."""
    geometry = parallel_beam(SIZE, angles=ANGLES, detector=DETECTOR)
    sinogram = Projector(geometry, backend="matrix").forward(phantom).astype(np.float64)
    spectrum = np.fft.fft(sinogram, axis=1)
    frequencies = np.fft.fftfreq(DETECTOR)
    sinogram = np.fft.ifft(spectrum * np.exp(-2j * np.pi * frequencies * offset), axis=1).real
    drift = rng.uniform(0.8, 1.2, size=(ANGLES, 1))
    return (sinogram * drift + background).astype(np.float32)


@pytest.fixture
def stack(registry, tmp_path):
    rng = np.random.default_rng(2)
    phantom = resize(shepp_logan_phantom(), (SIZE, SIZE), anti_aliasing=True)
    discs = np.zeros((SIZE, SIZE))
    rows, cols = np.mgrid[:SIZE, :SIZE]
    discs[(rows - 20) ** 2 + (cols - 26) ** 2 < 100] = 1.0
    discs[(rows - 30) ** 2 + (cols - 16) ** 2 < 25] = 0.5
    file = tmp_path / "scan.h5"
    with h5py.File(file, "w") as h5:
        h5["slice_a"] = measured(phantom, offset=3.3, background=0.7, rng=rng)
        h5["slice_b"] = measured(discs, offset=-2.6, background=0.4, rng=rng).T  # (D, A)
        h5["flat"] = np.zeros(10)
    registry("scan.h5", file.read_bytes())
    return phantom, discs


def experimental(**changes):
    return {"kind": "experimental", "size": DETECTOR, "dataset": "scan.h5",
            "slices": {"train": ["slice_a"], "test": ["slice_b"]}, "background_edge": 6,
            "augment": False, **changes}


def test_experimental_ground_truth_is_the_object(stack, tmp_path):
    phantom, discs = stack
    source = experimental()
    recipe = recipe_of(source, {"train": 2, "test": 1}, geometry={"angles": 30})
    with pytest.raises(RecipeError, match="rank 2"):  # slice_b is (D, A): axes say AD ...
        build(recipe_of(experimental(axes="SAD"), {"train": 1}), tmp_path / "x.h5")
    path = build(recipe, tmp_path / "e.h5")
    with open_library(path) as library:
        train = library["train/images"][...]
    # the reconstruction grid is the detector's (64²); the object sits in its middle 48²
    pad = (DETECTOR - SIZE) // 2
    truth = phantom / phantom.max()
    inner = train[0][pad : pad + SIZE, pad : pad + SIZE]
    assert np.abs(inner - truth).mean() < 0.05
    assert np.array_equal(train[0], train[1])  # no crop, no augmentation: the same slice


def test_experimental_random_crops_turns_and_flips(stack, tmp_path):
    """With ``crop`` and ``augment``, each image is a square of the slice's reconstruction
    turned by quarter turns and perhaps flipped; the samples do not all take the same."""
    plain = recipe_of(experimental(), {"train": 1}, geometry={"angles": 30})
    with open_library(build(plain, tmp_path / "plain.h5")) as library:
        whole = library["train/images"][0]  # 64², the detector's grid, not resized
    side = 40
    source = experimental(size=side, crop=side, augment=True)
    recipe = recipe_of(source, {"train": 8}, geometry={"angles": 30})
    with open_library(build(recipe, tmp_path / "augmented.h5")) as library:
        images = library["train/images"][...]
    found = set()
    for image in images:
        matches = [
            (top, left, turns, flip)
            for top in range(DETECTOR - side + 1)
            for left in range(DETECTOR - side + 1)
            for turns in range(4)
            for flip in (False, True)
            if np.allclose(
                (lambda s: s[:, ::-1] if flip else s)(
                    np.rot90(whole[top : top + side, left : left + side], turns)
                ),
                image,
                atol=1e-6,
            )
        ]
        assert matches, "an image that is no turned, flipped square of the slice"
        found.add(matches[0])
    assert len({(top, left) for top, left, _, _ in found}) > 4  # eight draws: other squares
    assert {(turns, flip) for _, _, turns, flip in found} - {(0, False)}  # and turns, flips


def test_experimental_axes_and_recentring(stack, tmp_path):
    _, discs = stack
    source = experimental(slices={"test": ["slice_b"]}, axes="DA")
    path = build(recipe_of(source, {"test": 1}, geometry={"angles": 30}), tmp_path / "e.h5")
    with open_library(path) as library:
        image = library["test/images"][0]
    pad = (DETECTOR - SIZE) // 2
    inner = image[pad : pad + SIZE, pad : pad + SIZE]
    # the bright disc is found where it was drawn: the centre of rotation was corrected
    rows, cols = np.nonzero(inner > 0.75 * inner.max())
    assert abs(rows.mean() - 20) < 0.5 and abs(cols.mean() - 26) < 0.5
    assert np.abs(inner - discs).mean() < 0.05


def test_experimental_errors(stack, tmp_path):
    with pytest.raises(RecipeError, match="has no sinogram 'slice_z'"):
        build(recipe_of(experimental(slices={"test": ["slice_z"]}), {"test": 1}),
              tmp_path / "e.h5")
    with pytest.raises(RecipeError, match=r"rank 1 \(shape \(10,\)\)"):
        build(recipe_of(experimental(slices={"test": ["flat"]}), {"test": 1}), tmp_path / "e.h5")
    with pytest.raises(RecipeError, match="names none"):
        build(recipe_of(experimental(), {"val": 1}), tmp_path / "e.h5")
    with pytest.raises(RecipeError, match="splits must not share"):
        recipe_of(experimental(slices={"train": ["slice_a"], "test": ["slice_a"]}), {"test": 1})


def test_an_xrdct_stack_gives_a_hyperspectral_library(registry, tmp_path):
    """Two channels, each its own object, measured off-centre: the cube's channels are the
    objects (up to the one global normalisation), every channel centred alike."""
    rng = np.random.default_rng(4)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    first = ((rows - 20) ** 2 + (cols - 26) ** 2 < 100).astype(float)
    second = 0.5 * ((rows - 30) ** 2 + (cols - 16) ** 2 < 36)
    channels = [measured(image, offset=2.2, background=0.0, rng=np.random.default_rng(9))
                for image in (first, second)]
    stack = np.stack(channels, axis=-1)  # (A, D, C); both channels drift alike
    file = tmp_path / "xrd.h5"
    with h5py.File(file, "w") as h5:
        h5["scan"] = stack
        h5["bad"] = stack[..., :1]
    registry("xrd.h5", file.read_bytes())
    del rng
    source = {"kind": "experimental", "size": DETECTOR, "dataset": "xrd.h5", "axes": "ADC",
              "channels": 2, "slices": {"test": ["scan"]}, "augment": False}
    recipe = recipe_of(source, {"test": 1}, task="hyperspectral",
                       noise=[{"kind": "counting", "counts": 1000}], geometry={"angles": 30})
    path = build(recipe, tmp_path / "x.h5")
    with open_library(path) as library:
        cube = library["test/images"][0]
        assert library["test/sinograms"].shape == (1, 30, recipe.detector_count, 2)
        assert recipe.detector_count == 92  # a reconstruction fills the square: its diagonal
    pad = (DETECTOR - SIZE) // 2
    inner = cube[pad : pad + SIZE, pad : pad + SIZE]
    assert cube.max() == pytest.approx(1.0)
    assert np.abs(inner[..., 0] - first).mean() < 0.05
    assert np.abs(inner[..., 1] - second).mean() < 0.05
    with pytest.raises(RecipeError, match="has 1 channels, the recipe says 2"):
        build(recipe_of({**source, "slices": {"test": ["bad"]}}, {"test": 1},
                        task="hyperspectral"), tmp_path / "y.h5")
    with pytest.raises(RecipeError, match="goes with a hyperspectral source"):
        recipe_of(source, {"test": 1})


def test_local_sinogram_files_of_every_format_give_the_same_library(tmp_path, monkeypatch):
    """The same two measured sinograms as HDF5 and NPZ (one key each), and as one stack
    (S, A, D) in NPY and multi-page TIFF (slices chosen by 'start:stop'): identical images."""
    import imageio.v3 as iio

    monkeypatch.setenv("TOMOBENCH_DATA_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(5)
    phantom = resize(shepp_logan_phantom(), (SIZE, SIZE), anti_aliasing=True)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    disc = ((rows - 20) ** 2 + (cols - 26) ** 2 < 100).astype(np.float64)
    sinograms = np.stack([
        measured(phantom, offset=2.2, background=0.5, rng=rng),
        measured(disc, offset=-1.4, background=0.3, rng=rng),
    ])
    with h5py.File(tmp_path / "scan.h5", "w") as file:
        file["a"], file["b"] = sinograms
    np.savez(tmp_path / "scan.npz", a=sinograms[0], b=sinograms[1])
    np.save(tmp_path / "scan.npy", sinograms)
    iio.imwrite(tmp_path / "scan.tif", sinograms)
    by_key = {"slices": {"train": ["a"], "test": ["b"]}, "axes": "AD"}
    by_range = {"slices": {"train": ["0:1"], "test": ["1:2"]}, "axes": "SAD"}
    libraries = {}
    for name, selection in (("h5", by_key), ("npz", by_key), ("npy", by_range),
                            ("tif", by_range)):
        source = {**experimental(), "dataset": None, "path": str(tmp_path / f"scan.{name}"),
                  **selection}
        recipe = recipe_of(source, {"train": 1, "test": 1}, geometry={"angles": 30})
        with open_library(build(recipe, tmp_path / f"{name}.h5")) as library:
            libraries[name] = {s: library[f"{s}/images"][...] for s in ("train", "test")}
    for name in ("npz", "npy", "tif"):
        for split in ("train", "test"):
            np.testing.assert_array_equal(libraries[name][split], libraries["h5"][split])
    # and the images are the objects: the phantom's slice and the disc's
    pad = (DETECTOR - SIZE) // 2
    inner = libraries["h5"]["test"][0][pad : pad + SIZE, pad : pad + SIZE]
    assert np.abs(inner - disc).mean() < 0.05
    with pytest.raises(RecipeError, match="must be 'all' or 'start:stop'"):
        source = {**experimental(), "dataset": None, "path": str(tmp_path / "scan.npy"),
                  "axes": "SAD", "slices": {"test": ["first"]}}
        build(recipe_of(source, {"test": 1}), tmp_path / "bad.h5")
    with pytest.raises(RecipeError, match=r"'1:5' must lie within the file's 2 sinograms"):
        source = {**experimental(), "dataset": None, "path": str(tmp_path / "scan.npy"),
                  "axes": "SAD", "slices": {"train": ["0:1"], "test": ["1:5"]}}
        build(recipe_of(source, {"test": 1}), tmp_path / "bad.h5")
