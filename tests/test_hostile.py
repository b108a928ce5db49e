"""Hostile input: archives, registries and YAML files made to harm. Each ends with one line
(a TomobenchError from the API; exit code 2 from the command line), in bounded time and
memory, with nothing written outside where it should be. Archives are made here with
tarfile / zipfile and served over loopback HTTP; nothing leaves 127.0.0.1."""

from __future__ import annotations

import hashlib
import io
import json
import os
import resource
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from tomobench import datasets
from tomobench.datasets import DatasetError, fetch, list_datasets
from tomobench.errors import RecipeError
from tomobench.recipe import load_recipe, parse_recipe, read_yaml

from conftest import TINY, run_cli

needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")


pytestmark = pytest.mark.usefixtures("cache")


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder beside the cache that nothing may be written to."""
    folder = tmp_path / "outside"
    folder.mkdir()
    return folder


def entry_line(name: str, data: bytes, url: str, size: int | str = "-") -> str:
    digest = hashlib.sha256(data).hexdigest()
    return f'{name} sha256:{digest} {url} size={size} licence=CC0-1.0 citation="hostile"'


def registered(server, tmp_path: Path, name: str, data: bytes, **size) -> Path:
    """A registry of one entry: ``data`` served as ``name``, with its sha256."""
    (server.folder / name).write_bytes(data)
    registry = tmp_path / "registry.txt"
    registry.write_text(entry_line(name, data, server.url(name), **size) + "\n")
    return registry


def listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def one_line(error: BaseException) -> str:
    message = str(error)
    assert "\n" not in message and len(message) < 2000, message[:3000]
    return message


def cli(*args, cwd=None, timeout=120, memory=4 << 30) -> subprocess.CompletedProcess:
    """``tomobench ARGS`` in a process of at most ``memory`` bytes of address space, killed
    after ``timeout`` seconds (a generous bound: each of these commands takes seconds)."""

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    return run_cli(*args, cwd=cwd, timeout=timeout, preexec_fn=limit, env=env)


def assert_one_line_error(result: subprocess.CompletedProcess, *words: str) -> str:
    """Exit code 2 and one line of error on stderr (after pooch's "Downloading file" line,
    where a file was downloaded)."""
    assert result.returncode == 2, result.stderr[-3000:]
    lines = result.stderr.strip().splitlines()
    if lines and lines[0].startswith("Downloading file "):
        lines = lines[1:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    assert len(lines[0]) < 2000, lines[0][:3000]
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


# --- archives: members that leave their folder ------------------------------------------


def tar_member(name: str, data: bytes = b"", *, kind=tarfile.REGTYPE, link: str = ""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info, data


def tar_bytes(mode: str, *members) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode, format=tarfile.PAX_FORMAT) as archive:
        for info, data in members:
            archive.addfile(info, io.BytesIO(data) if info.isreg() else None)
    return buffer.getvalue()


def zip_bytes(*members, compression=zipfile.ZIP_STORED) -> bytes:
    """A zip of (name, data[, unix mode]) members."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data, *mode in members:
            info = zipfile.ZipInfo(name)
            info.compress_type = compression
            if mode:
                info.create_system, info.external_attr = 3, mode[0] << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def hostile_tars(outside: Path) -> list[tuple[str, bytes, str, str]]:
    """(archive name, bytes, offending member, problem) of tar archives that would write
    ``outside/escaped.txt`` (or next to the folder) if unpacked as they ask."""
    escaped = str(outside / "escaped.txt")
    cases = [
        ("absolute.tar", "w", [tar_member(escaped, b"x")], escaped, "has an absolute path"),
        ("dotdot.tar.gz", "w:gz", [tar_member("../escaped.txt", b"x")], "../escaped.txt",
         "has a '..' component"),
        ("deep-dotdot.tgz", "w:gz", [tar_member("a/../../escaped.txt", b"x")],
         "a/../../escaped.txt", "has a '..' component"),
        ("symlink-absolute.tar", "w",
         [tar_member("link", kind=tarfile.SYMTYPE, link=str(outside)),
          tar_member("link/escaped.txt", b"x")],
         "link", "is a symbolic link to the absolute path"),
        ("symlink-up.tar", "w",
         [tar_member("up", kind=tarfile.SYMTYPE, link="../../outside"),
          tar_member("up/escaped.txt", b"x")],
         "up", "is a symbolic link to '../../outside', outside the folder"),
        # "here" is the folder itself, so "here/.." is its parent: only a check that follows
        # the links of the archive itself sees it
        ("symlink-chain.tar", "w",
         [tar_member("here", kind=tarfile.SYMTYPE, link="."),
          tar_member("up", kind=tarfile.SYMTYPE, link="here/.."),
          tar_member("up/escaped.txt", b"x")],
         "up", "is a symbolic link to 'here/..', through another symbolic link"),
        ("hardlink-absolute.tar", "w",
         [tar_member("hard", kind=tarfile.LNKTYPE, link=str(outside / "secret.txt"))],
         "hard", f"is a hard link to {str(outside / 'secret.txt')!r}, which has an absolute path"),
        ("hardlink-up.tar", "w",
         [tar_member("hard", kind=tarfile.LNKTYPE, link="../outside/secret.txt")],
         "hard", "is a hard link to '../outside/secret.txt', which has a '..' component"),
        ("device.tar", "w", [tar_member("null", kind=tarfile.CHRTYPE)], "null",
         "is a character device"),
        ("block.tar", "w", [tar_member("disk", kind=tarfile.BLKTYPE)], "disk",
         "is a block device"),
        ("fifo.tar", "w", [tar_member("pipe", kind=tarfile.FIFOTYPE)], "pipe", "is a FIFO"),
    ]
    return [
        # a harmless member first: nothing of it may be left either
        (name, tar_bytes(mode, tar_member("fine.txt", b"fine"), *members), member, problem)
        for name, mode, members, member, problem in cases
    ]


