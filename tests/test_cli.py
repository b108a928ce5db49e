import json
import os
import resource
import shutil
import signal
import subprocess
import sys

import h5py
import pytest
from typer.testing import CliRunner

from tomobench.cli import app

from conftest import ROOT, TINY, run_cli

runner = CliRunner()


def tomobench(*args, cwd=None, preexec_fn=None):
    return run_cli(*args, cwd=cwd, preexec_fn=preexec_fn)


def write_recipe(path, **changes):
    path.write_text(json.dumps({**TINY, **changes}))  # JSON is YAML
    return path


def assert_one_line_error(result, *words):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


def test_build_then_info(tmp_path):
    recipe = write_recipe(tmp_path / "tiny.yaml")
    result = runner.invoke(app, ["build", str(recipe), "--out", str(tmp_path / "t.zarr")])
    assert result.exit_code == 0, result.output
    assert "built" in result.output
    result = runner.invoke(app, ["info", str(tmp_path / "t.zarr")])
    assert result.exit_code == 0
    for words in ("tiny-test", "complete", "sinograms", "12 × 24 × 34", "images_x4", "3/3",
                  "identity test:", "backend matrix, format 2"):
        assert words in result.output


def test_build_a_published_recipe_by_name_with_splits(tmp_path):
    result = tomobench("build", "tiny", "--splits", "test", "--out", tmp_path / "t.h5")
    assert result.returncode == 0, result.stderr
    with h5py.File(tmp_path / "t.h5", "r") as file:
        assert set(file) == {"angles", "test"} and file["test/images"].shape == (10, 32, 32)


def test_bad_recipe_is_one_line_and_exit_2(tmp_path):
    recipe = write_recipe(tmp_path / "bad.yaml", geometry={"angles": 0, "colour": "red"})
    result = tomobench("build", recipe, "--out", tmp_path / "x.h5")
    assert_one_line_error(result, "geometry.angles", "geometry.colour: unknown field")
    assert not list(tmp_path.glob("x.h5*"))


def test_missing_library_and_recipe(tmp_path):
    assert_one_line_error(tomobench("info", tmp_path / "none.h5"), "no library at")
    assert_one_line_error(tomobench("build", tmp_path / "none.yaml"), "not found")


def test_foreign_library_is_refused(tmp_path):
    out = tmp_path / "lib.h5"
    assert tomobench("build", write_recipe(tmp_path / "a.yaml"), "--out", out).returncode == 0
    other = write_recipe(tmp_path / "b.yaml", seed=5)
    assert_one_line_error(tomobench("build", other, "--out", out), "another recipe")


def test_full_disk_is_one_line_and_nothing_complete(tmp_path):
    """A file-size limit stands in for a full disk: every write past it fails. An HDF5
    library takes its space when created, so the build fails before any chunk."""

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    recipe = write_recipe(tmp_path / "r.yaml")
    result = tomobench("build", recipe, "--out", tmp_path / "lib.h5", preexec_fn=limit_file_size)
    assert_one_line_error(result, "cannot create", "lib.h5.partial")
    assert "kept" not in result.stderr  # no partial library was made
    assert sorted(path.name for path in tmp_path.iterdir()) == ["r.yaml"]
    result = tomobench("build", recipe, "--out", tmp_path / "lib.h5")  # space is back
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "lib.h5").exists()


def test_a_write_that_fails_in_a_worker_is_one_line(tmp_path):
    """In a parallel Zarr build the workers write the chunks: a file-size limit that the
    metadata stays under and a sinogram chunk does not (the workers inherit it) fails
    their writes, which the build process reports as its one line."""

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    recipe = write_recipe(tmp_path / "r.yaml")
    out = tmp_path / "lib.zarr"
    result = tomobench("build", recipe, "--out", out, "--workers", "2", preexec_fn=limit_file_size)
    assert_one_line_error(result, "cannot write", "File too large", "run the same build again")
    assert not out.exists() and (tmp_path / "lib.zarr.partial").exists()
    result = tomobench("build", recipe, "--out", out, "--workers", "2")
    assert result.returncode == 0, result.stderr
    assert out.exists()


