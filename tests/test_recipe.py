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
    assert (recipe.image_size, recipe.geometry.angles, recipe.detector_count) == (128, 180, 128)


def test_seed_recipe_matches_the_2020_generator():
    source = load_recipe("shapes-32-seed").source
    assert (source.size, source.min_shapes, source.max_shapes) == (32, 3, 10)
    assert (source.min_shape_size, source.max_shape_size) == (3, 10)
    assert source.circular_mask and source.normalize and source.generator == "skimage"
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
    with pytest.raises(RecipeError, match="cannot be read: Is a directory"):
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
    assert recipe.detector_count == 32
    assert recipe.geometry.oversample == 1
    assert recipe.source.largest_shape == 12