def hostile_zips(outside: Path) -> list[tuple[str, bytes, str, str]]:
    escaped = str(outside / "escaped.txt")
    link = stat.S_IFLNK | 0o777
    cases = [
        ("absolute.zip", [(escaped, b"x")], escaped, "has an absolute path"),
        ("drive.zip", [("C:/escaped.txt", b"x")], "C:/escaped.txt", "has an absolute path"),
        ("dotdot.zip", [("../escaped.txt", b"x")], "../escaped.txt", "has a '..' component"),
        ("backslash.zip", [("a\\..\\..\\escaped.txt", b"x")], "a\\..\\..\\escaped.txt",
         "has a '..' component"),
        ("symlink-absolute.zip", [("link", str(outside).encode(), link)], "link",
         "is a symbolic link to the absolute path"),
        ("symlink-up.zip", [("link", b"../../outside", link)], "link",
         "is a symbolic link to '../../outside', outside the folder"),
        ("device.zip", [("null", b"", stat.S_IFCHR | 0o666)], "null", "is a character device"),
        ("fifo.zip", [("pipe", b"", stat.S_IFIFO | 0o666)], "pipe", "is a FIFO"),
    ]
    return [
        (name, zip_bytes(("fine.txt", b"fine"), *members), member, problem)
        for name, members, member, problem in cases
    ]


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_an_archive_whose_members_leave_the_folder_is_refused_before_anything_is_written(
    loopback_http, tmp_path, cache, outside, kind
):
    hostile = hostile_tars(outside) if kind == "tar" else hostile_zips(outside)
    for name, data, member, problem in hostile:
        registry = registered(loopback_http, tmp_path, name, data)
        with pytest.raises(DatasetError) as caught:
            fetch(name, registry=registry)
        message = one_line(caught.value)
        assert message.startswith(f"refusing to unpack {name}: member {member!r} {problem}"), (
            message
        )
        assert message.endswith("nothing was unpacked"), message
        assert listing(outside) == [], name  # nothing escaped ...
        assert not (tmp_path / "escaped.txt").exists(), name
        assert listing(cache) == [name], name  # ... and nothing was unpacked, not even fine.txt
        (cache / name).unlink()


def test_links_that_stay_inside_the_folder_are_unpacked(loopback_http, tmp_path, cache):
    data = tar_bytes(
        "w:gz",
        tar_member("data/v1.txt", b"version 1"),
        tar_member("latest", kind=tarfile.SYMTYPE, link="data/v1.txt"),
        tar_member("data/alias.txt", kind=tarfile.SYMTYPE, link="../data/./v1.txt"),
        tar_member("copy.txt", kind=tarfile.LNKTYPE, link="data/v1.txt"),
    )
    folder = fetch("links.tgz", registry=registered(loopback_http, tmp_path, "links.tgz", data))
    assert (folder / "latest").is_symlink()
    for name in ("latest", "data/alias.txt", "copy.txt"):
        assert (folder / name).read_bytes() == b"version 1"
        assert (folder / name).resolve().is_relative_to(folder.resolve())


def test_fetch_of_an_archive_that_leaves_its_folder_is_one_line_and_exit_2(
    loopback_http, tmp_path, cache, outside
):
    name, data, member, _ = hostile_tars(outside)[0]  # an absolute path
    registry = registered(loopback_http, tmp_path, name, data)
    result = cli("fetch", name, "--registry", registry)
    line = assert_one_line_error(result, f"refusing to unpack {name}: member {member!r}")
    assert line.endswith("nothing was unpacked")
    assert listing(outside) == [] and listing(cache) == [name]


# --- archives: what they unpack to ----------------------------------------------------


def zeros_zip(*sizes: int) -> bytes:
    return zip_bytes(
        *((f"zeros-{i}.bin", bytes(size)) for i, size in enumerate(sizes)),
        compression=zipfile.ZIP_DEFLATED,
    )


def zeros_tar(size: int) -> bytes:
    return tar_bytes("w:gz", tar_member("zeros.bin", bytes(size)))


