"""The dataset registry and fetch: real HTTP over loopback, real pooch, no mocked downloader."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import socket
import tarfile
import zipfile
from pathlib import Path

import h5py
import imageio.v3 as iio
import numpy as np
import pooch
import pytest

from tomobench import datasets
from tomobench.datasets import DatasetError, cache_dir, fetch, list_datasets, path_of
from tomobench.errors import TomobenchError

# From docs REFERENCES.md (tensorflow/datasets, div2k/checksums.tsv), typed here independently.
DIV2K = {
    "DIV2K_train_HR.zip": (
        "sha256:9d0b9c463f6e35b6c62cc6a930ee2224f670b34c1df841a57670f9acf0f6c335",
        3530603713,
    ),
    "DIV2K_valid_HR.zip": (
        "sha256:20dd31fd84d777bc1cf5d6b7654a3f569c0aec74458ae094122ad1d0489900fc",
        448993893,
    ),
}


pytestmark = pytest.mark.usefixtures("cache")


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def line(name: str, digest: str, url: str, size="-", extra: str = "") -> str:
    return f'{name} {digest} {url} size={size} licence=CC0-1.0 citation="a test file" {extra}'


def write_registry(path: Path, *lines: str) -> Path:
    path.write_text("# a test registry\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def serve(server, name: str, data: bytes) -> str:
    (server.folder / name).write_bytes(data)
    return server.url(name)


def listing(folder: Path) -> list[str]:
    """Everything under folder, as sorted relative paths (an absent folder is empty)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


def h5_bytes(tmp_path: Path) -> tuple[bytes, np.ndarray]:
    sinogram = np.arange(12 * 7, dtype=np.float32).reshape(12, 7)
    with h5py.File(tmp_path / "made.h5", "w") as file:
        file["POX"] = sinogram
    return (tmp_path / "made.h5").read_bytes(), sinogram


def png_zip() -> tuple[bytes, dict[str, np.ndarray]]:
    rng = np.random.default_rng(3)
    images = {f"pngs/{i:04d}.png": rng.integers(0, 256, (6, 9, 3), np.uint8) for i in (1, 2, 3)}
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, image in images.items():
            archive.writestr(name, iio.imwrite("<bytes>", image, extension=".png"))
    return buffer.getvalue(), images


