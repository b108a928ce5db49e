import datetime
import hashlib
import json
import math
import re
import shutil

import h5py
import numpy as np
import pytest

from tomobench.errors import TomobenchError
from tomobench.leaderboard import (
    Entry,
    LeaderboardError,
    add_to_leaderboard,
    check_identity,
    check_readme,
    entry_from_report,
    entry_path,
    identity_check,
    load_entries,
    render,
    training_of,
    write_entry,
    write_readme,
)
from tomobench.report import Report
from tomobench.score import score, write_submission

from conftest import make_recipe

SHA_A = "a" * 64
SHA_B = "b" * 64
DAY = datetime.date(2024, 5, 1)


def make_identity(sha=SHA_A, backend="matrix", tomobench_format=1):
    """A split's identity, its digest computed here by hand (sha256 of the canonical JSON of
    the three parts: sorted keys, compact)."""
    parts = {"recipe_sha256": sha, "backend": backend, "tomobench_format": tomobench_format}
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"))
    return {**parts, "sha256": hashlib.sha256(text.encode()).hexdigest()}


def library_identity(path, split="test"):
    """The identity of a library's split, read by hand from its attributes with h5py."""
    with h5py.File(path, "r") as file:
        backend = file.attrs["backend"]
        if backend.startswith("{"):  # format 2: one backend per split
            backend = json.loads(backend)[split]
        return make_identity(
            file.attrs["recipe_sha256"], backend, int(file.attrs["tomobench_format"])
        )


def fake_report(
    *,
    psnr,
    ssim=None,
    library="lib-a",
    sha=SHA_A,
    split="test",
    lower=False,
    backend="matrix",
    tomobench_format=1,
):
    """A report with chosen per-sample scores (``lower``: one lower-is-better metric, mse)."""
    if lower:
        scores, better, units = {"mse": np.asarray(psnr, float)}, {"mse": False}, {"mse": ""}
    else:
        ssim = np.full(len(psnr), 0.5) if ssim is None else ssim
        scores = {"psnr": np.asarray(psnr, float), "ssim": np.asarray(ssim, float)}
        better, units = {"psnr": True, "ssim": True}, {"psnr": "dB", "ssim": ""}
    return Report(
        library=library,
        library_path=f"/data/{library}.h5",
        recipe_sha256=sha,
        split=split,
        n=len(psnr),
        task="reconstruction",
        tomobench_version="0.1.0",
        submission="sub.npy",
        scores=scores,
        higher_is_better=better,
        units=units,
        identity=make_identity(sha, backend, tomobench_format),
    )


def add(directory, method, report, who="ann", date=DAY, **options):
    return add_to_leaderboard(
        report,
        directory,
        method=method,
        who=who,
        reproduce=[f"tomobench score {method}.npy {report.library}.h5"],
        date=date,
        **options,
    )


def table_rows(markdown, heading):
    """The data rows (as lists of cells) of the table under ``heading``."""
    section = markdown.split(heading, 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]
    return [[cell.strip() for cell in re.split(r"(?<!\\)\|", row)[1:-1]] for row in rows]


def test_entry_holds_the_report_summary_and_round_trips(tmp_path):
    report = fake_report(psnr=[20.0, 22.0, 27.0], ssim=[0.5, 0.7, 0.9])
    entry = entry_from_report(report, method="U-Net / v2", who="ann", reproduce=["a", "b"])
    assert entry.date == datetime.date.today()
    assert entry.metrics["psnr"].mean == pytest.approx(23.0)
    assert entry.metrics["psnr"].std == pytest.approx(np.std([20.0, 22.0, 27.0]))
    assert (entry.metrics["psnr"].median, entry.metrics["psnr"].min) == (22.0, 20.0)
    assert entry.metrics["ssim"].max == 0.9 and entry.metrics["ssim"].higher_is_better
    assert (entry.library, entry.recipe_sha256, entry.split, entry.n) == (
        "lib-a",
        SHA_A,
        "test",
        3,
    )
    path = write_entry(tmp_path, entry)
    assert (
        path == tmp_path / "entries" / "lib-a--test--u-net-v2.json" == entry_path(tmp_path, entry)
    )
    assert load_entries(tmp_path) == [entry]
    data = json.loads(path.read_text())
    assert set(data) == {
        "method", "who", "date", "library", "recipe_sha256", "identity", "split", "n",
        "metrics", "tomobench_version", "reproduce",
    }  # fmt: skip
    assert data["date"] == entry.date.isoformat() and data["reproduce"] == ["a", "b"]
    assert data["identity"] == make_identity(SHA_A, "matrix", 1)