@pytest.mark.parametrize(
    ("name", "make", "unpacked"),
    [
        ("bomb.zip", lambda: zeros_zip(20 << 20), "20971520 bytes"),
        ("many.zip", lambda: zeros_zip(*[1 << 20] * 40), "41943040 bytes"),
        ("bomb.tar.gz", lambda: zeros_tar(20 << 20), "at least 20971520 bytes"),
    ],
)
def test_an_archive_that_unpacks_to_far_more_than_its_size_is_refused(
    loopback_http, tmp_path, cache, name, make, unpacked
):
    data = make()
    registry = registered(loopback_http, tmp_path, name, data, size=len(data))
    with pytest.raises(DatasetError) as caught:
        fetch(name, registry=registry)
    bound = 100 * len(data)
    assert one_line(caught.value) == (
        f"refusing to unpack {name}: its members would unpack to {unpacked}, more than the "
        f"bound of {bound} bytes (100 × the archive's {len(data)} bytes); nothing was unpacked"
    )
    assert listing(cache) == [name]


def test_an_archive_within_the_ratio_is_unpacked(loopback_http, tmp_path, cache):
    noise = os.urandom(20_000)
    data = zip_bytes(("mixed.bin", noise + bytes(1 << 20)), compression=zipfile.ZIP_DEFLATED)
    assert 20 * len(data) < len(noise) + (1 << 20) < 100 * len(data)
    folder = fetch("mixed.zip", registry=registered(loopback_http, tmp_path, "mixed.zip", data))
    assert (folder / "mixed.bin").read_bytes() == noise + bytes(1 << 20)


def test_an_entry_of_unknown_size_has_a_ceiling(loopback_http, tmp_path, cache, monkeypatch):
    monkeypatch.setattr(datasets, "_UNPACK_CEILING", 4000)
    noise = os.urandom(5000)
    data = zip_bytes(("noise.bin", noise))  # stored: the archive is larger than its content
    registry = registered(loopback_http, tmp_path, "noise.zip", data)  # size=-
    with pytest.raises(DatasetError) as caught:
        fetch("noise.zip", registry=registry)
    assert one_line(caught.value) == (
        "refusing to unpack noise.zip: its members would unpack to 5000 bytes, more than the "
        "bound of 4000 bytes (the 4000 bytes allowed to an entry of unknown size); nothing "
        "was unpacked"
    )
    assert listing(cache) == ["noise.zip"]
    # the same archive with its size declared: 100 × that size is its ceiling
    registry = registered(loopback_http, tmp_path, "noise.zip", data, size=len(data))
    assert (fetch("noise.zip", registry=registry) / "noise.bin").read_bytes() == noise


@pytest.mark.parametrize("name", ["bomb.zip", "bomb.tar.gz"])
def test_bytes_written_are_counted_even_if_the_declared_sizes_lie(
    loopback_http, tmp_path, cache, monkeypatch, name
):
    """The sizes members declare are checked first; were that check fooled (here: switched
    off), the bytes written stop at the bound and nothing is kept."""
    monkeypatch.setattr(datasets._Budget, "declare", lambda self, nbytes, complete: None)
    data = zeros_zip(20 << 20) if name.endswith(".zip") else zeros_tar(20 << 20)
    registry = registered(loopback_http, tmp_path, name, data)
    with pytest.raises(DatasetError) as caught:
        fetch(name, registry=registry)
    message = one_line(caught.value)
    assert message.startswith(
        f"refusing to unpack {name}: it wrote more than the bound of {100 * len(data)} bytes "
        f"(100 × the archive's {len(data)} bytes) at member 'zeros"
    ), message
    assert message.endswith("stopped, and nothing was kept")
    assert listing(cache) == [name]


def test_a_tar_header_that_claims_a_huge_size_is_refused(loopback_http, tmp_path, cache):
    """tarfile reads a pax header whole, whatever size it claims: 40 MiB of it, from an
    archive of a few KiB, is refused before it is read."""
    info, data = tar_member("small.txt", b"small")
    info.pax_headers = {"comment": "x" * (40 << 20)}
    archive = tar_bytes("w:gz", (info, data))
    assert len(archive) < 100_000
    registry = registered(loopback_http, tmp_path, "pax.tar.gz", archive)
    with pytest.raises(DatasetError) as caught:
        fetch("pax.tar.gz", registry=registry)
    message = one_line(caught.value)
    assert message.startswith("refusing to unpack pax.tar.gz: a tar header asks to read ")
    assert f"at once, more than {16 << 20}; nothing was unpacked" in message
    assert listing(cache) == ["pax.tar.gz"]


# --- registries ---------------------------------------------------------------------------


