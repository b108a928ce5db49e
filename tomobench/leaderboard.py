"""The leaderboard: one JSON entry per scored method, rendered as a markdown table.

A leaderboard is a folder ``DIR`` holding ``entries/*.json`` (one :class:`Entry` each, named
``{library}--{split}--{method}.json``) and ``README.md``, rendered from the entries by
:func:`render`: one table per (library, identity, split), each metric's mean ± std, sorted
by the first metric in its direction. The README is a pure function of the entries, so the
same entries always give the same bytes and :func:`check_readme` can tell a stale one.

Every entry records the identity of the split it was scored on
(:meth:`tomobench.store.Library.identity`: recipe sha256, projector backend, library
format, and their digest), because a split's bytes depend on all three. Scores of two
identities are never ranked together: an entry whose library name and split are already on
the leaderboard with another identity is refused, and so is one that claims another recipe
for a library name already there.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    StringConstraints,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from tomobench._atomic import write_text_atomically
from tomobench.errors import LeaderboardError
from tomobench.metrics import METRICS
from tomobench.recipe import SPLITS
from tomobench.report import STATISTICS, Report, format_value, summarise
from tomobench.store import identity as identity_of

if TYPE_CHECKING:
    from tomobench.store import Library

__all__ = [
    "Entry",
    "Identity",
    "MetricSummary",
    "Training",
    "add_to_leaderboard",
    "check_identity",
    "check_readme",
    "entry_from_report",
    "entry_path",
    "identity_check",
    "load_entries",
    "render",
    "training_of",
    "write_entry",
    "write_readme",
]

ENTRIES = "entries"
README = "README.md"


# -- entries --------------------------------------------------------------------------------

Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


class MetricSummary(BaseModel):
    """Statistics of one metric over a split's samples. ``None``: undefined (the std of
    values including an infinity); infinities are written ``"inf"`` in JSON."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    mean: float | None
    std: float | None
    median: float | None
    min: float | None
    max: float | None
    higher_is_better: bool
    unit: str = ""

    @field_validator(*STATISTICS)
    @classmethod
    def _nan_is_undefined(cls, value: float | None) -> float | None:
        return None if value is not None and math.isnan(value) else value

    @field_serializer(*STATISTICS, when_used="json")
    def _infinity_as_text(self, value: float | None):
        if value is not None and math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value


Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]