def test_recipe_schema_is_json_schema():
    result = runner.invoke(app, ["recipe-schema"])
    schema = json.loads(result.output)
    assert schema["additionalProperties"] is False
    assert {"name", "seed", "source", "splits"} <= set(schema["required"])
    assert "geometry" in schema["properties"]


def test_demo(tmp_path):
    result = tomobench("demo", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "tomobench-demo" in result.stdout and "complete" in result.stdout
    assert "FBP baseline" in result.stdout
    folder = tmp_path / "tomobench-demo"
    with h5py.File(folder / "demo.h5", "r") as file:
        assert file["train/images"].shape == (400, 64, 64)
    assert json.loads((folder / "fbp-hann.json").read_text())["n"] == 50
    assert (folder / "demo.png").stat().st_size > 10_000


def test_readme_test_command_is_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line.strip() for line in readme.splitlines() if "pytest" in line]
    assert commands, "README.md names no test command"
    assert commands[0].strip("` ") in ci
    assert os.access(ROOT / ".ci" / "run", os.X_OK)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["build"], "Missing argument 'recipe'; see tomobench build --help"),
        (["build", "x", "--workers", "0"], "Invalid value for '--workers'"),
        (["frobnicate"], "No such command 'frobnicate'"),
        (["score", "a.npy", "lib.h5", "--colour"], "No such option: --colour"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args, words):
    assert_one_line_error(tomobench(*args), words)


def test_baseline_score_and_leaderboard(tmp_path, tiny_library):
    import numpy as np

    submission = tmp_path / "sirt.h5"
    result = runner.invoke(
        app, ["baseline", "sirt", str(tiny_library), "--out", str(submission),
              "--iterations", "20", "--nonnegative"]
    )
    assert result.exit_code == 0, result.output
    with h5py.File(submission, "r") as file:
        assert file["reconstructions"].shape == (9, 32, 32)
        assert file["reconstructions"][...].min() >= 0
    board = tmp_path / "board"
    report = tmp_path / "report.json"
    result = runner.invoke(
        app, ["score", str(submission), str(tiny_library), "--json", str(report),
              "--leaderboard", str(board), "--method", "SIRT 20", "--who", "tests",
              "--reproduce", "tomobench baseline sirt tiny.h5 --out sirt.h5 --iterations 20"]
    )
    assert result.exit_code == 0, result.output
    assert "FBP baseline" in result.output and "psnr" in result.output
    written = json.loads(report.read_text())
    assert written["n"] == 9
    short = written["identity"]["sha256"][:12]
    assert f"identity {short}: matrix" in " ".join(result.output.split())
    entries = list((board / "entries").glob("*.json"))
    assert len(entries) == 1
    entry = json.loads(entries[0].read_text())
    assert entry["identity"] == written["identity"]
    assert entry["method"] == "SIRT 20" and entry["reproduce"][0].startswith("tomobench baseline")
    assert entry["reproduce"][-1].startswith("tomobench score")
    assert "SIRT 20" in (board / "README.md").read_text()
    (board / "README.md").unlink()
    assert runner.invoke(app, ["leaderboard", str(board)]).exit_code == 0
    assert "SIRT 20" in (board / "README.md").read_text()

    # another submission under the same method: refused, then replaced with --overwrite
    fbp = tmp_path / "fbp.npy"
    assert tomobench("baseline", "fbp", tiny_library, "--out", fbp).returncode == 0
    assert np.load(fbp).min() < 0  # written as reconstructed: score clips, baseline does not
    again = ["score", fbp, tiny_library, "--leaderboard", board, "--method", "SIRT 20",
             "--who", "tests"]
    assert_one_line_error(tomobench(*again), "already holds an entry for 'SIRT 20'",
                          "--overwrite")
    assert json.loads(entries[0].read_text()) == entry
    assert_one_line_error(tomobench("score", fbp, tiny_library, "--overwrite"),
                          "--overwrite applies to a leaderboard entry")
    assert_one_line_error(tomobench("score", fbp, tiny_library, "--run", tmp_path),
                          "--run applies to a leaderboard entry")
    assert_one_line_error(tomobench(*again, "--run", tmp_path / "nowhere"),
                          "not a finished run folder (run.json is missing)")
    result = tomobench(*again, "--overwrite")
    assert result.returncode == 0, result.stderr
    replaced = json.loads(entries[0].read_text())
    assert replaced["metrics"]["psnr"]["mean"] != entry["metrics"]["psnr"]["mean"]
    assert replaced["reproduce"] == [f"tomobench score {fbp} {tiny_library} --split test"]