def tar_bytes(mode: str, members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# --- the packaged registry ------------------------------------------------------------


def test_packaged_registry_has_the_published_div2k_hashes_and_sizes():
    entries = {entry.name: entry for entry in list_datasets()}
    for name, (digest, size) in DIV2K.items():
        entry = entries[name]
        assert (entry.hash, entry.size, entry.verified) == (digest, size, True)
        assert entry.url == f"https://data.vision.ee.ethz.ch/cvl/DIV2K/{name}"
        assert entry.archive == "zip"
        assert "Agustsson & Timofte" in entry.citation


def test_packaged_registry_flags_what_is_not_verified():
    entries = {entry.name: entry for entry in list_datasets()}
    sd2i = entries["sinograms_used_in_paper.h5"]
    assert sd2i.hash == "unverified" and not sd2i.verified
    assert sd2i.url == (
        "https://github.com/robindong3/SD2I/raw/main/sd2i/dataset/sinograms_used_in_paper.h5"
    )
    assert (sd2i.licence, sd2i.size) == ("GPL-3.0", None)
    assert "Dong" in sd2i.citation and "10.1039/D2DD00105E" in sd2i.citation
    walnut = entries["cil_walnut_small.zip"]
    assert (walnut.hash, walnut.url) == ("from-doi", "doi:10.5281/zenodo.4912435/small.zip")
    assert walnut.verified and walnut.size is None and walnut.licence is None
    assert [e.name for e in list_datasets() if not e.verified] == ["sinograms_used_in_paper.h5"]


def test_datasets_are_frozen_and_errors_are_tomobench_errors():
    entry = list_datasets()[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        entry.hash = "unverified"
    assert issubclass(DatasetError, TomobenchError) and issubclass(DatasetError, ValueError)


# --- fetching ------------------------------------------------------------------------


def test_fetch_downloads_once_and_returns_the_file(loopback_http, tmp_path, cache):
    data, sinogram = h5_bytes(tmp_path)
    url = serve(loopback_http, "sino.h5", data)
    registry = write_registry(tmp_path / "reg.txt", line("sino.h5", sha256(data), url, len(data)))
    assert path_of("sino.h5", registry=registry) is None

    path = fetch("sino.h5", registry=registry)
    assert path == cache / "sino.h5"
    with h5py.File(path, "r") as file:
        np.testing.assert_array_equal(file["POX"][...], sinogram)
    assert fetch("sino.h5", registry=registry) == path
    assert loopback_http.requests == ["/sino.h5"]  # the second fetch did not download
    assert path_of("sino.h5", registry=registry) == path
    assert listing(cache) == ["sino.h5"]


def test_fetch_unpacks_a_zip_and_checks_its_members(loopback_http, tmp_path, cache):
    data, images = png_zip()
    url = serve(loopback_http, "pngs.zip", data)
    members = "members=pngs/0001.png,pngs/0003.png"
    registry = write_registry(
        tmp_path / "r.txt", line("pngs.zip", sha256(data), url, extra=members)
    )

    folder = fetch("pngs.zip", registry=registry)
    assert folder == cache / "pngs.zip.unzip"
    for name, image in images.items():
        np.testing.assert_array_equal(iio.imread(folder / name), image)
    assert fetch("pngs.zip", registry=registry) == folder
    assert loopback_http.requests == ["/pngs.zip"]
    assert path_of("pngs.zip", registry=registry) == folder
    assert listing(cache) == [
        "pngs.zip",
        "pngs.zip.unzip",
        "pngs.zip.unzip/pngs",
        *(f"pngs.zip.unzip/{name}" for name in sorted(images)),
    ]


@pytest.mark.parametrize(
    ("name", "mode"), [("a.tar.gz", "w:gz"), ("b.tgz", "w:gz"), ("c.tar", "w")]
)
def test_fetch_unpacks_tar_archives(loopback_http, tmp_path, cache, name, mode):
    data = tar_bytes(mode, {"top/readme.txt": b"hello", "top/x.bin": bytes(range(256))})
    registry = write_registry(
        tmp_path / "r.txt", line(name, sha256(data), serve(loopback_http, name, data), len(data))
    )
    folder = fetch(name, registry=registry)
    assert folder == cache / f"{name}.untar"
    assert (folder / "top/readme.txt").read_bytes() == b"hello"
    assert (folder / "top/x.bin").read_bytes() == bytes(range(256))


def test_a_corrupted_download_is_refused_and_nothing_is_kept(loopback_http, tmp_path, cache):
    good, bad = b"the real file\n" * 100, b"something else\n" * 100
    url = serve(loopback_http, "data.bin", bad)
    registry = write_registry(tmp_path / "r.txt", line("data.bin", sha256(good), url))
    with pytest.raises(DatasetError) as caught:
        fetch("data.bin", registry=registry)
    message = str(caught.value)
    assert "\n" not in message
    assert f"sha256 mismatch: expected {sha256(good)[7:]}, got {sha256(bad)[7:]}" in message
    assert "the download is corrupted or the registry is wrong; nothing was kept" in message
    assert listing(cache) == []  # not even pooch's temporary file
    assert path_of("data.bin", registry=registry) is None


def test_a_stale_cached_file_is_replaced_or_removed(loopback_http, tmp_path, cache):
    new = b"version 2\n" * 50
    url = serve(loopback_http, "data.bin", new)
    registry = write_registry(tmp_path / "r.txt", line("data.bin", sha256(new), url))
    cache.mkdir()
    (cache / "data.bin").write_bytes(b"version 1\n")
    assert fetch("data.bin", registry=registry).read_bytes() == new  # re-hashed, updated

    (cache / "data.bin").write_bytes(b"version 1\n")
    serve(loopback_http, "data.bin", b"tampered\n")
    with pytest.raises(DatasetError, match="sha256 mismatch"):
        fetch("data.bin", registry=registry)
    assert listing(cache) == []  # the stale copy went too: it no longer looks valid


def test_a_download_that_breaks_off_is_refused(loopback_http, tmp_path, cache):
    data = bytes(range(256)) * 64
    serve(loopback_http, "big.bin", data)
    registry = write_registry(
        tmp_path / "r.txt",
        line("big.bin", sha256(data), loopback_http.url("cut/big.bin"), len(data)),
        line("big2.bin", "unverified", loopback_http.url("cut/big.bin"), len(data)),
    )
    for name in ("big.bin", "big2.bin"):
        with pytest.raises(DatasetError) as caught:
            fetch(name, registry=registry)
        assert f"the connection broke after {len(data) // 2} bytes of {len(data)}" in str(
            caught.value
        )
        assert "nothing was kept" in str(caught.value)
    assert listing(cache) == []


def test_a_truncated_file_is_refused_by_its_hash_or_its_size(loopback_http, tmp_path, cache):
    data = bytes(range(256)) * 64
    url = serve(loopback_http, "short.bin", data[:1000])
    registry = write_registry(
        tmp_path / "r.txt",
        line("short.bin", sha256(data), url, len(data)),
        line("short2.bin", "unverified", url, len(data)),
    )
    with pytest.raises(DatasetError, match=f"sha256 mismatch.*1000 bytes of {len(data)}"):
        fetch("short.bin", registry=registry)
    with pytest.raises(DatasetError, match=f"size mismatch: expected {len(data)} bytes, got 1000"):
        fetch("short2.bin", registry=registry)
    assert listing(cache) == []


def test_http_404_names_the_url_and_the_status(loopback_http, tmp_path, cache):
    url = loopback_http.url("missing.h5")
    registry = write_registry(tmp_path / "r.txt", line("missing.h5", "md5:" + "0" * 32, url))
    with pytest.raises(DatasetError) as caught:
        fetch("missing.h5", registry=registry)
    assert str(caught.value).startswith(f"cannot download missing.h5: {url} answered HTTP 404")
    assert listing(cache) == []


def test_an_unreachable_server_is_one_line(tmp_path, monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    with socket.socket() as probe:  # a loopback port that nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/x.h5"
    registry = write_registry(tmp_path / "r.txt", line("x.h5", "md5:" + "0" * 32, url))
    with pytest.raises(DatasetError, match=r"^cannot download x.h5: .* is unreachable \(Conn"):
        fetch("x.h5", registry=registry)


def test_an_unverified_download_warns_with_the_hash_of_the_copy(loopback_http, tmp_path, cache):
    data, _ = h5_bytes(tmp_path)
    url = serve(loopback_http, "sinograms.h5", data)
    registry = write_registry(tmp_path / "r.txt", line("sinograms.h5", "unverified", url))
    assert not list_datasets(registry=registry)[-1].verified
    with pytest.warns(UserWarning, match="without an integrity check") as caught:
        path = fetch("sinograms.h5", registry=registry)
    (warning,) = [w for w in caught if w.category is UserWarning]  # pooch leaks a socket too
    assert sha256(data)[7:] in str(warning.message)
    assert path.read_bytes() == data


def test_an_archive_without_the_expected_members_is_not_unpacked(loopback_http, tmp_path, cache):
    data, _ = png_zip()
    url = serve(loopback_http, "pngs.zip", data)
    registry = write_registry(
        tmp_path / "r.txt", line("pngs.zip", sha256(data), url, extra="members=pngs/0009.png")
    )
    with pytest.raises(DatasetError, match=r"^pngs.zip lacks pngs/0009.png, which the registry"):
        fetch("pngs.zip", registry=registry)
    assert listing(cache) == ["pngs.zip"]  # the archive matched its hash; nothing unpacked
    assert path_of("pngs.zip", registry=registry) is None


def test_an_unreadable_unverified_archive_is_not_kept(loopback_http, tmp_path, cache):
    url = serve(loopback_http, "notazip.zip", b"plain text, not a zip\n")
    registry = write_registry(tmp_path / "r.txt", line("notazip.zip", "unverified", url))
    with pytest.warns(UserWarning), pytest.raises(DatasetError, match="not a readable zip"):
        fetch("notazip.zip", registry=registry)
    assert listing(cache) == []


def test_a_tar_member_outside_its_folder_is_refused(loopback_http, tmp_path, cache):
    data = tar_bytes("w:gz", {"../escape.txt": b"x"})
    url = serve(loopback_http, "evil.tar.gz", data)
    registry = write_registry(tmp_path / "r.txt", line("evil.tar.gz", sha256(data), url))
    with pytest.raises(DatasetError, match="refusing to unpack evil.tar.gz"):
        fetch("evil.tar.gz", registry=registry)
    assert not (cache / "escape.txt").exists() and listing(cache) == ["evil.tar.gz"]


def test_progress_is_drawn_on_stderr(loopback_http, tmp_path, capsys):
    data = bytes(3000)
    url = serve(loopback_http, "zeros.bin", data)
    registry = write_registry(tmp_path / "r.txt", line("zeros.bin", sha256(data), url))
    fetch("zeros.bin", registry=registry, progress=True)
    assert "zeros.bin: 2.9 KiB of 2.9 KiB (100%)\n" in capsys.readouterr().err


def test_a_doi_entry_is_checked_against_the_md5_the_repository_publishes(
    loopback_http, tmp_path, cache, monkeypatch
):
    """pooch's own DOI code, with doi.org's answer and Zenodo's API address replaced by the
    loopback server: nothing leaves 127.0.0.1."""
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("walnut/scan.txt", b"projections")
    data = zipped.getvalue()
    serve(loopback_http, "small.zip", data)
    api = loopback_http.folder / "api" / "records"
    api.mkdir(parents=True)
    record = {"key": "small.zip", "links": {"self": loopback_http.url("small.zip")}}
    (api / "4912435").write_text(
        json.dumps({"files": [{**record, "checksum": "md5:" + hashlib.md5(data).hexdigest()}]})
    )
    monkeypatch.setattr(
        pooch.downloaders, "doi_to_url", lambda doi, **kw: f"https://zenodo.org/records/{doi[-7:]}"
    )
    monkeypatch.setattr(
        pooch.downloaders.ZenodoRepository, "base_api_url", loopback_http.url("api/records")
    )
    registry = write_registry(
        tmp_path / "r.txt",
        line("walnut.zip", "from-doi", "doi:10.5281/zenodo.4912435/small.zip"),
        line("other.zip", "from-doi", "doi:10.5281/zenodo.4912435/other.zip"),
    )
    folder = fetch("walnut.zip", registry=registry)
    assert (folder / "walnut/scan.txt").read_bytes() == b"projections"
    assert "/small.zip" in loopback_http.requests
    loopback_http.requests.clear()
    assert fetch("walnut.zip", registry=registry) == folder
    assert loopback_http.requests == []  # cached: no network needed at all

    with pytest.raises(DatasetError, match=r"doi:10.5281/zenodo.4912435 has no file 'other.zip'"):
        fetch("other.zip", registry=registry)

    (api / "4912435").write_text(
        json.dumps({"files": [{**record, "checksum": "md5:" + "0" * 32}]})
    )
    shutil.rmtree(cache)
    with pytest.raises(DatasetError, match="md5 mismatch: expected 0{32}, got"):
        fetch("walnut.zip", registry=registry)
    assert listing(cache) == []


# --- names, registries and the cache ---------------------------------------------------


def test_an_unknown_name_lists_close_matches_and_known_names():
    with pytest.raises(DatasetError) as caught:
        fetch("DIV2K_valid_HR.zp")
    message = str(caught.value)
    assert message.startswith("unknown dataset 'DIV2K_valid_HR.zp'; did you mean DIV2K_valid_HR")
    assert "known: DIV2K_train_HR.zip, DIV2K_valid_HR.zip, sinograms_used_in_paper.h5" in message
    with pytest.raises(DatasetError, match="unknown dataset"):
        path_of("nothing-like-it")


GOOD = line("ok.h5", "md5:" + "a" * 32, "https://example.org/ok.h5")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("ok.h5 md5:" + "a" * 32, "expected NAME HASH URL key=value..., got 2 field"),
        (GOOD + ' oops="unclosed', "No closing quotation"),
        (GOOD + " size", "expected key=value after the URL, got 'size'"),
        (GOOD.replace("licence=", "license="), "unknown key 'license'; allowed: size, licence"),
        (GOOD + " size=3", "size is given twice"),
        ("ok.h5 md5:" + "a" * 32 + " https://e.org/ok.h5 size=1", "missing licence, citation"),
        (GOOD.replace("size=-", "size=4MiB"), "size must be a whole number of bytes or '-'"),
        (GOOD.replace("md5:" + "a" * 32, "a" * 32), "must be ALGORITHM:HEX"),
        (GOOD.replace("md5:" + "a" * 32, "sha256:" + "a" * 32), "is not 64 hex digits"),
        (GOOD.replace("md5:" + "a" * 32, "crc32:abcd"), "must be ALGORITHM:HEX"),
        (GOOD.replace("https://", "ftp://"), "must start with one of http://, https://, doi:"),
        (GOOD.replace("ok.h5 ", "../ok.h5 ", 1), "name '../ok.h5' is not a plain file name"),
        (GOOD.replace("md5:" + "a" * 32, "from-doi"), "hash from-doi needs a doi: URL"),
        (GOOD.replace("https://example.org/ok.h5", "doi:small.zip"), "must be doi:<DOI>/<file"),
        (GOOD + " members=a.png", "members= applies to archives"),
    ],
)
def test_a_malformed_line_names_the_file_the_line_and_the_problem(tmp_path, text, problem):
    registry = write_registry(tmp_path / "bad.txt", text)  # two header lines come first
    with pytest.raises(DatasetError) as caught:
        list_datasets(registry=registry)
    message = str(caught.value)
    assert message.startswith(f"registry {registry}, line 3: ")
    assert problem in message and "\n" not in message


def test_a_name_listed_twice_in_one_file_is_an_error(tmp_path):
    registry = write_registry(tmp_path / "twice.txt", GOOD, GOOD)
    with pytest.raises(DatasetError, match=r"line 4: ok.h5 is already listed \(.*line 3\)"):
        datasets.read_registry(registry)


def test_a_missing_registry_file_is_one_line(tmp_path):
    with pytest.raises(DatasetError, match="cannot read registry file .*nope.txt: No such file"):
        list_datasets(registry=tmp_path / "nope.txt")


def test_user_registries_extend_and_override_in_order(tmp_path, monkeypatch):
    first = write_registry(
        tmp_path / "first.txt",
        line("mine.h5", "unverified", "https://example.org/1.h5"),
        line("DIV2K_valid_HR.zip", "unverified", "https://mirror.example.org/v.zip"),
    )
    second = write_registry(
        tmp_path / "second.txt", line("mine.h5", "unverified", "https://e.org/2.h5")
    )
    monkeypatch.setenv("TOMOBENCH_REGISTRY", os.pathsep.join([str(first), "", str(second)]))
    entries = {entry.name: entry for entry in list_datasets()}
    assert entries["mine.h5"].url == "https://e.org/2.h5"  # the later file wins
    assert entries["mine.h5"].origin == f"registry {second}, line 3"
    assert entries["DIV2K_valid_HR.zip"].url == "https://mirror.example.org/v.zip"
    assert "DIV2K_train_HR.zip" in entries and "sinograms_used_in_paper.h5" in entries

    third = write_registry(
        tmp_path / "third.txt", line("mine.h5", "unverified", "https://e.org/3.h5")
    )
    by_argument = {entry.name: entry for entry in list_datasets(registry=[third])}
    assert by_argument["mine.h5"].url == "https://e.org/3.h5"  # registry= comes last

    monkeypatch.setenv("TOMOBENCH_REGISTRY", str(tmp_path / "gone.txt"))
    with pytest.raises(DatasetError, match=r"TOMOBENCH_REGISTRY names .*gone.txt, which is not"):
        list_datasets()


def test_the_registry_variable_is_used_by_fetch(loopback_http, tmp_path, cache, monkeypatch):
    data = b"from the environment\n"
    url = serve(loopback_http, "env.txt", data)
    registry = write_registry(tmp_path / "env.txt", line("env.txt", sha256(data), url))
    monkeypatch.setenv("TOMOBENCH_REGISTRY", str(registry))
    assert fetch("env.txt") == cache / "env.txt"


def test_an_unusable_cache_folder_is_one_line(loopback_http, tmp_path, monkeypatch):
    data = b"anything\n"
    url = serve(loopback_http, "a.txt", data)
    registry = write_registry(tmp_path / "r.txt", line("a.txt", sha256(data), url))
    (tmp_path / "file").write_text("a file, not a folder")
    monkeypatch.setenv("TOMOBENCH_DATA_DIR", str(tmp_path / "file" / "cache"))
    with pytest.raises(DatasetError, match=r"^cannot store a.txt in .*/file/cache: .*; set TOMO"):
        fetch("a.txt", registry=registry)


def test_the_cache_folder_follows_the_environment(monkeypatch, tmp_path, cache):
    assert cache_dir() == cache
    monkeypatch.setenv("TOMOBENCH_DATA_DIR", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("TOMOBENCH_DATA_DIR")
    assert cache_dir() == Path(pooch.os_cache("tomobench")).expanduser().absolute()
    assert not (tmp_path / "elsewhere").exists()  # asking where does not create it


def test_fetch_of_a_corrupted_download_is_one_line_and_exit_2(loopback_http, tmp_path, cache,
                                                              monkeypatch):
    import subprocess
    import sys

    good, bad = b"the real file\n" * 100, b"something else\n" * 100
    url = serve(loopback_http, "data.bin", bad)
    registry = write_registry(tmp_path / "r.txt", line("data.bin", sha256(good), url))
    monkeypatch.setenv("TOMOBENCH_REGISTRY", str(registry))
    result = subprocess.run([sys.executable, "-m", "tomobench.cli", "fetch", "data.bin"],
                            capture_output=True, text=True)
    assert result.returncode == 2, result.stderr
    errors = [text for text in result.stderr.splitlines() if text.startswith("error: ")]
    assert len(errors) == 1 and "sha256 mismatch" in errors[0], result.stderr
    assert result.stderr.splitlines()[-1] == errors[0]  # after pooch's "Downloading file"
    assert "Traceback" not in result.stderr
    assert listing(cache) == []


def test_fetch_says_an_unverified_download_in_one_warning_line(loopback_http, tmp_path, cache,
                                                               monkeypatch):
    import subprocess
    import sys

    data, _ = h5_bytes(tmp_path)
    url = serve(loopback_http, "sinograms.h5", data)
    registry = write_registry(tmp_path / "r.txt", line("sinograms.h5", "unverified", url))
    monkeypatch.setenv("TOMOBENCH_REGISTRY", str(registry))
    deep = tmp_path / ("a-long-folder-name-" * 6) / "cache"  # a path longer than 80 columns
    monkeypatch.setenv("TOMOBENCH_DATA_DIR", str(deep))
    result = subprocess.run([sys.executable, "-m", "tomobench.cli", "fetch", "sinograms.h5"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{deep / 'sinograms.h5'}\n"  # the path alone, on one line
    warned = [text for text in result.stderr.splitlines() if "integrity check" in text]
    assert len(warned) == 1 and warned[0].startswith("warning: sinograms.h5 was downloaded")
    assert sha256(data)[7:] in warned[0] and "warnings.warn" not in result.stderr
