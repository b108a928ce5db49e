"""Files written whole or not at all: tomobench._atomic, the one way outputs are written."""

import shutil

import numpy as np
import pytest

from tomobench._atomic import atomic_path, write_text_atomically
from tomobench.errors import StoreError, SubmissionError, TomobenchError


def hidden(folder):
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def test_text_is_written_and_replaces_the_old_file(tmp_path):
    path = tmp_path / "report.json"
    path.write_text("old")
    assert write_text_atomically(path, "new\n") == path
    assert path.read_text() == "new\n"
    assert write_text_atomically(str(tmp_path / "b.md"), "b") == tmp_path / "b.md"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.md", "report.json"]


def test_the_temporary_keeps_the_suffix_for_writers_that_choose_a_format_by_it(tmp_path):
    path = tmp_path / "cache.npz"
    with atomic_path(path) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".cache.npz.")
        assert temporary.suffix == ".npz"
        np.savez(temporary, a=np.arange(3))  # np.savez adds .npz to a name without it
    with np.load(path) as saved:
        np.testing.assert_array_equal(saved["a"], [0, 1, 2])
    assert hidden(tmp_path) == []


def test_a_failure_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "entry.json"
    path.write_text("old")
    with pytest.raises(ZeroDivisionError), atomic_path(path) as temporary:
        temporary.write_text("half")
        1 / 0  # noqa: B018
    assert path.read_text() == "old" and hidden(tmp_path) == []
    with pytest.raises(KeyboardInterrupt), atomic_path(path) as temporary:
        temporary.mkdir()  # a folder, as a Zarr writer leaves
        (temporary / "chunk").write_bytes(b"x")
        raise KeyboardInterrupt
    assert path.read_text() == "old" and hidden(tmp_path) == []


def test_an_oserror_is_one_line_of_the_callers_class_naming_the_path(tmp_path):
    path = tmp_path / "absent" / "scores.csv"
    with pytest.raises(TomobenchError) as caught:
        write_text_atomically(path, "x")
    assert str(caught.value) == f"cannot write {path}: No such file or directory"
    assert type(caught.value) is TomobenchError
    with pytest.raises(SubmissionError) as caught:
        write_text_atomically(path, "x", error=SubmissionError)
    assert str(caught.value) == f"cannot write {path}: No such file or directory"
    target = tmp_path / "figure.png"
    with pytest.raises(SubmissionError, match="figure.png: Permission denied"):
        with atomic_path(target, error=SubmissionError) as temporary:
            temporary.write_bytes(b"png")
            raise PermissionError(13, "Permission denied")
    assert not target.exists() and hidden(tmp_path) == []


def test_errors_meant_for_the_user_pass_through_unchanged(tmp_path):
    refused = StoreError("the writer's own one line")  # an OSError too: not rewritten
    with pytest.raises(StoreError) as caught, atomic_path(tmp_path / "x.npy") as temporary:
        temporary.write_bytes(b"")
        raise refused
    assert caught.value is refused and list(tmp_path.iterdir()) == []


def test_a_library_is_never_replaced(tmp_path, tiny_library):
    library = shutil.copy(tiny_library, tmp_path / "lib.h5")
    before = library.read_bytes()
    with pytest.raises(StoreError, match="lib.h5 is a tomobench library: write the output under"):
        write_text_atomically(library, "{}")
    with pytest.raises(StoreError, match="is a tomobench library"):
        with atomic_path(library) as temporary:
            pytest.fail(f"the block ran, with {temporary}")
    assert library.read_bytes() == before and hidden(tmp_path) == []


def test_a_folder_replaces_a_folder_whole_but_a_file_never_does(tmp_path):
    path = tmp_path / "sub.zarr"
    path.mkdir()
    (path / "old-chunk").write_text("old")
    with atomic_path(path) as temporary:
        temporary.mkdir()
        (temporary / "new-chunk").write_text("new")
    assert [p.name for p in path.iterdir()] == ["new-chunk"] and hidden(tmp_path) == []
    with pytest.raises(TomobenchError, match=f"cannot write {path}: "):
        write_text_atomically(path, "a file")
    assert [p.name for p in path.iterdir()] == ["new-chunk"] and hidden(tmp_path) == []
