"""The command line: each command parses, calls one public function, and prints."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import shlex
import sys
import time
import warnings
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

# zarr warns, with its own source line, of each entry of a store that has lost its metadata;
# the command then says in one line what is missing
warnings.filterwarnings(
    "ignore", message=r"Object at .* is not recognized as a component of a Zarr hierarchy"
)


def _show_warning(shown, message, category, filename, lineno, file=None, line=None) -> None:
    """tomobench's own warnings (a download with no checksum to check it by) as one
    ``warning:`` line; other libraries' warnings as ``shown`` shows them."""
    if issubclass(category, UserWarning) and "tomobench" in Path(filename).parts:
        err.print(f"warning: {message}", markup=False, highlight=False, soft_wrap=True)
    else:
        shown(message, category, filename, lineno, file, line)


def _user_errors(command):
    """Errors a user can fix end with one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            with warnings.catch_warnings():
                warnings.showwarning = functools.partial(_show_warning, warnings.showwarning)
                return command(*args, **kwargs)
        except TomobenchError as error:
            # one line, even where a library's message (h5py's, imageio's) spans several
            text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
            err.print(f"error: {text}", markup=False, highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err.print("interrupted: run the same command again to resume", highlight=False)
            raise typer.Exit(130) from None
        except OSError as error:  # what a command prints cannot be written (stdout is full)
            if error.errno not in (errno.ENOSPC, errno.EIO):
                raise
            err.print(f"error: cannot write the output: {error.strerror}", highlight=False)
            raise typer.Exit(2) from None

    return wrapper


@app.command()
@_user_errors
def build(
    recipe: str = typer.Argument(..., help="recipe YAML file, or the name of a published one"),
    out_path: Path | None = typer.Option(
        None,
        "--out",
        help="library path (*.h5 or *.zarr); default: NAME.h5 (NAME.zarr for Zarr) in this folder",
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
    from tomobench.builder import build as run_build

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
    absorption = getattr(recipe.source, "absorption", None)
    if absorption is not None:
        mu = ", ".join(
            f"{name} {absorption.coefficients[name]:g}" for name in recipe.source.phase_names
        )
        out.print(
            f"absorption image μ in cm⁻¹ ({mu}), pixel {absorption.pixel_size_um:g} µm, "
            f"noise {absorption.noise:g} × the largest μ"
        )
    g = recipe.geometry
    out.print(
        f"geometry {g.angles} angles over [0, π), {recipe.detector_count} detector pixels "
        f"(spacing {g.detector_spacing}), {g.projector} model, oversample {g.oversample}"
    )
    for split in lib.splits:
        identity = lib.identity(split)
        out.print(
            f"identity {split}: {identity['sha256'][:12]} (backend {identity['backend']}, "
            f"format {identity['tomobench_format']})"
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


@app.command()
@_user_errors
def baseline(
    method: str = typer.Argument(
        ..., help="fbp, sirt, cgls or ganrec; nearest, bilinear or bicubic (with --scale)"
    ),
    library: Path = typer.Argument(..., help="library (*.h5 or *.zarr)"),
    out_path: Path = typer.Option(..., "--out", help="submission to write (.npy, .h5, .zarr)"),
    split: str = typer.Option("test", "--split"),
    scale: int | None = typer.Option(
        None, "--scale", min=2, help="super-resolution: upsample images_x{SCALE}"
    ),
    filter: str | None = typer.Option(None, "--filter", help="FBP filter (default ram-lak)"),
    iterations: int | None = typer.Option(
        None,
        "--iterations",
        min=1,
        help="SIRT (default 100), CGLS (default 30) or GANrec (default 1000, per sinogram)",
    ),
    nonnegative: bool = typer.Option(False, "--nonnegative", help="clip negative values"),
    mask: bool = typer.Option(False, "--mask", help="restrict to the inscribed circle"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="replace what is at --out, even if not a submission"
    ),
) -> None:
    """Reconstruct a split with a classical method or GANrec (or upsample its
    low-resolution twins) and write it as a submission."""
    from tomobench import baselines, superres
    from tomobench.errors import RecipeError
    from tomobench.score import check_submission_output, write_submission
    from tomobench.store import open_library

    options = {"nonnegative": nonnegative, "mask": mask}
    if method in superres.METHODS:
        if scale is None:
            msg = f"baseline {method} upsamples the library's images_x{{S}}: give --scale S"
            raise RecipeError(msg)
        if iterations is not None or nonnegative or mask:
            msg = f"--iterations, --nonnegative and --mask apply to reconstruction, not {method}"
            raise RecipeError(msg)
        check_submission_output(out_path, overwrite=overwrite)
        started = time.perf_counter()
        with open_library(library) as lib:
            if split in lib.splits:
                lib.check_split(split)
            images = superres.run(method, lib, split=split, scale=scale)
        path = write_submission(out_path, images, overwrite=overwrite)
        seconds = time.perf_counter() - started
        out.print(
            f"wrote {path}: {method} ×{scale} of {len(images)} samples in {seconds:.1f} s "
            f"(score it with --scale {scale})"
        )
        return
    if scale is not None:
        msg = f"--scale applies to nearest, bilinear and bicubic, not {method}"
        raise RecipeError(msg)
    if method == "fbp":
        if iterations is not None:
            msg = "--iterations applies to sirt, cgls and ganrec, not fbp"
            raise RecipeError(msg)
        options["filter"] = "ram-lak" if filter is None else filter
    else:
        if filter is not None:
            msg = f"--filter applies to fbp, not {method}"
            raise RecipeError(msg)
        if iterations is not None:
            options["iterations"] = iterations
    if method == "ganrec":
        _models()  # one line if the models extra is missing, before any work
    check_submission_output(out_path, overwrite=overwrite)  # before the work, not after it
    started = time.perf_counter()
    with open_library(library) as lib:
        if split in lib.splits:
            lib.check_split(split)
        with _sinogram_bar(method == "ganrec" and split in lib.splits, lib, split) as advance:
            if advance is not None:
                options["progress"] = advance
            reconstructions = baselines.run(method, lib, split=split, **options)
    path = write_submission(out_path, reconstructions, overwrite=overwrite)
    seconds = time.perf_counter() - started
    out.print(
        f"wrote {path}: {method} of {len(reconstructions)} samples in {seconds:.1f} s "
        "(as reconstructed; score clips every reconstruction to [0, 1])"
    )


@contextlib.contextmanager
def _sinogram_bar(enabled: bool, lib, split: str):
    """A progress bar over the sinograms of a split (each channel of a hyperspectral one),
    yielding the callable that advances it, or ``None`` when not ``enabled``."""
    if not enabled:
        yield None
        return
    from rich.progress import MofNCompleteColumn, Progress, TimeRemainingColumn

    shape = lib[f"{split}/sinograms"].shape
    total = shape[0] * (shape[3] if len(shape) == 4 else 1)
    columns = (*Progress.get_default_columns()[:2], MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, transient=False) as bar:
        task = bar.add_task(f"GANrec, {split} sinograms", total=total)
        yield lambda n: bar.advance(task, n)


@app.command()
@_user_errors
def score(
    submission: Path = typer.Argument(..., help="reconstructions (.npy, .h5, .zarr)"),
    library: Path = typer.Argument(..., help="library (*.h5 or *.zarr)"),
    split: str = typer.Option("test", "--split"),
    json_path: Path | None = typer.Option(None, "--json", help="write the report as JSON"),
    csv_path: Path | None = typer.Option(None, "--csv", help="write per-sample scores"),
    leaderboard: Path | None = typer.Option(
        None, "--leaderboard", help="leaderboard folder to add an entry to"
    ),
    method: str | None = typer.Option(None, "--method", help="method name for the entry"),
    who: str = typer.Option("anonymous", "--who", help="who made the submission"),
    reproduce: list[str] = typer.Option(
        [], "--reproduce", help="a command that made the submission (repeat, in order)"
    ),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="replace a different entry already in the entry's file"
    ),
    scale: int | None = typer.Option(
        None, "--scale", min=2, help="super-resolution of images_x{SCALE}, beside bicubic"
    ),
    crop_border: int | None = typer.Option(
        None, "--crop-border", min=0, help="pixels cut off every side (default: the scale)"
    ),
    run: Path | None = typer.Option(
        None, "--run", help="the run folder that trained the method (its budget goes in the entry)"
    ),
) -> None:
    """Score a submission against a split's ground truth, beside FBP (beside bicubic
    interpolation for super-resolution, --scale)."""
    from tomobench.errors import SubmissionError
    from tomobench.leaderboard import add_to_leaderboard, identity_check, training_of
    from tomobench.score import check_output
    from tomobench.score import score as run_score

    if leaderboard is not None and not method:
        msg = "--leaderboard needs --method NAME"
        raise SubmissionError(msg)
    for flag, given in (("--overwrite", overwrite), ("--run", run is not None)):
        if given and leaderboard is None:
            msg = f"{flag} applies to a leaderboard entry: give --leaderboard DIR too"
            raise SubmissionError(msg)
    training = training_of(run) if run is not None else None
    inputs = {"submission": submission, "library": library}
    for option, output in (("--json", json_path), ("--csv", csv_path)):
        if output is not None:  # said before the work of scoring, not after it
            check_output(output, option=option, inputs=inputs)
    if json_path is not None and csv_path is not None:
        check_output(csv_path, option="--csv", inputs={"--json report": json_path})
    check = identity_check(leaderboard) if leaderboard is not None else None
    report = run_score(
        submission, library, split=split, check=check, scale=scale, crop_border=crop_border
    )
    identity = report.identity
    out.print(
        f"{report.library} (recipe {report.recipe_sha256[:12]}, identity "
        f"{identity['sha256'][:12]}: {identity['backend']}, format "
        f"{identity['tomobench_format']}), split {report.split}, n = {report.n}: {submission}"
    )
    out.print(report.table())
    if json_path is not None:
        out.print(f"report: {report.write_json(json_path)}")
    if csv_path is not None:
        out.print(f"per-sample scores: {report.write_csv(csv_path)}")
    if leaderboard is not None:
        scoring = ["tomobench", "score", str(submission), str(library), "--split", split]
        if scale is not None:
            scoring += ["--scale", str(scale), "--crop-border", str(report.crop_border)]
        commands = [*reproduce, shlex.join(scoring)]
        entry = add_to_leaderboard(
            report,
            leaderboard,
            method=method,
            who=who,
            reproduce=commands,
            overwrite=overwrite,
            training=training,
        )
        out.print(f"leaderboard entry: {entry}")


def _models():
    """:mod:`tomobench.models`, or a one-line error if its extra is not installed."""
    try:
        import tomobench.models as models
    except ImportError as error:
        raise TomobenchError(str(error)) from None
    return models


@app.command()
@_user_errors
def train(
    config: Path = typer.Argument(..., help="training config (YAML)"),
    quiet: bool = typer.Option(False, "--quiet", help="no progress bar, no per-epoch lines"),
) -> None:
    """Train a model as a config says (or resume its interrupted run) into its run folder."""
    models = _models()
    started = time.perf_counter()
    run = models.train(config, verbose=0 if quiet else "auto")
    info = json.loads((run / "run.json").read_text())
    best = info["best_monitored_loss"]
    out.print(
        f"trained {info['model']} ({info['parameters']:,} parameters) on "
        f"{info['library']['name']}: {info['epochs_completed']} epochs"
        f"{' (stopped early)' if info['stopped_early'] else ''}, best epoch "
        f"{info['best_epoch']} (monitored loss {best:.5f}); {run} "
        f"({time.perf_counter() - started:.0f} s)"
    )


@app.command()
@_user_errors
def predict(
    run: Path = typer.Argument(..., help="run folder written by tomobench train"),
    library: Path = typer.Argument(..., help="library (*.h5 or *.zarr)"),
    out_path: Path = typer.Option(..., "--out", help="submission to write (.npy, .h5, .zarr)"),
    split: str = typer.Option("test", "--split"),
    batch_size: int = typer.Option(256, "--batch-size", min=1, help="samples per model call"),
    overwrite: bool = typer.Option(
        False, "--overwrite", help="replace what is at --out, even if not a submission"
    ),
) -> None:
    """Reconstruct a split with a trained model and write it as a submission."""
    from tomobench.score import check_submission_output

    check_submission_output(out_path, overwrite=overwrite)  # before the work, not after it
    models = _models()
    started = time.perf_counter()
    path = models.predict(
        run, library, split=split, out=out_path, batch_size=batch_size, overwrite=overwrite
    )
    seconds = time.perf_counter() - started
    out.print(f"wrote {path}: {run} on split {split} of {library} in {seconds:.1f} s")


@app.command()
@_user_errors
def cross(
    paths: list[Path] = typer.Argument(
        ..., help="run folders (they hold config.yaml) and libraries, in any order"
    ),
    split: str = typer.Option("test", "--split"),
    fbp: list[str] = typer.Option(
        ["ram-lak"], "--fbp", help="an FBP filter to score beside the runs (repeat)"
    ),
    json_path: Path | None = typer.Option(None, "--json", help="write the table as JSON"),
    markdown: Path | None = typer.Option(None, "--markdown", help="write Markdown tables"),
) -> None:
    """Score every trained run on every library (train on A, test on B), beside FBP."""
    from tomobench.store.format import partial_path

    missing = [str(p) for p in paths if not (p.exists() or partial_path(p).exists())]
    if missing:
        msg = f"cross: no such run folder or library: {', '.join(missing)}"
        raise TomobenchError(msg)
    models = _models()
    runs = [path for path in paths if (path / "config.yaml").is_file()]
    libraries = [path for path in paths if path not in runs]
    table = models.cross(runs, libraries, split=split, fbp_filters=tuple(fbp))
    for rendered in table.tables():
        out.print(rendered)
    if json_path is not None:
        out.print(f"table: {table.write_json(json_path)}")
    if markdown is not None:
        out.print(f"markdown: {table.write_markdown(markdown)}")


@app.command("leaderboard")
@_user_errors
def leaderboard_command(
    directory: Path = typer.Argument(Path("leaderboard"), help="leaderboard folder"),
) -> None:
    """Render DIR/README.md from the entries in DIR/entries/."""
    from tomobench.leaderboard import load_entries, write_readme

    path = write_readme(directory)
    out.print(f"wrote {path} ({len(load_entries(directory))} entries)")


@app.command()
@_user_errors
def show(
    library: Path = typer.Argument(..., help="library (*.h5 or *.zarr)"),
    submissions: list[Path] = typer.Argument(None, help="submissions to show beside FBP"),
    out_path: Path = typer.Option(..., "--out", help="figure to write (.png, .pdf, .svg, ...)"),
    split: str = typer.Option("test", "--split"),
    samples: int = typer.Option(4, "--samples", min=1, help="how many samples"),
    scale: int | None = typer.Option(
        None, "--scale", min=2, help="super-resolution of images_x{SCALE}, beside bicubic"
    ),
    crop_border: int | None = typer.Option(
        None, "--crop-border", min=0, help="pixels not scored at every side (default: scale)"
    ),
) -> None:
    """Draw ground truth | FBP | each submission for a few samples, with their scores (for
    super-resolution: low resolution | bicubic | each submission | ground truth)."""
    from tomobench.show import show as draw

    path = draw(
        library,
        submissions or [],
        split=split,
        samples=samples,
        out=out_path,
        scale=scale,
        crop_border=crop_border,
    )
    out.print(f"wrote {path}")


@app.command("datasets")
@_user_errors
def datasets_command(
    registry: list[Path] = typer.Option([], "--registry", help="extra registry file (repeat)"),
) -> None:
    """List the registry's datasets: name, size, licence, citation, how it is checked."""
    from tomobench.datasets import list_datasets

    table = Table()
    table.add_column("name", no_wrap=True)
    table.add_column("size", no_wrap=True)
    table.add_column("licence")
    table.add_column("citation")
    table.add_column("checked by")
    for dataset in list_datasets(registry=registry or None):
        if not dataset.verified:
            checked = "nothing: integrity not checked"
        elif dataset.hash == "from-doi":
            checked = "md5 published by Zenodo"
        else:
            checked = dataset.hash.split(":")[0]
        size = _size(dataset.size) if dataset.size is not None else "?"
        table.add_row(dataset.name, size, dataset.licence or "?", dataset.citation or "?", checked)
    out.print(table)