def test_infinite_scores_survive_the_entry_file(tmp_path):
    entry = entry_from_report(
        fake_report(psnr=[math.inf, math.inf]), method="exact", who="ann", reproduce=["x"]
    )
    assert entry.metrics["psnr"].mean == math.inf and entry.metrics["psnr"].std is None
    path = write_entry(tmp_path, entry)
    data = json.loads(path.read_text())  # strict JSON: no Infinity, no NaN
    assert data["metrics"]["psnr"]["mean"] == "inf" and data["metrics"]["psnr"]["std"] is None
    assert load_entries(tmp_path) == [entry]
    assert "| inf ± – |" in render(tmp_path)


def test_render_sorts_by_the_first_metric_in_its_direction(tmp_path):
    for method, psnr in (("middle", 25.0), ("worst", 19.5), ("best", 31.25), ("exact", math.inf)):
        add(tmp_path, method, fake_report(psnr=[psnr - 1, psnr + 1]))
    rows = table_rows(render(tmp_path), "## lib-a · split test · recipe aaaaaaaaaaaa")
    assert [row[1].split("]")[0][1:] for row in rows] == ["exact", "best", "middle", "worst"]
    assert [row[0] for row in rows] == ["1", "2", "3", "4"]
    assert rows[1][2:] == ["31.25 ± 1.00", "0.5000 ± 0.0000", "ann", "2024-05-01"]
    assert rows[1][1] == "[best](entries/lib-a--test--best.json)"

    lower = tmp_path / "lower"
    for method, mse in (("b", 0.2), ("a", 0.05), ("c", 0.9)):
        add(lower, method, fake_report(psnr=[mse, mse], lower=True))
    markdown = render(lower)
    assert "| rank | method | mse ↓ | who | date |" in markdown
    assert "sorted by mse, lower first" in markdown
    rows = table_rows(markdown, "## lib-a")
    assert [row[1][1] for row in rows] == ["a", "b", "c"]


def test_render_has_one_table_per_library_recipe_and_split(tmp_path):
    add(tmp_path, "m", fake_report(psnr=[20, 21], split="test"))
    add(tmp_path, "m", fake_report(psnr=[20, 21], split="val"))
    add(tmp_path, "m", fake_report(psnr=[20, 21, 22], library="a-lib", sha=SHA_B))
    headings = [line for line in render(tmp_path).splitlines() if line.startswith("## ")]
    a, b = make_identity(SHA_A)["sha256"][:12], make_identity(SHA_B)["sha256"][:12]
    assert headings == [
        f"## a-lib · split test · recipe bbbbbbbbbbbb · backend matrix · format 1 · identity {b}",
        f"## lib-a · split val · recipe aaaaaaaaaaaa · backend matrix · format 1 · identity {a}",
        f"## lib-a · split test · recipe aaaaaaaaaaaa · backend matrix · format 1 · identity {a}",
    ]
    assert "n = 3 samples" in render(tmp_path)


def test_render_is_deterministic_and_escapes_cells(tmp_path):
    reports = [("x|y", 20.0, "bob"), ("tie-b", 22.0, "zed"), ("tie-a", 22.0, "amy")]
    first, second = tmp_path / "first", tmp_path / "second"
    for directory, order in ((first, reports), (second, reversed(reports))):
        for method, psnr, who in order:
            add(directory, method, fake_report(psnr=[psnr, psnr]), who=who)
    assert render(first) == render(second)
    assert render(first) == render(first)
    rows = table_rows(render(first), "## lib-a")
    assert [row[1] for row in rows][0].startswith("[tie-a]")  # ties: by method name
    assert rows[2][1] == r"[x\|y](entries/lib-a--test--x-y.json)"
    assert all(len(row) == 6 for row in rows)


def test_empty_leaderboard_renders(tmp_path):
    (tmp_path / "entries").mkdir()
    assert "No entries yet." in render(tmp_path)
    assert load_entries(tmp_path) == []


