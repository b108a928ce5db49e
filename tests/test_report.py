"""tomobench.report: the statistics, printing and JSON of scores, shared by score, the
leaderboard and the cross tables."""

import ast
import json
import math

import numpy as np
import pytest

import tomobench.report as report
import tomobench.score as score

from conftest import ROOT


def imported_modules(module: str) -> set[str]:
    """Every module the source of ``tomobench/{module}.py`` imports, at any depth."""
    tree = ast.parse((ROOT / "tomobench" / f"{module}.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_score_and_leaderboard_do_not_import_each_other():
    assert not any(name.startswith("tomobench.leaderboard") for name in imported_modules("score"))
    assert not any(name.startswith("tomobench.score") for name in imported_modules("leaderboard"))
    for module in ("score", "leaderboard", "models/cross"):  # from its own home
        assert "tomobench.report" in imported_modules(module)


def test_the_moved_names_are_still_importable_from_score():
    for name in ("CONVENTIONS", "STATISTICS", "Report", "format_value", "jsonable", "summarise"):
        assert name in score.__all__ and getattr(score, name) is getattr(report, name)
    assert all(hasattr(score, name) for name in score.__all__)


def test_summarise_is_population_statistics():
    stats = report.summarise(np.array([4.0, 1.0, 3.0, 2.0]))
    assert stats == {"mean": 2.5, "std": math.sqrt(1.25), "median": 2.5, "min": 1.0, "max": 4.0}
    assert all(type(value) is float for value in stats.values())
    exact = report.summarise([30.0, math.inf])
    assert exact["mean"] == exact["max"] == math.inf and math.isnan(exact["std"])
    assert exact["min"] == 30.0


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [(20.126, "dB", "20.13"), (0.5, "", "0.5000"), (0.123449, "", "0.1234"),
     (math.inf, "dB", "inf"), (-math.inf, "", "-inf"), (math.nan, "", "–"), (None, "dB", "–")],
)  # fmt: skip
def test_format_value_as_the_tables_print_it(value, unit, text):
    assert report.format_value(value, unit) == text


def test_jsonable_writes_no_nan_and_infinity_as_text():
    values = {"psnr": np.array([12.5, math.inf]), "std": math.nan, "low": -math.inf}
    made = report.jsonable(values)
    assert made == {"psnr": [12.5, "inf"], "std": None, "low": "-inf"}
    assert json.loads(json.dumps(made, allow_nan=False)) == made
