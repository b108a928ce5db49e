"""The command line: each command parses, calls one public function, and prints."""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from tomobench.errors import TomobenchError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Benchmark libraries and scoring for machine-learning tomography.",
)
out = Console()
err = Console(stderr=True)


def _user_errors(command):
    """Errors a user can fix end with one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except TomobenchError as error:
            err.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted: run the same command again to resume", highlight=False)
            raise typer.Exit(130) from None

    return wrapper


@app.command()
@_user_errors
def build(
    recipe: str = typer.Argument(..., help="recipe YAML file, or the name of a published one"),
    out_path: Path | None = typer.Option(
        None, "--out", help="library path (*.h5 or *.zarr); default: NAME.h5 in this folder"
    ),
    format: str | None = typer.Option(None, "--format", help="hdf5 or zarr"),
    workers: int = typer.Option(1, "--workers", min=1, help="local worker processes"),
    scheduler: str | None = typer.Option(
        None, "--scheduler", help="address of a dask.distributed scheduler (tcp://host:port)"
    ),
    splits: str | None = typer.Option(
        None, "--splits", help="comma-separated splits to build (default: all)"
    ),
    chunk: int | None = typer.Option(None, "--chunk", min=1, help="samples per chunk"),
) -> None:
    """Build (or resume) the library a recipe describes."""
    from tomobench.build import build as run_build

    started = time.perf_counter()
    path = run_build(
        recipe,
        out_path,
        format=format,
        chunk=chunk,
        splits=splits.split(",") if splits else None,
        workers=workers,
        scheduler=scheduler,
        progress=True,
    )
    out.print(f"built {path} in {time.perf_counter() - started:.1f} s")


@app.command()
@_user_errors
def info(library: Path = typer.Argument(..., help="library (*.h5 or *.zarr)")) -> None:
    """Show a library's recipe, splits, shapes, completeness and size."""
    from tomobench.store import open_library

    with open_library(library) as lib:
        _print_info(lib)


def _print_info(lib) -> None:
    recipe = lib.recipe
    status = "complete" if lib.complete else "INCOMPLETE (a build in progress or interrupted)"
    out.print(f"[bold]{lib.path}[/] ({lib.format}, {_size(lib.nbytes_on_disk())}) — {status}")
    out.print(f"recipe   {recipe.name}  sha256 {lib.recipe_sha256}")
    out.print(f"task     {recipe.task}; source {recipe.source.kind} {recipe.image_size}²")
    g = recipe.geometry
    out.print(
        f"geometry {g.angles} angles over [0, π), {recipe.detector_count} detector pixels "
        f"(spacing {g.detector_spacing}), {g.projector} model, oversample {g.oversample}, "
        f"backend {lib.attrs.get('backend')}"
    )
    noise = ", ".join(
        " ".join(f"{k}={v}" for k, v in op.model_dump().items() if v is not None)
        for op in recipe.noise
    )
    out.print(f"noise    {noise or 'none'}")
    table = Table("split", "array", "shape", "dtype", "chunks written")
    for split in lib.splits:
        done, total = lib.chunks_done(split)
        for index, (name, array) in enumerate(lib.arrays(split).items()):
            table.add_row(
                split if index == 0 else "",
                name,
                " × ".join(map(str, array.shape)),
                str(array.dtype),
                f"{done}/{total}" if index == 0 else "",
            )
    out.print(table)


def _size(nbytes: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return ""


@app.command("recipe-schema")
def recipe_schema() -> None:
    """Print the JSON schema of recipes (for editors that validate YAML)."""
    from tomobench.recipe import Recipe

    print(json.dumps(Recipe.model_json_schema(), indent=2))


@app.command()
@_user_errors
def demo(
    folder: Path = typer.Option(Path("tomobench-demo"), "--folder", help="where to write"),
) -> None:
    """The quick start: build the small demo library and describe it."""
    from tomobench.build import build as run_build
    from tomobench.recipe import published_recipes
    from tomobench.store import open_library

    started = time.perf_counter()
    path = run_build(published_recipes()["demo"], folder / "demo.h5", progress=True)
    out.print(f"built {path} in {time.perf_counter() - started:.1f} s\n")
    with open_library(path) as lib:
        _print_info(lib)


def main() -> None:
    app(prog_name="tomobench")


if __name__ == "__main__":
    sys.exit(main())