def test_a_registry_line_too_long_is_refused_before_it_is_split(tmp_path):
    base = entry_line("ok.h5", b"", "https://example.org/ok.h5")
    long = tmp_path / "long.txt"
    long.write_text("# a comment\n\n" + base.replace('"hostile"', '"' + "x" * 100_000 + '"'))
    with pytest.raises(DatasetError) as caught:
        list_datasets(registry=long)
    assert one_line(caught.value) == (
        f"registry {long}, line 3: the line is {len(base) - 7 + 100_000} characters long; a "
        "registry line holds at most 4096"
    )
    fits = tmp_path / "fits.txt"  # the longest line allowed is read
    fits.write_text(base.replace('"hostile"', '"' + "x" * (4096 - len(base) + 7) + '"'))
    assert len(fits.read_text()) == 4096
    assert list_datasets(registry=fits)[-1].citation == "x" * (4096 - len(base) + 7)


def test_datasets_with_a_registry_line_too_long_is_one_line_and_exit_2(tmp_path):
    long = tmp_path / "long.txt"
    long.write_text(entry_line("ok.h5", b"", "https://e.org/ok.h5") + " " + "x" * 5_000_000)
    result = cli("datasets", "--registry", long)
    assert_one_line_error(result, f"registry {long}, line 1: the line is 5000")


@needs_fifo
def test_a_registry_that_is_not_a_regular_file_is_refused(tmp_path):
    fifo = tmp_path / "registry.fifo"
    os.mkfifo(fifo)
    result = cli("datasets", "--registry", fifo, timeout=60)  # it used to wait for a writer
    assert_one_line_error(result, f"cannot read registry file {fifo}: not a regular file")