@app.command()
@_user_errors
def fetch(
    name: str = typer.Argument(..., help="a dataset name (see `tomobench datasets`)"),
    registry: list[Path] = typer.Option([], "--registry", help="extra registry file (repeat)"),
) -> None:
    """Download a registry dataset into the cache (hash-checked, once) and print where."""
    from tomobench.datasets import fetch as run_fetch

    path = run_fetch(name, registry=registry or None, progress=sys.stderr.isatty())
    out.print(str(path), soft_wrap=True, markup=False, highlight=False)  # one line, for scripts


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
    """The quick start: build the demo library, score FBP on it, draw a figure."""
    from tomobench.quickstart import demo as run_demo
    from tomobench.store import open_library

    result = run_demo(folder, progress=True)
    out.print(f"built {result.library} in {result.build_seconds:.1f} s\n")
    with open_library(result.library) as lib:
        _print_info(lib)
    report = result.report
    out.print(f"\nFBP (hann filter) scored beside FBP (ram-lak), test split, n = {report.n}:")
    out.print(report.table())
    out.print(f"\nreport {result.report_path}, figure {result.figure}")


def main() -> None:
    """The ``tomobench`` command. A usage error (an unknown option, a value out of range)
    ends, like every error a user can fix, with one line on stderr and exit code 2."""
    args = sys.argv[1:] or ["--help"]
    try:
        code = app(args=args, prog_name="tomobench", standalone_mode=False)
    except typer.Abort:
        err.print("interrupted", highlight=False)
        code = 130
    except _usage_errors() as error:
        context = getattr(error, "ctx", None)
        where = f"; see {context.command_path} --help" if context is not None else ""
        message = f"error: {error.format_message().rstrip('.')}{where}"
        err.print(message, markup=False, highlight=False, soft_wrap=True)
        code = getattr(error, "exit_code", 2)
    sys.exit(code or 0)


def _usage_errors() -> tuple[type[Exception], ...]:
    """The classes of the command-line parser's errors: typer's own (it carries its own
    click) and, for older typer, click's."""
    kinds = [getattr(typer, "TyperException", None)]
    try:
        import click

        kinds.append(click.ClickException)
    except ImportError:
        pass
    return tuple(kind for kind in kinds if kind is not None)


if __name__ == "__main__":
    sys.exit(main())
