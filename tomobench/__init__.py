"""tomobench: benchmark libraries and scoring for machine-learning tomography."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("tomobench")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

from tomobench.builder import build
from tomobench.errors import PhysicsError, RecipeError, StoreError, TomobenchError
from tomobench.quickstart import DemoResult, demo
from tomobench.recipe import Recipe, load_recipe
from tomobench.store import Library, open_library

__all__ = [
    "DemoResult",
    "Library",
    "PhysicsError",
    "Recipe",
    "RecipeError",
    "StoreError",
    "TomobenchError",
    "__version__",
    "build",
    "demo",
    "load_recipe",
    "open_library",
]