def test_baseline_refuses_a_library_still_being_built(tmp_path, tiny_library):
    """An interrupted build's unwritten samples read as zeros: no submission from them."""
    partial = shutil.copy(tiny_library, tmp_path / "lib.h5.partial")
    with h5py.File(partial, "r+") as file:
        file.attrs["complete"] = False
    out = tmp_path / "fbp.npy"
    result = tomobench("baseline", "fbp", tmp_path / "lib.h5", "--out", out)
    assert_one_line_error(result, "lib.h5.partial", "the library is incomplete")
    assert not out.exists()


def test_a_bad_submission_is_one_line_and_no_entry(tmp_path, tiny_library):
    import numpy as np

    bad = tmp_path / "bad.npy"
    values = np.zeros((9, 32, 32), dtype=np.float32)
    values[3, 4, 5] = np.nan
    np.save(bad, values)
    result = tomobench("score", bad, tiny_library, "--leaderboard", tmp_path / "board",
                       "--method", "x")
    assert_one_line_error(result, "bad.npy", "NaN")
    assert not (tmp_path / "board").exists()
    result = tomobench("baseline", "fbp", tiny_library, "--out", tmp_path / "f.npy",
                       "--filter", "ramp")
    assert_one_line_error(result, "unknown FBP filter 'ramp'")


def test_show_writes_a_figure(tmp_path, tiny_library):
    figure = tmp_path / "fig.png"
    result = runner.invoke(app, ["show", str(tiny_library), "--out", str(figure),
                                 "--samples", "2"])
    assert result.exit_code == 0, result.output
    assert figure.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_datasets_lists_the_registry():
    result = runner.invoke(app, ["datasets"])
    assert result.exit_code == 0
    for words in ("DIV2K_train_HR.zip", "sinograms_used_in_paper.h5", "sha256", "not checked"):
        assert words in result.output


def test_fetch_an_unknown_dataset_is_one_line():
    assert_one_line_error(tomobench("fetch", "DIV2K_train.zip"), "DIV2K_train_HR.zip")


@pytest.fixture(scope="module")
def tiny_zarr(tmp_path_factory):
    from tomobench.builder import build

    from conftest import make_recipe

    return build(make_recipe(), tmp_path_factory.mktemp("zarr") / "tiny.zarr")


def damaged_copies(tmp_path, tiny_library, tiny_zarr):
    """Copies of the tiny libraries, each with one thing broken, and the words of its line."""
    cases = []

    def h5_copy(name, change):
        path = shutil.copy(tiny_library, tmp_path / name)
        with h5py.File(path, "r+") as file:
            change(file)
        return path

    def set_attr(key, value):
        def change(file):
            file.attrs[key] = value
        return change

    def drop(key):
        def change(file):
            if key in file.attrs:
                del file.attrs[key]
            else:
                del file[key]
        return change

    cases.append((h5_copy("recipe.h5", set_attr("recipe", "{not json")), "recipe attribute"))
    cases.append((h5_copy("format.h5", set_attr("tomobench_format", "one")),
                  "tomobench_format 'one'"))
    cases.append((h5_copy("sha.h5", drop("recipe_sha256")), "no recipe_sha256 attribute"))
    cases.append((h5_copy("images.h5", drop("test/images")), "has no array 'images'"))

    def zarr_copy(name):
        return shutil.copytree(tiny_zarr, tmp_path / name)

    lost_meta = zarr_copy("meta.zarr")
    (lost_meta / "test" / "images" / "zarr.json").unlink()
    cases.append((lost_meta, "has no array 'images'"))
    corrupt = zarr_copy("corrupt.zarr")
    chunk = next(path for path in (corrupt / "test" / "images" / "c").rglob("*") if path.is_file())
    chunk.write_bytes(b"junk")
    cases.append((corrupt, "test/images does not read"))
    lost_chunk = zarr_copy("lost.zarr")  # a copy cut short: the chunk reads as NaN, not zeros
    (lost_chunk / "test" / "images" / "c" / "0" / "0" / "0").unlink()  # samples 0-3
    meta = json.loads((lost_chunk / "test" / "images" / "zarr.json").read_text())
    assert meta["fill_value"] == "NaN"
    cases.append((lost_chunk, "test/images holds 4096 non-finite values"))  # 4 images of 32²
    return cases


