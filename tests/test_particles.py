"""The particles source: catalyst bodies in one contrast."""

import h5py
import numpy as np
import pytest

from tomobench.errors import RecipeError
from tomobench.physics.geometry import circular_mask, from_recipe
from tomobench.physics.projector import get_projector
from tomobench.recipe import load_recipe, parse_recipe
from tomobench.sources import sampler

from conftest import TINY

PARTICLES = {"kind": "particles", "size": 32}


def particles_recipe(**fields):
    """The tiny test recipe with a particles source, clean and without downsampling."""
    data = {**TINY, "task": "reconstruction", "noise": [], "downsample": []}
    return parse_recipe({**data, "source": {**PARTICLES, **fields}}, origin="test recipe")


def draw(seed=0, **fields):
    recipe = particles_recipe(**fields)
    return sampler(recipe.source, "train")(0, np.random.default_rng(seed))


def test_images_are_float32_in_unit_range_inside_the_field_of_view():
    outside = ~circular_mask(32)
    for seed in range(20):
        image = draw(seed)
        assert image.dtype == np.float32 and image.shape == (32, 32)
        assert image.min() >= 0 and 0 < image.max() <= 1
        assert not image[outside].any()


def test_one_phase_is_its_contrast_inside_each_body_and_zero_between():
    for seed in range(10):
        image = draw(seed, contrasts=[0.6])
        values = np.unique(image)
        assert values.min() == 0 and values.max() == pytest.approx(0.6, abs=1e-7)
        inside = np.isclose(image, 0.6, atol=1e-7)
        edge = (image > 0) & ~inside
        assert inside.sum() > edge.sum() > 0  # solid bodies, one-pixel anti-aliased rims


def test_contrasts_weight_the_phases():
    # A support of contrast 0 leaves only the carried phases: cores, shells or spreads of
    # value at most loading × contrast, here exactly 0.5 × 0.8 inside them.
    for seed in range(10):
        image = draw(seed, contrasts=[0.0, 0.8], loading=[0.5, 0.5])
        assert image.max() == pytest.approx(0.4, abs=1e-6)
    bright, dim = draw(4, contrasts=[1.0, 1.0]), draw(4, contrasts=[0.5, 0.5])
    np.testing.assert_allclose(dim, bright / 2, atol=1e-7)  # the same bodies, half as bright


def test_body_count_and_size_follow_the_recipe():
    from scipy import ndimage

    for seed in range(10):
        image = draw(seed, contrasts=[1.0], particles=[3, 3], radius=[0.1, 0.1])
        labels, count = ndimage.label(image > 0.5)
        assert count == 3
        areas = ndimage.sum_labels(np.ones_like(image), labels, range(1, count + 1))
        # semi-axes 3.2 px and 3.2 × aspect (0.7–1): area π r² aspect
        assert np.all((areas > np.pi * 3.2**2 * 0.6) & (areas < np.pi * 3.2**2 * 1.15))


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"contrasts": [0.3, 1.5]}, "contrasts must lie in [0, 1]"),
        ({"particles": [4, 2]}, "particles must satisfy"),
        ({"radius": [0.1, 0.6]}, "radius must satisfy"),
        ({"loading": [0.0, 1.0]}, "loading must satisfy"),
        ({"contrasts": []}, "source.contrasts"),
        ({"colour": 1}, "source.colour: unknown field"),
    ],
)
def test_bad_fields_are_named(fields, field):
    with pytest.raises(RecipeError, match="source") as info:
        particles_recipe(**fields)
    assert field in str(info.value)


def test_a_library_of_particles_holds_their_sinograms(tmp_path):
    from tomobench.builder import build

    recipe = particles_recipe()
    path = build(recipe, tmp_path / "particles.h5")
    with h5py.File(path, "r") as file:
        images, sinograms = file["test/images"][...], file["test/sinograms"][...]
    assert images.shape == (9, 32, 32) and sinograms.shape == (9, 24, 34)
    projector = get_projector(from_recipe(recipe), backend="astra-cpu")
    np.testing.assert_allclose(sinograms, projector.forward(images), rtol=1e-5, atol=1e-5)


def test_the_published_recipe_shares_the_geometry_of_shapes_32_seed():
    particles, shapes = load_recipe("particles-32"), load_recipe("shapes-32-seed")
    assert particles.source.kind == "particles"
    assert particles.geometry == shapes.geometry and particles.noise == shapes.noise
    assert particles.splits == shapes.splits and particles.image_size == shapes.image_size