# --- YAML: recipes and training configs -------------------------------------------------


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def laughs(levels: int = 9, key: str = "seed") -> str:
    """A "billion laughs": 9 anchors of 9 aliases each, 9⁹ (387 million) leaves."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for level in range(1, levels + 1):
        lines.append(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 9)}]")
    return "\n".join(lines) + f"\n{key}: *l{levels}\n"


def recipe_text(**changes) -> str:
    return json.dumps({**TINY, **changes})  # JSON is YAML


def test_aliases_that_expand_past_a_bound_are_refused(tmp_path):
    path = write(tmp_path / "laughs.yaml", laughs())
    with pytest.raises(RecipeError) as caught:
        read_yaml(path, what="recipe")
    assert one_line(caught.value) == (
        f"recipe {path}: line 6: aliases expand to more than 100,000 nodes"
    )
    with pytest.raises(RecipeError, match="aliases expand to more than 100,000 nodes"):
        load_recipe(path)
    cycle = write(tmp_path / "cycle.yaml", "seed: &a [1, *a]\n")
    with pytest.raises(RecipeError) as caught:
        load_recipe(cycle)
    assert one_line(caught.value) == (
        f"recipe {cycle}: line 1: alias *a lies inside the node it names"
    )
    # aliases may add depth too: 3 lists of 40, each inside the last
    nested = "\n".join(
        f"n{i}: &n{i} {'[' * 40}{f'*n{i - 1}' if i else '1'}{']' * 40}" for i in range(3)
    )
    deep = write(tmp_path / "deep-aliases.yaml", nested + "\n")
    with pytest.raises(RecipeError) as caught:
        load_recipe(deep)
    assert one_line(caught.value) == (
        f"recipe {deep}: line 3: nested deeper than 100 levels, aliases expanded"
    )


def test_small_aliases_and_merge_keys_still_work(tmp_path):
    text = recipe_text(seed="SEED", splits="SPLITS").replace('"SEED"', "&seed 11")
    text = text.replace('"SPLITS"', "{train: 12, val: 5, test: *seed}")
    assert load_recipe(write(tmp_path / "aliases.yaml", text)).splits["test"] == 11
    merged = write(
        tmp_path / "merged.yaml",
        "base: &base {angles: 24, projector: linear}\ngeometry: {<<: *base, angles: 30}\n",
    )
    assert read_yaml(merged, what="config")["geometry"] == {"angles": 30, "projector": "linear"}


def test_deep_nesting_is_refused_in_one_line(tmp_path):
    path = write(tmp_path / "deep.yaml", "seed: " + "[" * 100_000 + "]" * 100_000 + "\n")
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert one_line(caught.value) == f"recipe {path}: line 1: nested deeper than 100 levels"
    fits = write(tmp_path / "fits.yaml", "seed: " + "[" * 99 + "]" * 99 + "\n")
    value = read_yaml(fits, what="recipe")["seed"]
    for _ in range(98):
        (value,) = value
    assert value == []


def test_an_integer_too_long_is_refused_in_one_line(tmp_path):
    path = write(tmp_path / "digits.yaml", recipe_text(seed="SEED").replace('"SEED"', "7" * 5000))
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert one_line(caught.value) == (
        f"recipe {path}: line 1: an integer of 5000 characters (at most 1000)"
    )
    hexadecimal = write(tmp_path / "hex.yaml", "seed: 0x" + "f" * 4000 + "\n")
    with pytest.raises(RecipeError, match="line 1: an integer of 4002 characters"):
        load_recipe(hexadecimal)
    # through the Python API, an integer of any size is said by its size
    with pytest.raises(RecipeError) as caught:
        parse_recipe({**TINY, "seed": 10**100_000})
    assert "seed: Input should be less than 9223372036854775808 (got <an integer of " in (
        one_line(caught.value)
    )


@pytest.mark.parametrize(
    ("text", "key", "line", "first"),
    [
        ("name: a\nseed: 1\nseed: 2\n", "'seed'", 3, 1 + 1),
        ("source:\n  kind: shapes\n  size: 32\n  size: 64\n", "'size'", 4, 3),
        ("splits: {test: 1, test: 2}\n", "'test'", 1, 1),
        ("1: a\n1.0: b\n", "1.0", 2, 1),  # equal keys, as Python compares them
    ],
)
def test_a_key_given_twice_is_refused(tmp_path, text, key, line, first):
    path = write(tmp_path / "twice.yaml", text)
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert one_line(caught.value) == (
        f"recipe {path}: line {line}: key {key} is given twice (first at line {first})"
    )


def test_a_training_config_is_read_the_same_way(tmp_path):
    from tomobench.models.config import load_config
    from tomobench.models.errors import ConfigError

    path = write(tmp_path / "config.yaml", "model: automap\nepochs: 3\nepochs: 4\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert one_line(caught.value) == (
        f"config {path}: line 3: key 'epochs' is given twice (first at line 2)"
    )
    for hostile, problem in [
        (laughs(key="epochs"), "aliases expand to more than 100,000 nodes"),
        ("epochs: " + "[" * 5000 + "]" * 5000, "nested deeper than 100 levels"),
        ("epochs: " + "9" * 5000, "an integer of 5000 characters"),
    ]:
        with pytest.raises(ConfigError, match=problem):
            load_config(write(path, hostile))
    with pytest.raises(ConfigError, match="cannot be read: it is a folder, not a regular file"):
        load_config(tmp_path)


def test_error_messages_quote_a_bounded_part_of_the_input(tmp_path):
    path = write(tmp_path / "long.yaml", recipe_text(name="x" * 500_000))
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    message = one_line(caught.value)
    assert len(message) < 600 and "(got 'xxxxxxxx" in message and "x…)" in message
    problems = [
        {**TINY, "seed": [0] * 10_000_000},  # today: a message of 30 MB
        {**TINY, "name": ["x" * 1_000_000] * 3},
        {**TINY, "geometry": {**TINY["geometry"], "k" * 1_000_000: 1}},
        {**TINY, "splits": {"y" * 1_000_000: 1}},
    ]
    for data in problems:
        with pytest.raises(RecipeError) as caught:
            parse_recipe(data)
        assert len(one_line(caught.value)) < 1200
    shared = [0] * 10
    for _ in range(6):  # 10⁷ leaves, shared
        shared = [shared] * 10
    with pytest.raises(RecipeError) as caught:
        parse_recipe({**TINY, "name": shared})
    message = one_line(caught.value)
    assert message.startswith("recipe: name: Input should be a valid string (got [[[")


def test_a_yaml_file_too_large_is_refused(tmp_path):
    path = write(tmp_path / "large.yaml", recipe_text(name="x" * (2 << 20)))
    with pytest.raises(RecipeError) as caught:
        load_recipe(path)
    assert one_line(caught.value) == (
        f"recipe {path}: {path.stat().st_size} bytes, more than a recipe may hold "
        "(1048576 bytes)"
    )


def test_what_is_not_a_regular_file_is_refused(tmp_path):
    (tmp_path / "folder.yaml").mkdir()
    with pytest.raises(RecipeError) as caught:
        load_recipe(tmp_path / "folder.yaml")
    assert one_line(caught.value) == (
        f"recipe {tmp_path / 'folder.yaml'}: cannot be read: it is a folder, not a regular file"
    )


@needs_fifo
def test_a_fifo_or_a_device_is_refused_before_it_is_opened(tmp_path):
    """Reading a FIFO waits for a writer; reading /dev/zero never ends. The API is run in a
    process of its own, ended after a generous time."""
    fifo = tmp_path / "recipe.yaml"
    os.mkfifo(fifo)
    code = (
        "import sys\n"
        "from tomobench.errors import TomobenchError\n"
        "from tomobench.recipe import load_recipe, read_yaml\n"
        "for path in sys.argv[1:]:\n"
        "    for read in (load_recipe, lambda p: read_yaml(p, what='config')):\n"
        "        try:\n"
        "            read(path)\n"
        "        except TomobenchError as error:\n"
        "            print(type(error).__name__, error)\n"
    )

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))

    result = subprocess.run(
        [sys.executable, "-c", code, str(fifo), "/dev/zero"],
        capture_output=True, text=True, timeout=60, preexec_fn=limit,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    fifo_kind, zero_kind = "a FIFO (a named pipe)", "a character device"
    assert result.stdout.splitlines() == [
        f"RecipeError {what} {path}: cannot be read: it is {kind}, not a regular file"
        for path, kind in ((fifo, fifo_kind), ("/dev/zero", zero_kind))
        for what in ("recipe", "config")
    ]


def hostile_recipes(tmp_path: Path) -> list[tuple[str, str]]:
    """(recipe argument, words of its error) for ``tomobench build``."""
    cases = [
        (write(tmp_path / "laughs.yaml", laughs()), "aliases expand to more than 100,000"),
        (write(tmp_path / "deep.yaml", "seed: " + "[" * 100_000 + "]" * 100_000),
         "nested deeper than 100 levels"),
        (write(tmp_path / "digits.yaml", "seed: " + "7" * 5000), "an integer of 5000"),
        (write(tmp_path / "long.yaml", recipe_text(name="x" * 500_000)), "x…)"),
        (tmp_path / ("n" * 5000), "cannot be read: File name too long"),
    ]
    if hasattr(os, "mkfifo"):
        os.mkfifo(tmp_path / "fifo.yaml")
        cases += [
            (tmp_path / "fifo.yaml", "it is a FIFO (a named pipe), not a regular file"),
            (Path("/dev/zero"), "is a character device, not a regular file"),
        ]
    return [(str(path), words) for path, words in cases]


def test_build_of_a_hostile_recipe_is_one_line_and_exit_2(tmp_path):
    for recipe, words in hostile_recipes(tmp_path):
        result = cli("build", recipe, "--out", tmp_path / "lib.h5", cwd=tmp_path)
        assert_one_line_error(result, words)
        assert not list(tmp_path.glob("lib.h5*")), recipe[:100]



# --- the command line given hostile submissions, libraries and outputs ------------------


@pytest.fixture
def library_copy(tiny_library, tmp_path) -> Path:
    """A copy of the tiny HDF5 library, to damage."""
    import shutil

    return Path(shutil.copy(tiny_library, tmp_path / "copy.h5"))


@pytest.fixture(scope="module")
def zarr_library(tmp_path_factory) -> Path:
    """A complete Zarr library of the tiny recipe (built once for these tests)."""
    from tomobench.builder import build

    from conftest import make_recipe

    return build(make_recipe(output={"format": "zarr"}), tmp_path_factory.mktemp("z") / "t.zarr")


@pytest.fixture
def submission(tiny_truth, tmp_path) -> Path:
    """A valid submission (the ground truth itself) for the tiny library's test split."""
    from tomobench.score import write_submission

    return write_submission(tmp_path / "sub.npy", tiny_truth)