def test_a_damaged_library_is_one_line_for_every_command(tmp_path, tiny_library, tiny_zarr,
                                                         tiny_truth):
    import numpy as np

    submission = tmp_path / "truth.npy"
    np.save(submission, tiny_truth)
    for library, words in damaged_copies(tmp_path, tiny_library, tiny_zarr):
        commands = [("score", submission, library)]
        if "does not read" not in words and "non-finite" not in words:
            commands.append(("info", library))  # which reads no samples
        if "images" not in words:  # baseline reads the sinograms only
            commands.append(("baseline", "fbp", library, "--out", tmp_path / "b.npy"))
        for command in commands:
            assert_one_line_error(tomobench(*command), str(library.name), words)


def test_no_output_replaces_a_library(tmp_path, tiny_library, tiny_zarr, tiny_truth):
    import numpy as np

    library = shutil.copy(tiny_library, tmp_path / "lib.h5")
    zarr_library = shutil.copytree(tiny_zarr, tmp_path / "lib.zarr")
    before = library.read_bytes()
    submission = tmp_path / "truth.npy"
    np.save(submission, tiny_truth)
    for command in [
        ("baseline", "fbp", library, "--out", library),
        ("baseline", "fbp", library, "--out", zarr_library),
        ("score", submission, library, "--json", library),
        ("score", submission, library, "--csv", zarr_library),
        ("show", library, "--out", library),
    ]:
        assert_one_line_error(tomobench(*command), "is a tomobench library")
    assert library.read_bytes() == before
    assert tomobench("info", zarr_library).returncode == 0
    # said before scoring: no table of scores comes first
    assert "psnr" not in tomobench("score", submission, library, "--json", library).stdout
    folder = tmp_path / "folder.npy"
    folder.mkdir()
    result = tomobench("baseline", "fbp", library, "--out", folder)
    assert_one_line_error(result, "a folder that is not a Zarr submission is there")
    assert folder.is_dir()
    result = tomobench("score", submission, library, "--csv", tmp_path / "absent" / "s.csv")
    assert_one_line_error(result, "cannot write", "s.csv: No such file or directory")


def test_build_errors_found_while_building_are_one_line(tmp_path):
    recipe = write_recipe(tmp_path / "loud.yaml", noise=[{"kind": "gaussian", "sigma": 1e300}])
    result = tomobench("build", recipe, "--out", tmp_path / "loud.h5")
    assert_one_line_error(result, "makes sinogram values too large for float32")
    assert not (tmp_path / "loud.h5").exists()
    recipe = write_recipe(tmp_path / "ok.yaml")
    result = tomobench("build", recipe, "--out", tmp_path / "s.h5", "--scheduler", "nowhere")
    assert_one_line_error(result, "cannot reach the dask scheduler at nowhere")
    result = tomobench("build", recipe, "--out", tmp_path / "c.h5", "--chunk", "1000000")
    assert_one_line_error(result, "output.chunk")
    (tmp_path / "binary.yaml").write_bytes(bytes(range(256)))
    assert_one_line_error(tomobench("build", tmp_path / "binary.yaml"), "not UTF-8 text")
    (tmp_path / "dir.h5").mkdir()  # h5py's message for it spans two lines
    assert_one_line_error(tomobench("build", recipe, "--out", tmp_path / "dir.h5"), "dir.h5")


def test_cross_names_a_path_that_is_not_there(tmp_path, tiny_library):
    result = tomobench("cross", tmp_path / "no-run", tiny_library)
    assert_one_line_error(result, "no such run folder or library", "no-run")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_an_output_that_cannot_be_written_is_one_line(tiny_library):
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "tomobench.cli", "info", str(tiny_library)],
                                stdout=full, stderr=subprocess.PIPE, text=True)
    assert result.returncode == 2, result.stderr
    assert result.stderr == "error: cannot write the output: No space left on device\n"
