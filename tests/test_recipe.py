import json

import pytest

from tomobench.errors import RecipeError
from tomobench.recipe import Recipe, load_recipe, parse_recipe, published_recipes

from conftest import ROOT, TINY, make_recipe


def test_published_recipes_are_valid():
    names = set(published_recipes())
    assert {"demo", "shapes-128", "shapes-32-seed"} <= names
    for name in names:
        assert isinstance(load_recipe(name), Recipe)


def test_shapes_128_is_the_55000_pair_library():
    recipe = load_recipe(ROOT / "recipes" / "shapes-128.yaml")
    assert sum(recipe.splits.values()) == 55_000
    assert (recipe.image_size, recipe.geometry.angles, recipe.detector_count) == (128, 180, 182)
    assert recipe.geometry.oversample == 2


def test_seed_recipe_matches_the_2020_generator():
    source = load_recipe("shapes-32-seed").source
    assert (source.size, source.min_shapes, source.max_shapes) == (32, 3, 10)
    assert (source.min_shape_size, source.max_shape_size) == (3, 10)
    assert source.circular_mask and source.generator == "skimage"
    assert (source.mask_radius, source.mask_center) == (11, "pixel")  # cirmask(image, 5)
    assert source.intensity == (0.0, 1.0) and source.background == pytest.approx(1 / 254)
    assert source.normalize == "each-step"
    assert (source.image_noise_counts, source.smooth_sigma) == (256, 1.0)
    assert load_recipe("shapes-32-seed").geometry.angles == 32


def error_of(data) -> str:
    with pytest.raises(RecipeError) as info:
        parse_recipe(data, origin="r.yaml")
    message = str(info.value)
    assert "\n" not in message
    return message


def test_unknown_field_names_the_path_and_the_allowed_fields():
    message = error_of({**TINY, "geometry": {"angels": 10}})
    assert "r.yaml: geometry.angels: unknown field" in message
    assert "angles" in message and "oversample" in message


def test_unknown_field_inside_a_noise_entry():
    noise = [{"kind": "poisson", "photons": 10, "photon": 3}]
    message = error_of({**TINY, "noise": noise})
    assert "noise[0].photon: unknown field" in message and "min_counts" in message


def test_zero_angles_is_rejected():
    message = error_of({**TINY, "geometry": {"angles": 0}})
    assert "geometry.angles" in message and "greater than or equal to 1" in message
    assert "(got 0)" in message


def test_unknown_choice_lists_the_allowed_values():
    message = error_of({**TINY, "output": {"format": "tiff"}})
    assert "output.format" in message and "'hdf5'" in message and "'zarr'" in message
    message = error_of({**TINY, "source": {**TINY["source"], "kind": "mandelbrot"}})
    assert "source" in message and "'shapes'" in message


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"source": {**TINY["source"], "min_shapes": 6, "max_shapes": 2}}, "min_shapes (6)"),
        ({"source": {**TINY["source"], "max_shape_size": 40}}, "max_shape_size <= size"),
        ({"source": {**TINY["source"], "intensity": [0.5, 1.5]}}, "intensity"),
        ({"source": {**TINY["source"], "allow_overlap": False}}, "needs generator: skimage"),
        ({"downsample": [3]}, "downsample factor 3"),
        ({"splits": {"test": 0}}, "no samples"),
        ({"splits": {"tests": 3}}, "splits.tests"),
        ({"task": "super-resolution", "downsample": []}, "needs at least one downsample"),
        ({"noise": [{"kind": "poisson", "photons": -1}]}, "noise[0].photons"),
        ({"seed": -3}, "seed"),
    ],
)
def test_impossible_recipes(change, words):
    assert words in error_of({**TINY, **change})


XRD = {
    "name": "x", "task": "hyperspectral", "seed": 1, "geometry": {"angles": 8},
    "source": {"kind": "xrdct", "size": 16, "channels": 320, "phases": ["Ni", "CeO2"]},
    "noise": [{"kind": "counting", "counts": 200}], "splits": {"test": 2},
}
EXPERIMENTAL = {
    **TINY, "task": "reconstruction", "downsample": [], "noise": [],
    "source": {"kind": "experimental", "size": 32, "path": "scan.npy",
               "slices": {"train": ["0:4"], "test": ["4:6"]}},
}
INF, NAN = float("inf"), float("nan")


def changed(base, section, **fields):
    return {**base, section: {**base[section], **fields}}