class Identity(BaseModel):
    """What made the bytes of the split an entry was scored on (see
    :meth:`tomobench.store.Library.identity`); ``sha256`` must be the digest of the other
    three."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    recipe_sha256: Sha256
    backend: Text
    tomobench_format: int = Field(ge=1)
    sha256: Sha256

    @model_validator(mode="after")
    def _digest_matches(self) -> Identity:
        expected = identity_of(self.recipe_sha256, self.backend, self.tomobench_format)
        if self.sha256 != expected["sha256"]:
            msg = (
                f"sha256 {self.sha256[:12]}… is not the digest of recipe_sha256, backend and "
                f"tomobench_format ({expected['sha256'][:12]}…)"
            )
            raise ValueError(msg)
        return self

    @property
    def short(self) -> str:
        """The short digest and the backend, as messages and headings name an identity."""
        return f"{self.sha256[:12]} ({self.backend}, format {self.tomobench_format})"


class Training(BaseModel):
    """How a learned method was trained (from its run folder's ``run.json`` and config)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Text
    options: dict[str, Any]
    parameters: int = Field(ge=0)
    library: Text
    recipe_sha256: Sha256
    split: Text
    epochs: int = Field(ge=0)
    samples_per_epoch: int = Field(ge=0)
    seconds: float = Field(ge=0)
    hardware: Text
    versions: dict[str, Text]

    def summary(self) -> str:
        """``10 epochs × 2,500 samples, 3.1 min on AMD EPYC, 2 CPUs, no GPU``."""
        return (
            f"{self.epochs} epochs × {self.samples_per_epoch:,} samples of {self.library} "
            f"{self.split}, {self.seconds / 60:.1f} min on {self.hardware}"
        )


def training_of(run: str | Path) -> Training:
    """The :class:`Training` of a run folder (its ``run.json`` and ``config.yaml``)."""
    import yaml

    run = Path(run)
    try:
        info = json.loads((run / "run.json").read_text())
        config = yaml.safe_load((run / "config.yaml").read_text())
        return Training(
            model=info["model"],
            options=config["options"],
            parameters=info["parameters"],
            library=info["library"]["name"],
            recipe_sha256=info["library"]["recipe_sha256"],
            split=config["train_split"],
            epochs=info["epochs_completed"],
            samples_per_epoch=info.get("samples_per_epoch", info["train_samples"]),
            seconds=info["train_seconds"],
            hardware=info.get("hardware", "not recorded"),
            versions={
                name: info[f"{name}_version"]
                for name in ("tomobench", "keras", "tensorflow")
                if f"{name}_version" in info
            },
        )
    except FileNotFoundError as error:
        msg = f"--run {run}: not a finished run folder ({Path(error.filename).name} is missing)"
        raise LeaderboardError(msg) from None
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as error:
        msg = f"--run {run}: its run.json or config.yaml does not read ({error})"
        raise LeaderboardError(msg) from None


class Entry(BaseModel):
    """One method's scores on one split of one library, and how to reproduce them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: Text
    who: Text
    date: Annotated[datetime.date, Strict()]
    library: Text
    recipe_sha256: Sha256
    identity: Identity
    split: str
    n: int = Field(gt=0)
    metrics: dict[str, MetricSummary] = Field(min_length=1)
    tomobench_version: Text
    reproduce: list[Text] = Field(min_length=1)
    scale: int | None = Field(default=None, ge=2)
    """Super-resolution: the factor of the low-resolution twins (None: reconstruction)."""
    crop_border: int | None = Field(default=None, ge=0)
    """Super-resolution: the pixels cut off every side before scoring."""
    training: Training | None = None
    """A learned method: how it was trained."""

    @field_validator("split")
    @classmethod
    def _known_split(cls, value: str) -> str:
        if value not in SPLITS:
            msg = f"split must be one of {', '.join(SPLITS)}, got {value!r}"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _scale_and_crop_together(self) -> Entry:
        if (self.scale is None) != (self.crop_border is None):
            msg = "scale and crop_border go together (super-resolution) or not at all"
            raise ValueError(msg)
        return self

    @model_validator(mode="after")
    def _one_recipe(self) -> Entry:
        if self.identity.recipe_sha256 != self.recipe_sha256:
            msg = (
                f"identity.recipe_sha256 {self.identity.recipe_sha256[:12]}… is not the "
                f"entry's recipe_sha256 {self.recipe_sha256[:12]}…"
            )
            raise ValueError(msg)
        return self


def entry_from_report(
    report: Report,
    *,
    method: str,
    who: str,
    reproduce: list[str],
    date: datetime.date | str | None = None,
    training: Training | None = None,
) -> Entry:
    """The leaderboard entry of a score report (``date``, a date or ISO text such as
    ``"2024-05-01"``, defaults to today; ``training``: how a learned method was trained)."""
    if isinstance(date, str):
        try:
            date = datetime.date.fromisoformat(date)
        except ValueError:
            msg = f"date must be an ISO date such as 2024-05-01, got {date!r}"
            raise LeaderboardError(msg) from None
    metrics = {
        name: MetricSummary(
            **summarise(values),
            higher_is_better=report.higher_is_better[name],
            unit=report.units[name],
        )
        for name, values in report.scores.items()
    }
    data = {
        "method": method,
        "who": who,
        "date": date or datetime.date.today(),
        "library": report.library,
        "recipe_sha256": report.recipe_sha256,
        "identity": dict(report.identity),
        "split": report.split,
        "n": report.n,
        "metrics": metrics,
        "tomobench_version": report.tomobench_version,
        "reproduce": list(reproduce),
    }
    if report.scale is not None:
        data |= {"scale": report.scale, "crop_border": report.crop_border}
    if training is not None:
        data["training"] = training
    try:
        return Entry.model_validate(data)
    except ValidationError as error:
        msg = f"cannot make a leaderboard entry: {_first_error(error)}"
        raise LeaderboardError(msg) from None


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-.") or "unnamed"


def entry_path(directory: str | Path, entry: Entry) -> Path:
    """Where ``entry`` is stored: ``DIR/entries/{library}--{split}--{method}.json``, slugged
    (``{library}--{split}--x{scale}--{method}.json`` for super-resolution)."""
    task = "" if entry.scale is None else f"x{entry.scale}--"
    name = f"{_slug(entry.library)}--{entry.split}--{task}{_slug(entry.method)}.json"
    return Path(directory) / ENTRIES / name


def _entry_text(entry: Entry) -> str:
    data = entry.model_dump(mode="json")
    if entry.scale is None:  # a reconstruction entry reads as before super-resolution came
        del data["scale"], data["crop_border"]
    if entry.training is None:  # and an entry without a run folder as before training came
        del data["training"]
    return json.dumps(data, indent=2, allow_nan=False) + "\n"


def write_entry(directory: str | Path, entry: Entry, *, overwrite: bool = False) -> Path:
    """Write ``entry`` into ``DIR/entries/`` (atomically) and return its path.

    An existing file holding a different entry (another score, another person, or another
    method whose name slugs the same) is replaced only with ``overwrite=True``.
    """
    path = entry_path(directory, entry)
    if path.exists() and not overwrite:
        existing = _read_entry(path)
        if existing == entry:
            return path
        msg = (
            f"{path} already holds an entry for {existing.method!r} on {existing.library} "
            f"split {existing.split} (by {existing.who}, {existing.date}); "
            "pass overwrite=True (--overwrite) to replace it"
        )
        raise LeaderboardError(msg)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(path, _entry_text(entry))
    return path


def _read_entry(path: Path) -> Entry:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        msg = f"{path}: cannot read the entry ({getattr(error, 'strerror', None) or error})"
        raise LeaderboardError(msg) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        msg = f"{path}: not valid JSON (line {error.lineno} column {error.colno}: {error.msg})"
        raise LeaderboardError(msg) from None
    if isinstance(data, dict) and "identity" not in data:
        msg = (
            f"{path}: the entry predates library identities (it has no field 'identity'); "
            "re-make it with the commands of its 'reproduce' (tomobench score … --leaderboard "
            "DIR --overwrite)"
        )
        raise LeaderboardError(msg)
    try:
        return Entry.model_validate_json(text)
    except ValidationError as error:
        msg = f"{path}: {_first_error(error)}"
        raise LeaderboardError(msg) from None


def _first_error(error: ValidationError) -> str:
    """One line for a pydantic error: the field path and what is wrong with it."""
    problems = error.errors()
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"]) or "entry"
    if first["type"] == "extra_forbidden":
        text = f"unknown field {where!r}"
    elif first["type"] == "missing":
        text = f"missing field {where!r}"
    else:
        text = f"field {where!r}: {first['msg']} (got {first.get('input')!r})"
    more = len(problems) - 1
    return text + (f" (and {more} more problem{'s' * (more > 1)})" if more else "")


def _load(directory: Path) -> list[tuple[Path, Entry]]:
    if not directory.is_dir():
        msg = f"no leaderboard folder at {directory}"
        raise LeaderboardError(msg)
    return [(path, _read_entry(path)) for path in sorted((directory / ENTRIES).glob("*.json"))]


def load_entries(directory: str | Path) -> list[Entry]:
    """Every entry of the leaderboard at ``directory``, in file-name order.

    A malformed entry file raises :class:`LeaderboardError` naming the file and the field.
    """
    return [entry for _, entry in _load(Path(directory))]


def check_identity(directory: str | Path, library: str, split: str, identity: dict) -> None:
    """Refuse (:class:`LeaderboardError`) to put scores of split ``split`` of the library
    named ``library``, whose identity is ``identity`` (:meth:`Library.identity`), beside an
    entry of the leaderboard that they cannot be ranked with: one of the same library name
    and split with another identity (another recipe, backend or format), or one that claims
    another recipe for the library name. A folder that does not exist yet has none."""
    directory = Path(directory)
    if not directory.exists():
        return
    try:
        ours = Identity.model_validate(identity)
    except ValidationError as error:
        msg = (
            f"library {library} split {split}: its identity is incomplete ({_first_error(error)})"
        )
        raise LeaderboardError(msg) from None
    for path, entry in _load(directory):
        if entry.library != library:
            continue
        if entry.recipe_sha256 != ours.recipe_sha256:
            msg = (
                f"{path} says library {library} is recipe {entry.recipe_sha256[:12]}…, but this "
                f"library's recipe is {ours.recipe_sha256[:12]}…; one library name must mean "
                "one recipe (rename the recipe or use another leaderboard)"
            )
            raise LeaderboardError(msg)
        if entry.split == split and entry.identity.sha256 != ours.sha256:
            msg = (
                f"{path} scores library {library} split {split} of identity "
                f"{entry.identity.short}, but this library's split is identity {ours.short}; "
                "scores of two identities are never ranked together (rebuild the library as "
                "the entry's was made, or use another leaderboard)"
            )
            raise LeaderboardError(msg)


def identity_check(directory: str | Path) -> Callable[[Library, str], None]:
    """The ``check`` of :func:`tomobench.score.score` for the leaderboard at ``directory``:
    it refuses, before anything is read or computed, a split that :func:`check_identity`
    refuses to rank with the leaderboard's entries (what ``tomobench score --leaderboard``
    does)."""

    def check(library: Library, split: str) -> None:
        check_identity(directory, library.recipe.name, split, library.identity(split))

    return check


# -- the rendered table ---------------------------------------------------------------------


def render(directory: str | Path) -> str:
    """The markdown of ``DIR/README.md``: one table per (library, identity, split, and for
    super-resolution scale and border), its heading naming the recipe, the projector
    backend, the library format and the identity.

    Rows are entries sorted by the first metric's mean in its direction (best first; ties
    by method, who and date); columns are the rank, the method (linked to its entry), each
    metric's mean ± std, who and date. Same entries, same bytes.
    """
    directory = Path(directory)
    entries = _load(directory)
    lines = [
        "# tomobench leaderboard",
        "",
        f"Rendered from `{ENTRIES}/*.json` by `tomobench leaderboard`; do not edit by hand.",
        "Each cell is the mean ± std (population) of a metric over the split's samples, "
        "every reconstruction clipped to [0, 1], scored with data_range 1 and SSIM as in "
        "Wang et al. 2004 (see "
        "[the conventions](../docs/scoring.md#conventions)). "
        "↑: higher is better; ↓: lower is better.",
        "",
    ]
    if not entries:
        lines += ["No entries yet.", ""]
    groups: dict[tuple, list[tuple[Path, Entry]]] = {}
    for path, entry in entries:
        key = (entry.library, entry.identity.sha256, entry.split, entry.scale or 0,
               entry.crop_border or 0)  # fmt: skip
        groups.setdefault(key, []).append((path, entry))
    order = {name: index for index, name in enumerate(SPLITS)}

    def group_order(key: tuple) -> tuple:
        identity = groups[key][0][1].identity
        return (key[0], order[key[2]], key[3], key[4], identity.recipe_sha256,
                identity.backend, identity.tomobench_format, key[1])  # fmt: skip

    for key in sorted(groups, key=group_order):
        lines += _render_group(directory, key, groups[key])
    return "\n".join(lines)


def _render_group(directory: Path, key: tuple, rows: list[tuple[Path, Entry]]) -> list[str]:
    library, _, split, scale, border = key
    identity = rows[0][1].identity
    names = {name for _, entry in rows for name in entry.metrics}
    metrics = [name for name in METRICS if name in names] + sorted(names - set(METRICS))
    info = {}
    for name in metrics:
        info[name] = next(e.metrics[name] for _, e in rows if name in e.metrics)
    first = metrics[0]
    rows = sorted(rows, key=lambda row: _rank_key(row[1], first, info[first].higher_is_better))
    counts = ", ".join(str(n) for n in sorted({entry.n for _, entry in rows}))
    direction = "higher" if info[first].higher_is_better else "lower"
    header = ["rank", "method"]
    for name in metrics:
        unit = f" ({info[name].unit})" if info[name].unit else ""
        header.append(f"{name}{unit} {'↑' if info[name].higher_is_better else '↓'}")
    trained = any(entry.training is not None for _, entry in rows)
    header += ["training"] * trained + ["who", "date"]
    task = f" · super-resolution ×{scale}, border {border}" if scale else ""
    lines = [
        f"## {_cell(library)} · split {split}{task} · recipe {identity.recipe_sha256[:12]} · "
        f"backend {_cell(identity.backend)} · format {identity.tomobench_format} · "
        f"identity {identity.sha256[:12]}",
        "",
        f"n = {counts} samples; sorted by {first}, {direction} first.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join(["---:", "---"] + ["---:"] * len(metrics) + ["---"] * (2 + trained)) + "|",
    ]
    for rank, (path, entry) in enumerate(rows, start=1):
        link = path.relative_to(directory).as_posix()
        cells = [str(rank), f"[{_cell(entry.method)}]({link})"]
        for name in metrics:
            summary = entry.metrics.get(name)
            if summary is None:
                cells.append("–")
            else:
                mean = format_value(summary.mean, summary.unit)
                std = format_value(summary.std, summary.unit)
                cells.append(f"{mean} ± {std}")
        if trained:
            cells.append(_cell(entry.training.summary()) if entry.training else "–")
        cells += [_cell(entry.who), entry.date.isoformat()]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


def _rank_key(entry: Entry, metric: str, higher_is_better: bool) -> tuple:
    summary = entry.metrics.get(metric)
    mean = None if summary is None else summary.mean
    missing = mean is None
    value = 0.0 if missing else (-mean if higher_is_better else mean)
    return (missing, value, entry.method, entry.who, entry.date)


def _cell(text: str) -> str:
    """Text made safe for a markdown table cell (and link text)."""
    text = " ".join(text.split())
    for char in "\\|[]*_`":
        text = text.replace(char, "\\" + char)
    return text.replace("<", "&lt;")


def write_readme(directory: str | Path) -> Path:
    """Render the leaderboard into ``DIR/README.md`` (atomically); return its path."""
    directory = Path(directory)
    return write_text_atomically(directory / README, render(directory))


def check_readme(directory: str | Path) -> bool:
    """Whether ``DIR/README.md`` is exactly what :func:`render` makes of the entries."""
    path = Path(directory) / README
    return path.is_file() and path.read_text() == render(directory)


def add_to_leaderboard(
    report: Report,
    directory: str | Path,
    *,
    method: str,
    who: str,
    reproduce: list[str],
    overwrite: bool = False,
    date: datetime.date | str | None = None,
    training: Training | None = None,
) -> Path:
    """Add the entry of ``report`` to the leaderboard at ``directory`` (created if need be)
    and re-render its README; return the entry's path.

    Refused (:class:`LeaderboardError`) if an entry holds the report's library name and split
    with another identity, or claims another recipe for the library name, or a different
    entry already has this one's file (unless ``overwrite``).
    """
    directory = Path(directory)
    check_identity(directory, report.library, report.split, report.identity)
    entry = entry_from_report(
        report, method=method, who=who, reproduce=reproduce, date=date, training=training
    )
    try:
        (directory / ENTRIES).mkdir(parents=True, exist_ok=True)
    except OSError as error:
        msg = f"cannot create {directory / ENTRIES}: {error.strerror or error}"
        raise LeaderboardError(msg) from None
    path = write_entry(directory, entry, overwrite=overwrite)
    write_readme(directory)
    return path