def npy_header_only(path: Path, shape: tuple, dtype: str = "<f4") -> Path:
    """A ``.npy`` file whose header says ``shape`` and which holds none of its data."""
    with open(path, "wb") as file:
        np_format = pytest.importorskip("numpy").lib.format
        np_format.write_array_header_1_0(
            file, {"descr": dtype, "fortran_order": False, "shape": shape}
        )
    return path


def test_a_submission_of_the_wrong_shape_is_refused_from_its_header_unread(
    tiny_library, tmp_path
):
    """A huge wrong-shape ``.npy`` would be read whole before its shape was checked: its
    header says the shape, which is checked first (here the data is not even there)."""
    from tomobench.errors import SubmissionError
    from tomobench.score import score
    from tomobench.show import show

    huge = npy_header_only(tmp_path / "huge.npy", (100_000, 64, 64))
    for run in (
        lambda: score(huge, tiny_library, baseline=None),
        lambda: show(tiny_library, [huge], out=tmp_path / "figure.png"),
    ):
        with pytest.raises(SubmissionError) as caught:
            run()
        message = one_line(caught.value)
        assert message == (
            f"{huge}: reconstructions has shape (100000, 64, 64); split 'test' of tiny-test "
            "needs (9, 32, 32)"
        )
    integers = npy_header_only(tmp_path / "integers.npy", (9, 32, 32), "<i8")
    with pytest.raises(SubmissionError, match="has dtype int64; submissions must be real"):
        score(integers, tiny_library, baseline=None)
    result = cli("score", huge, tiny_library, cwd=tmp_path)
    assert_one_line_error(result, "has shape (100000, 64, 64)", "needs (9, 32, 32)")
    assert not (tmp_path / "figure.png").exists()


def test_an_hdf5_or_zarr_submission_of_the_wrong_shape_is_refused_unread(
    tiny_library, tmp_path, monkeypatch
):
    import h5py
    import numpy as np
    import zarr

    from tomobench.errors import SubmissionError
    from tomobench.score import score, write_submission

    wrong = np.zeros((9, 16, 16), np.float32)
    paths = [write_submission(tmp_path / f"wrong{suffix}", wrong) for suffix in (".h5", ".zarr")]

    def unread(*args, **kwargs):
        raise AssertionError("the submission's data was read before its shape was checked")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", unread)
    monkeypatch.setattr(zarr.Array, "__getitem__", unread)
    for path in paths:
        with pytest.raises(SubmissionError) as caught:
            score(path, tiny_library, baseline=None)
        assert one_line(caught.value) == (
            f"{path}: reconstructions has shape (9, 16, 16); split 'test' of tiny-test "
            "needs (9, 32, 32)"
        )