@pytest.mark.parametrize(
    ("data", "words"),
    [
        ({**TINY, "noise": [{"kind": "poisson", "photons": INF}]},
         "noise[0].photons: Input should be a finite number"),
        ({**TINY, "noise": [{"kind": "poisson", "photons": 1e19}]},  # numpy's Poisson: < 9e18
         "noise[0].photons: Input should be less than or equal to 1000000000000000"),
        ({**TINY, "noise": [{"kind": "gaussian", "sigma": NAN}]}, "noise[0].sigma"),
        ({**TINY, "noise": [{"kind": "gaussian", "sigma": INF, "relative": True}]},
         "noise[0].sigma"),
        (changed(TINY, "geometry", detector_spacing=INF), "geometry.detector_spacing"),
        (changed(TINY, "source", image_noise_counts=INF), "source.image_noise_counts"),
        (changed(TINY, "source", intensity=[-0.5, 1.0]), "0 <= low <= high <= 1"),
        ({**TINY, "downsample": [2, 2]}, "downsample factors repeat: [2, 2]"),
        ({**TINY, "splits": {"test": -3}}, "split sizes must be >= 0"),
        (changed(TINY, "geometry", backend="astra-cuda", projector="strip"),
         "'astra-cuda' has only the linear projector"),
        ({**TINY, "noise": [{"kind": "air", "level": 0.1}]}, "needs the 2θ axis of an xrdct"),
        ({**TINY, "source": {"kind": "div2k", "size": 64, "crop": 32}},
         "crop (32) must be at least the size (64)"),
        (changed(EXPERIMENTAL, "source", axes="AA"), "must name A and D, and each axis once"),
        (changed(EXPERIMENTAL, "source", channels=5), "give channels exactly when axes has"),
        (changed(EXPERIMENTAL, "source", dataset="scan.h5"), "give exactly one of dataset"),
        (changed(EXPERIMENTAL, "source", slices={"train": ["0:4"], "test": ["3:6"]}),
         "slices '0:4' of train and '3:6' of test overlap"),
        (changed(EXPERIMENTAL, "source", slices={"train": ["all"], "test": ["3:6"]}),
         "slices 'all' of train and '3:6' of test overlap"),
        (changed(XRD, "source", channels=1), "source.channels"),
        (changed(XRD, "source", two_theta=[12, 1]), "two_theta must satisfy 0 < low < high"),
        (changed(XRD, "source", size_range_nm=[30, 5]), "size_range_nm must be (low, high)"),
        (changed(XRD, "source", strain_range=[0.003, 0.0]), "strain_range must be (low, high)"),
        ({**XRD, "noise": [{"kind": "counting", "counts": INF}]}, "noise[0].counts"),
        # YAML's true/false is no number (pydantic alone reads `angles: true` as 1 angle)
        (changed(TINY, "geometry", angles=True),
         "geometry.angles: Input should be a valid integer, unable to parse string"),
        ({**TINY, "noise": [{"kind": "poisson", "photons": True}]},
         "noise[0].photons: Input should be a valid number"),
        ({**TINY, "seed": False}, "seed: Input should be a valid integer"),
    ],
)
def test_values_out_of_their_range_are_refused(data, words):
    assert words in error_of(data)


def test_the_valid_neighbours_of_refused_recipes_pass():
    """The refusals above are for the bad value, not for the rest of the recipe."""
    parse_recipe(XRD)
    parse_recipe(EXPERIMENTAL)
    parse_recipe(changed(EXPERIMENTAL, "source", slices={"train": ["0:3"], "test": ["3:6"]}))
    parse_recipe({**TINY, "noise": [{"kind": "poisson", "photons": 1e15}]})


def test_storage_options_out_of_range_name_their_field():
    with pytest.raises(RecipeError, match=r"output.chunk: Input should be less than or equal"):
        make_recipe().with_output(chunk=1_000_000)


def test_a_recipe_that_is_not_text_is_one_line(tmp_path):
    path = tmp_path / "binary.yaml"
    path.write_bytes(b"\xff\xfe\x00name: x")
    with pytest.raises(RecipeError, match="binary.yaml: not UTF-8 text"):
        load_recipe(path)


def test_missing_field_and_non_mapping():
    data = {key: value for key, value in TINY.items() if key != "seed"}
    assert "seed: field required" in error_of(data)
    assert "must be a mapping" in error_of([1, 2])


def test_bad_yaml_and_missing_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: x\nsource: [unclosed\n")
    with pytest.raises(RecipeError, match=r"broken.yaml: not valid YAML at line \d"):
        load_recipe(path)
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "absent.yaml")
    with pytest.raises(RecipeError, match="cannot be read: it is a folder, not a regular file"):
        load_recipe(tmp_path)


def test_a_folder_named_like_a_published_recipe_does_not_hide_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "shapes-32-seed").mkdir()  # e.g. what `tomobench demo --folder` made
    assert load_recipe("shapes-32-seed").geometry.angles == 32
    (tmp_path / "demo").write_text(json.dumps({**TINY, "name": "mine"}))  # a file comes first
    assert load_recipe("demo").name == "mine"


def test_hash_ignores_storage_options_and_key_order():
    recipe = make_recipe()
    assert recipe.sha256() == make_recipe(output={"format": "zarr", "chunk": 3}).sha256()
    reordered = parse_recipe(dict(reversed(list(TINY.items()))))
    assert reordered.sha256() == recipe.sha256()
    assert make_recipe(seed=12).sha256() != recipe.sha256()
    assert make_recipe(geometry={"angles": 25}).sha256() != recipe.sha256()


def test_canonical_json_round_trips():
    recipe = make_recipe()
    again = parse_recipe(json.loads(recipe.canonical_json()))
    assert again == recipe and again.sha256() == recipe.sha256()


def test_defaults_are_filled_in():
    recipe = make_recipe(geometry={"angles": 10})
    assert recipe.detector_count == 34  # the masked disc (radius 16) and one pixel each side
    assert recipe.geometry.oversample == 1
    assert recipe.source.largest_shape == 12
