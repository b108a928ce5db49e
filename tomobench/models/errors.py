"""Errors of the models package that a user can fix (one line each, exit code 2).

They subclass the package-wide classes, so ``except RecipeError`` and ``except
TomobenchError`` catch them as well.
"""

from tomobench.errors import RecipeError, TomobenchError


class ConfigError(RecipeError):
    """A training config is malformed, names an unknown field or model option, or asks for
    something the library cannot give (a missing split, a wrong shape)."""


class RunError(TomobenchError, ValueError):
    """A run folder cannot be used: no trained model in it, another config's run in it, or a
    library whose shapes do not fit its model."""