@needs_fifo
def test_a_fifo_as_a_library_or_a_submission_is_refused_before_it_is_opened(
    tiny_library, submission, tmp_path
):
    """Opening a FIFO waits for a writer, forever: each command is run in a process of its
    own, ended after a generous time (a regression fails, it does not hang)."""
    for name in ("lib.h5", "lib.zarr", "sub.h5", "fifo.npy", "sub.zarr"):
        os.mkfifo(tmp_path / name)
    cases = [
        (("info", "lib.h5"), "lib.h5: not a readable hdf5 library: it is a FIFO"),
        (("info", "lib.zarr"), "lib.zarr: not a readable zarr library: it is a FIFO"),
        (("score", submission, "lib.h5"), "it is a FIFO (a named pipe), not a regular file"),
        (("score", "fifo.npy", tiny_library), "fifo.npy: not a readable .npy file: it is a FIFO"),
        (("score", "sub.h5", tiny_library), "sub.h5: not a readable HDF5 file: it is a FIFO"),
        (("score", "sub.zarr", tiny_library), "it is a FIFO (a named pipe), not a folder"),
        (("show", tiny_library, "fifo.npy", "--out", "f.png"), "fifo.npy: not a readable"),
        (("baseline", "fbp", "lib.zarr", "--out", "b.npy"), "lib.zarr: not a readable zarr"),
    ]
    for args, words in cases:
        result = cli(*args, cwd=tmp_path, timeout=30)
        assert_one_line_error(result, words)
    assert not (tmp_path / "f.png").exists() and not (tmp_path / "b.npy").exists()


def test_an_output_name_too_long_is_one_line_naming_it_shortened(
    tiny_library, submission, tmp_path
):
    long = "n" * 300
    cases = [
        ("info", f"{long}.h5"),
        ("score", submission, f"{long}.h5"),
        ("score", submission, tiny_library, "--json", f"{long}.json"),
        ("score", submission, tiny_library, "--csv", f"{long}.csv"),
        ("baseline", "fbp", tiny_library, "--out", f"{long}.npy"),
        ("show", tiny_library, "--out", f"{long}.png"),
    ]
    for args in cases:
        result = cli(*args, cwd=tmp_path)
        line = assert_one_line_error(result, "file name too long", "nnnn…nnnn")
        assert long not in line and len(line) < 300, line
        assert "Traceback" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "cache") == ["sub.npy"]


def tree(path: Path) -> dict[str, bytes]:
    """Every file under ``path`` (or ``path`` itself) and its bytes."""
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in path.rglob("*") if p.is_file()}