def test_readme_check(tmp_path):
    add(tmp_path, "first", fake_report(psnr=[20, 21]))
    assert check_readme(tmp_path)
    assert (tmp_path / "README.md").read_text() == render(tmp_path)
    entry = entry_from_report(fake_report(psnr=[30, 31]), method="new", who="x", reproduce=["y"])
    write_entry(tmp_path, entry)  # an entry added without re-rendering: the README is stale
    assert not check_readme(tmp_path)
    write_readme(tmp_path)
    assert check_readme(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text(readme.read_text().replace("30.50", "99.00"))  # edited by hand
    assert not check_readme(tmp_path)
    readme.unlink()
    assert not check_readme(tmp_path)


def test_a_different_entry_is_not_overwritten_unless_asked(tmp_path):
    path = add(tmp_path, "fbp", fake_report(psnr=[20, 21]))
    assert add(tmp_path, "fbp", fake_report(psnr=[20, 21])) == path  # the same entry again
    before = path.read_text()
    with pytest.raises(LeaderboardError, match=r"already holds an entry for 'fbp'.*overwrite"):
        add(tmp_path, "fbp", fake_report(psnr=[25, 26]))
    with pytest.raises(LeaderboardError, match="already holds an entry for 'fbp'"):
        add(tmp_path, "FBP", fake_report(psnr=[20, 21]))  # another name, the same file
    assert path.read_text() == before
    add(tmp_path, "fbp", fake_report(psnr=[25, 26]), overwrite=True)
    assert load_entries(tmp_path)[0].metrics["psnr"].mean == 25.5
    assert check_readme(tmp_path)


def test_an_entry_claiming_another_recipe_is_refused(tmp_path):
    add(tmp_path, "fbp", fake_report(psnr=[20, 21], sha=SHA_A))
    readme = (tmp_path / "README.md").read_text()
    with pytest.raises(LeaderboardError) as caught:
        add(tmp_path, "sirt", fake_report(psnr=[22, 23], sha=SHA_B))
    message = str(caught.value)
    assert "lib-a--test--fbp.json" in message and "aaaaaaaaaaaa" in message
    assert "bbbbbbbbbbbb" in message and "\n" not in message
    assert isinstance(caught.value, TomobenchError)
    assert [entry.method for entry in load_entries(tmp_path)] == ["fbp"]
    assert (tmp_path / "README.md").read_text() == readme
    add(tmp_path, "sirt", fake_report(psnr=[22, 23], library="lib-b", sha=SHA_B))  # fine


def test_score_refuses_before_computing_on_a_library_the_leaderboard_disowns(
    tmp_path, tiny_library, tiny_truth
):
    board = tmp_path / "board"
    add(board, "fbp", fake_report(psnr=[20, 21], library="tiny-test", sha=SHA_A))
    submission = write_submission(tmp_path / "sub.npy", tiny_truth)
    with pytest.raises(LeaderboardError, match="says library tiny-test is recipe aaaaaaaaaaaa"):
        score(submission, tiny_library, check=identity_check(board))
    # refused before the submission is even read
    with pytest.raises(LeaderboardError, match="tiny-test"):
        score(tmp_path / "absent.npy", tiny_library, check=identity_check(board))

    # the same recipe and split made by another backend: another identity, refused too
    ours = library_identity(tiny_library)
    assert ours["backend"] == "matrix"
    version = ours["tomobench_format"]
    theirs = make_identity(ours["recipe_sha256"], "astra-cuda", version)
    other = tmp_path / "other"
    add(other, "fbp", fake_report(psnr=[20, 21], library="tiny-test", sha=ours["recipe_sha256"],
                                  backend="astra-cuda", tomobench_format=version))  # fmt: skip
    with pytest.raises(LeaderboardError) as caught:
        score(tmp_path / "absent.npy", tiny_library, check=identity_check(other))
    message = str(caught.value)
    assert f"{theirs['sha256'][:12]} (astra-cuda, format {version})" in message
    assert f"{ours['sha256'][:12]} (matrix, format {version})" in message
    assert "\n" not in message

    fresh = tmp_path / "fresh"
    report = score(submission, tiny_library, check=identity_check(fresh))
    path = add(fresh, "ground truth", report)
    (entry,) = load_entries(fresh)
    assert entry.recipe_sha256 == make_recipe().sha256() and entry.n == 9
    assert entry.identity.model_dump() == ours
    assert entry.metrics["psnr"].mean == math.inf and entry.metrics["ssim"].mean == 1.0
    assert path.name == "tiny-test--test--ground-truth.json" and check_readme(fresh)


BROKEN = {
    "not json": ("{ nope", "not valid JSON (line 1 column 3"),
    "unknown key": ({"colour": "red"}, "unknown field 'colour'"),
    "missing key": ({"who": None}, "missing field 'who'"),
    "bad number": (
        {"metrics": {"psnr": {"mean": "high"}}},
        "field 'metrics.psnr.mean': Input should be a valid number",
    ),
    "bad hash": ({"recipe_sha256": "abc"}, "field 'recipe_sha256'"),
    "identity of another recipe": (
        {"identity": make_identity(SHA_B)},
        "identity.recipe_sha256 bbbbbbbbbbbb… is not the entry's recipe_sha256 aaaaaaaaaaaa…",
    ),
    "identity with a wrong digest": (
        {"identity": {**make_identity(SHA_A), "backend": "astra-cpu"}},
        "field 'identity': Value error, sha256",
    ),
    "identity without a backend": (
        {"identity": {k: v for k, v in make_identity().items() if k != "backend"}},
        "missing field 'identity.backend'",
    ),
    "bad date": ({"date": "01/05/2024"}, "field 'date'"),
    "bad split": ({"split": "dev"}, "split must be one of train, val, test"),
    "no commands": ({"reproduce": []}, "field 'reproduce'"),
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_a_malformed_entry_names_its_file_and_field(tmp_path, case):
    path = add(tmp_path, "fbp", fake_report(psnr=[20, 21]))
    change, words = BROKEN[case]
    if isinstance(change, str):
        path.write_text(change)
    else:
        data = json.loads(path.read_text())
        for key, value in change.items():
            if value is None:
                del data[key]
            elif key == "metrics":
                data["metrics"]["psnr"].update(value["psnr"])
            else:
                data[key] = value
        path.write_text(json.dumps(data))
    for action in (load_entries, render, check_readme):
        with pytest.raises(LeaderboardError) as caught:
            action(tmp_path)
        assert str(caught.value).startswith(f"{path}: ")
        assert words in str(caught.value)


def test_an_entry_without_identity_is_refused_as_predating_identities(tmp_path):
    path = add(tmp_path, "fbp", fake_report(psnr=[20, 21]))
    data = json.loads(path.read_text())
    del data["identity"]
    path.write_text(json.dumps(data))
    for action in (load_entries, render, check_readme):
        with pytest.raises(LeaderboardError) as caught:
            action(tmp_path)
        message = str(caught.value)
        assert message.startswith(f"{path}: the entry predates library identities")
        assert "re-make it" in message and "\n" not in message
    with pytest.raises(LeaderboardError, match="predates library identities"):
        add(tmp_path, "sirt", fake_report(psnr=[22, 23]))


def test_two_identities_differing_only_by_backend_are_refused_together_and_rendered_apart(
    tmp_path,
):
    cpu, gpu = make_identity(SHA_A, "matrix"), make_identity(SHA_A, "astra-cuda")
    assert cpu["sha256"] != gpu["sha256"]
    add(tmp_path, "fbp", fake_report(psnr=[20, 21]))
    readme = (tmp_path / "README.md").read_text()
    on_gpu = fake_report(psnr=[30, 31], backend="astra-cuda")
    with pytest.raises(LeaderboardError) as caught:
        add(tmp_path, "sirt", on_gpu)
    message = str(caught.value)
    assert "\n" not in message and "lib-a--test--fbp.json" in message
    assert f"{cpu['sha256'][:12]} (matrix, format 1)" in message
    assert f"{gpu['sha256'][:12]} (astra-cuda, format 1)" in message
    assert [entry.method for entry in load_entries(tmp_path)] == ["fbp"]
    assert (tmp_path / "README.md").read_text() == readme
    with pytest.raises(LeaderboardError, match="astra-cuda"):
        check_identity(tmp_path, "lib-a", "test", gpu)
    check_identity(tmp_path, "lib-a", "val", gpu)  # another split: nothing to rank it with
    check_identity(tmp_path, "lib-b", "test", gpu)  # another library

    # entries that reach the folder anyway (written by hand) are never ranked together
    write_entry(tmp_path, entry_from_report(on_gpu, method="sirt", who="bo", reproduce=["x"]))
    markdown = render(tmp_path)
    headings = [line for line in markdown.splitlines() if line.startswith("## ")]
    assert headings == [
        f"## lib-a · split test · recipe aaaaaaaaaaaa · backend {backend} · format 1 · "
        f"identity {identity['sha256'][:12]}"
        for backend, identity in (("astra-cuda", gpu), ("matrix", cpu))
    ]
    (gpu_row,) = table_rows(markdown, headings[0])
    (cpu_row,) = table_rows(markdown, headings[1])
    assert (gpu_row[0], gpu_row[1].split("]")[0], gpu_row[2]) == ("1", "[sirt", "30.50 ± 0.50")
    assert (cpu_row[0], cpu_row[1].split("]")[0], cpu_row[2]) == ("1", "[fbp", "20.50 ± 0.50")


def test_entry_needs_method_who_and_commands():
    report = fake_report(psnr=[20, 21])
    with pytest.raises(LeaderboardError, match="field 'reproduce'"):
        entry_from_report(report, method="m", who="w", reproduce=[])
    with pytest.raises(LeaderboardError, match="field 'who'"):
        entry_from_report(report, method="m", who="  ", reproduce=["x"])
    with pytest.raises(ValueError, match="colour"):
        Entry.model_validate({"colour": 1})


def test_missing_leaderboard_folder(tmp_path):
    with pytest.raises(LeaderboardError, match="no leaderboard folder at"):
        load_entries(tmp_path / "absent")
    shutil.rmtree(tmp_path)
    path = add(tmp_path / "new" / "board", "m", fake_report(psnr=[1, 2]))
    assert path.exists() and check_readme(tmp_path / "new" / "board")


def test_date_as_iso_text():
    report = fake_report(psnr=[20, 21])
    entry = entry_from_report(report, method="m", who="w", reproduce=["x"], date="2023-12-31")
    assert entry.date == datetime.date(2023, 12, 31)
    with pytest.raises(LeaderboardError, match="ISO date"):
        entry_from_report(report, method="m", who="w", reproduce=["x"], date="31/12/2023")


def test_published_leaderboard_is_rendered_from_its_entries():
    from conftest import ROOT

    board = ROOT / "leaderboard"
    entries = load_entries(board)
    assert entries, "the leaderboard has no entries"
    assert check_readme(board), "leaderboard/README.md is out of date: run `tomobench leaderboard`"
    from tomobench.recipe import load_recipe, published_recipes

    hashes = {
        load_recipe(path).name: load_recipe(path).sha256() for path in published_recipes().values()
    }
    from tomobench.store.format import FORMAT_VERSION

    for entry in entries:
        assert entry.recipe_sha256 == hashes[entry.library], f"{entry.method}: recipe changed"
        assert entry.identity.tomobench_format == FORMAT_VERSION, f"{entry.method}: format"
        assert entry.reproduce[0].startswith("tomobench build")
        assert any(command.startswith("tomobench score") for command in entry.reproduce)


# -- training budgets -----------------------------------------------------------------------


def fake_run(folder, **info_changes):
    """A finished run folder's run.json and config.yaml, as tomobench train writes them."""
    folder.mkdir()
    info = {
        "tomobench_version": "0.1.0",
        "keras_version": "3.1.0",
        "tensorflow_version": "2.16.1",
        "model": "edsr",
        "parameters": 194817,
        "library": {"name": "lib-a", "path": "lib-a.h5", "recipe_sha256": SHA_A},
        "train_samples": 2500,
        "samples_per_epoch": 1000,
        "epochs_completed": 10,
        "train_seconds": 123.0,
        "hardware": "AMD EPYC, 2 CPUs, no GPU",
        **info_changes,
    }
    (folder / "run.json").write_text(json.dumps(info))
    (folder / "config.yaml").write_text(
        "model: edsr\noptions: {res_blocks: 8, filters: 32}\ntrain_split: val\n"
    )
    return folder


def test_an_entry_records_how_its_method_was_trained(tmp_path):
    training = training_of(fake_run(tmp_path / "run"))
    assert (training.model, training.parameters, training.split) == ("edsr", 194817, "val")
    assert training.options == {"res_blocks": 8, "filters": 32}
    assert (training.epochs, training.samples_per_epoch, training.seconds) == (10, 1000, 123.0)
    assert training.versions == {"tomobench": "0.1.0", "keras": "3.1.0", "tensorflow": "2.16.1"}
    entry = entry_from_report(
        fake_report(psnr=[30.0, 32.0]),
        method="EDSR",
        who="ann",
        reproduce=["x"],
        training=training,
    )
    path = write_entry(tmp_path / "board", entry)
    assert load_entries(tmp_path / "board") == [entry]
    assert json.loads(path.read_text())["training"]["hardware"] == "AMD EPYC, 2 CPUs, no GPU"
    readme = render(tmp_path / "board")
    assert "| training |" in readme
    assert "10 epochs × 1,000 samples of lib-a val, 2.0 min on AMD EPYC, 2 CPUs, no GPU" in readme


def test_a_run_folder_that_is_not_finished_is_named(tmp_path):
    run = fake_run(tmp_path / "run")
    (run / "run.json").unlink()
    with pytest.raises(LeaderboardError, match=r"--run .*run: not a finished run folder "
                       r"\(run.json is missing\)"):  # fmt: skip
        training_of(run)
    (run / "run.json").write_text("{")
    with pytest.raises(LeaderboardError, match=r"its run.json or config.yaml does not read"):
        training_of(run)