def test_baseline_replaces_only_a_submission_unless_told_to(tiny_library, tmp_path):
    """What the command did not make is never replaced without --overwrite: a Zarr group
    that is not a submission, an HDF5 file with other arrays, an integer ``.npy``."""
    import h5py
    import numpy as np
    import zarr

    from tomobench.score import read_submission, write_submission

    precious = tmp_path / "precious.zarr"
    zarr.open_group(str(precious), mode="w").create_array("data", shape=(3,), dtype="i4")[:] = 7
    with h5py.File(tmp_path / "precious.h5", "w") as file:
        file["reconstructions"] = np.zeros(3, np.float32)
        file["notes"] = np.ones(2)
    np.save(tmp_path / "precious.npy", np.arange(5))
    for name in ("precious.zarr", "precious.h5", "precious.npy"):
        before = tree(tmp_path / name)
        result = cli("baseline", "fbp", tiny_library, "--out", name, cwd=tmp_path)
        assert_one_line_error(result, name, "refusing to replace it without --overwrite")
        assert tree(tmp_path / name) == before, name
    # a submission tomobench wrote is replaced; anything else, with --overwrite
    old = write_submission(tmp_path / "old.h5", np.zeros((2, 2), np.float32))
    for name in ("old.h5", "precious.zarr"):
        extra = ["--overwrite"] if name.startswith("precious") else []
        result = cli("baseline", "fbp", tiny_library, "--out", name, *extra, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        assert read_submission(tmp_path / name).shape == (9, 32, 32)
    assert old.exists()


def test_score_never_writes_its_report_over_the_submission_or_the_library(
    tiny_library, submission, tmp_path
):
    before = submission.read_bytes()
    os.link(submission, tmp_path / "also.json")
    library_before = tiny_library.stat().st_mtime_ns
    cases = [
        (("--json", submission), "--json", "is the submission"),
        (("--csv", submission), "--csv", "is the submission"),
        (("--json", tmp_path / "also.json"), "also.json", "is the submission"),
        (("--csv", tiny_library), "tiny.h5 is a tomobench library"),
        (("--json", tmp_path / "r.json", "--csv", tmp_path / "r.json"), "--csv", "--json"),
    ]
    for args, *words in cases:
        result = cli("score", submission, tiny_library, *args, cwd=tmp_path)
        assert_one_line_error(result, *words)
        assert submission.read_bytes() == before
    assert tiny_library.stat().st_mtime_ns == library_before
    assert not (tmp_path / "r.json").exists()


def test_a_group_in_place_of_an_array_is_a_damaged_library(library_copy, submission, tmp_path):
    import h5py

    with h5py.File(library_copy, "r+") as file:
        del file["test/images"]
        file.create_group("test/images")
    for args in (
        ("info", library_copy),
        ("score", submission, library_copy),
        ("show", library_copy, submission, "--out", "f.png"),
    ):
        result = cli(*args, cwd=tmp_path)
        line = assert_one_line_error(result, str(library_copy), "a damaged library")
        assert "test/images is a group, not an array" in line
        assert "Traceback" not in result.stderr
    assert not (tmp_path / "f.png").exists()


def test_shapes_that_disagree_with_the_recipe_or_each_other_are_a_damaged_library(
    library_copy, submission, tmp_path
):
    """Not the submission's wrong shape: the library's images disagree with its recipe
    (its recipe says 64², the arrays are 32²) or with its sinograms."""
    import h5py
    import numpy as np

    from tomobench.errors import StoreError
    from tomobench.score import score

    with h5py.File(library_copy, "r+") as file:
        recipe = json.loads(file.attrs["recipe"])
        recipe["source"]["size"] = 64
        file.attrs["recipe"] = json.dumps(recipe)
    with pytest.raises(StoreError) as caught:
        score(submission, library_copy)
    message = one_line(caught.value)
    assert message.startswith(f"{library_copy}: a damaged library: test/images has shape")
    assert "(9, 64, 64)" in message and str(submission) not in message
    result = cli("baseline", "fbp", library_copy, "--out", "b.npy", cwd=tmp_path)
    assert_one_line_error(result, str(library_copy), "a damaged library", "size 64")

    with h5py.File(library_copy, "r+") as file:
        recipe["source"]["size"] = 32
        file.attrs["recipe"] = json.dumps(recipe)
        sinograms = file["test/sinograms"][:8]
        del file["test/sinograms"]
        file["test/sinograms"] = sinograms.astype(np.float32)
    result = cli("score", submission, library_copy, cwd=tmp_path)
    line = assert_one_line_error(result, str(library_copy), "a damaged library")
    assert "test/sinograms has shape (8," in line and "sub.npy" not in line


def test_zarr_metadata_that_disagrees_with_its_chunks_is_a_damaged_library(
    zarr_library, tmp_path
):
    """Array metadata that no longer matches the bytes of its chunks (another dtype, or
    another shape) is said to be damage, naming the library and the array."""
    import shutil

    from tomobench.score import write_submission

    truth_shape = (9, 32, 32)
    import numpy as np

    sub = write_submission(tmp_path / "sub.npy", np.zeros(truth_shape, np.float32))
    for change, words in (
        ({"data_type": "float64"}, "test/images"),
        ({"shape": [9, 64, 64]}, "test/images has shape (9, 64, 64)"),
    ):
        copy = tmp_path / "z.zarr"
        shutil.rmtree(copy, ignore_errors=True)
        shutil.copytree(zarr_library, copy)
        meta_path = copy / "test" / "images" / "zarr.json"
        meta = json.loads(meta_path.read_text())
        meta.update(change)
        meta_path.write_text(json.dumps(meta))
        for args in (
            ("show", copy, "--out", "f.png"),
            ("score", sub, copy),
        ):
            result = cli(*args, cwd=tmp_path)
            line = assert_one_line_error(result, str(copy), "a damaged library", words)
            assert "sub.npy" not in line
        assert not (tmp_path / "f.png").exists()


def test_a_format_1_library_of_other_shapes_is_named_as_such_not_as_damaged(tmp_path):
    """Format 1's default detector was the image size: such a library's recipe (detector
    null) now makes other shapes. It is refused as an older format, not as damaged."""
    import json

    import h5py

    from tomobench.builder import build
    from tomobench.errors import StoreError, SubmissionError
    from tomobench.score import score, write_submission

    from conftest import make_recipe

    recipe = make_recipe(
        source={"mask_radius": 14}, geometry={"detector": 32}, noise=[],
        splits={"train": 0, "val": 0, "test": 2},
    )  # fmt: skip
    path = build(recipe, tmp_path / "old.h5")
    with h5py.File(path, "r+") as file:  # as format 1 wrote it: the detector left null
        data = json.loads(file.attrs["recipe"])
        data["geometry"]["detector"] = None
        file.attrs["recipe"] = json.dumps(data)
        file.attrs["tomobench_format"] = 1
        truth = file["test/images"][...]
    submission = write_submission(tmp_path / "s.npy", truth)
    with pytest.raises((StoreError, SubmissionError)) as error:
        score(submission, path)
    message = str(error.value)
    assert "a library of format 1, made by an earlier tomobench" in message
    assert "damaged" not in message and "\n" not in message
