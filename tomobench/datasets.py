"""Datasets that tomobench downloads: a registry of files, fetched with pooch into a cache.

The registry is a text file, ``registry.txt`` beside this module, one file a line. Its first
three columns are pooch's own ``name hash url``; ``key=value`` fields follow::

    # NAME  HASH  URL  size=BYTES licence=TEXT citation=TEXT [members=PATH,PATH]
    DIV2K_valid_HR.zip sha256:20dd…00fc https://…/DIV2K_valid_HR.zip size=448993893 …

- ``NAME``: the file name as stored in the cache (letters, digits and ``. _ + -``).
- ``HASH``: ``sha256:<hex>``, ``md5:<hex>`` (also ``sha1``, ``sha512``); ``from-doi``: the
  checksum the repository publishes for the file (Zenodo: an MD5), looked up at fetch time
  (the URL must then be a ``doi:``); ``unverified``: no source publishes a checksum, so the
  file's integrity is not checked (a warning says so when it is downloaded).
- ``URL``: ``http(s)://…`` or ``doi:<DOI>/<file name in the record>``.
- ``size`` (bytes), ``licence``, ``citation``: required, ``-`` when unknown. Quote values
  with spaces, as in a shell.
- ``members``: optional, for archives: comma-separated paths that must exist once unpacked.

Blank lines and lines starting with ``#`` are ignored. A malformed line raises
:class:`DatasetError` naming the file, the line number and the problem.

Users add entries with registry files of the same format: the environment variable
``TOMOBENCH_REGISTRY`` (a list of files separated by ``os.pathsep``) and the ``registry=``
argument. Files are read in the order packaged registry, ``TOMOBENCH_REGISTRY``,
``registry=``; an entry whose name an earlier file already has replaces that entry whole.

Files are cached in ``pooch.os_cache("tomobench")``, or in ``$TOMOBENCH_DATA_DIR`` when it is
set. A download goes to a temporary file that pooch moves into place only once its hash
matches, and archives (``.zip``, ``.tar``, ``.tar.gz``, ``.tgz``) are unpacked by
:class:`pooch.Unzip` / :class:`pooch.Untar` into a staging folder that is renamed to
``NAME.unzip`` / ``NAME.untar`` only once complete: whatever the cache holds under a
registry name is whole. Nothing here touches the disk or the network at import time.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import re
import shlex
import shutil
import sys
import tarfile
import tempfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from gzip import BadGzipFile
from pathlib import Path

from tomobench.errors import DatasetError

__all__ = [
    "DATA_DIR_ENV",
    "PACKAGED_REGISTRY",
    "REGISTRY_ENV",
    "Dataset",
    "DatasetError",
    "cache_dir",
    "fetch",
    "list_datasets",
    "path_of",
    "read_registry",
]

PACKAGED_REGISTRY = Path(__file__).with_name("registry.txt")
DATA_DIR_ENV = "TOMOBENCH_DATA_DIR"
REGISTRY_ENV = "TOMOBENCH_REGISTRY"

UNVERIFIED = "unverified"
FROM_DOI = "from-doi"
HEX_DIGITS = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128}
SCHEMES = ("http://", "https://", "doi:")
ARCHIVES = {".zip": "zip", ".tar": "tar", ".tar.gz": "tar", ".tgz": "tar"}
FIELDS = ("size", "licence", "citation", "members")
REQUIRED = ("size", "licence", "citation")

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_CHUNK = 1 << 20  # bytes a read while downloading (pooch's default, 1 KiB, is slow for GB)

RegistryArg = str | os.PathLike | Sequence[str | os.PathLike] | None


@dataclass(frozen=True)
class Dataset:
    """One registry entry. ``size``, ``licence`` and ``citation`` are None when unknown."""

    name: str
    hash: str
    url: str
    size: int | None
    licence: str | None
    citation: str | None
    members: tuple[str, ...] = ()
    origin: str = ""  # "registry file, line N" where the entry was read

    @property
    def verified(self) -> bool:
        """Whether a download is checked against a published checksum."""
        return self.hash != UNVERIFIED

    @property
    def archive(self) -> str | None:
        """``"zip"`` or ``"tar"`` for an archive that fetch unpacks, else None."""
        for suffix, kind in ARCHIVES.items():
            if self.name.endswith(suffix):
                return kind
        return None


# --- the registry -----------------------------------------------------------------------


def read_registry(path: str | os.PathLike) -> list[Dataset]:
    """The entries of one registry file, in file order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        msg = f"cannot read registry file {path}: {getattr(error, 'strerror', None) or error}"
        raise DatasetError(msg) from None
    entries: dict[str, Dataset] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        entry = _parse_line(line, origin=f"registry {path}, line {number}")
        if entry.name in entries:
            msg = f"{entry.origin}: {entry.name} is already listed ({entries[entry.name].origin})"
            raise DatasetError(msg)
        entries[entry.name] = entry
    return list(entries.values())


def _parse_line(line: str, *, origin: str) -> Dataset:
    def fail(problem: str):
        raise DatasetError(f"{origin}: {problem}")

    try:
        words = shlex.split(line)
    except ValueError as error:  # an unclosed quote
        fail(f"{error} (quote values that hold spaces)")
    if len(words) < 3:
        fail(f"expected NAME HASH URL key=value..., got {len(words)} field(s)")
    name, digest, url, *tail = words
    fields: dict[str, str] = {}
    for word in tail:
        key, equals, value = word.partition("=")
        if not equals:
            fail(f"expected key=value after the URL, got {word!r}")
        if key not in FIELDS:
            fail(f"unknown key {key!r}; allowed: {', '.join(FIELDS)}")
        if key in fields:
            fail(f"{key} is given twice")
        fields[key] = value
    missing = [key for key in REQUIRED if key not in fields]
    if missing:
        fail(f"missing {', '.join(missing)} (write {missing[0]}=- when unknown)")
    if not _NAME.fullmatch(name):
        fail(f"name {name!r} is not a plain file name (letters, digits, . _ + -)")
    digest = _check_hash(digest, fail)
    if not url.startswith(SCHEMES):
        fail(f"URL {url!r} must start with one of {', '.join(SCHEMES)}")
    doi, _, filename = url.removeprefix("doi:").rpartition("/")
    if url.startswith("doi:") and ("/" not in doi or not filename):
        fail(f"URL {url!r} must be doi:<DOI>/<file name>")
    if digest == FROM_DOI and not url.startswith("doi:"):
        fail(f"hash {FROM_DOI} needs a doi: URL, got {url!r}")
    size = fields["size"]
    if size != "-" and not size.isdigit():
        fail(f"size must be a whole number of bytes or '-', got {size!r}")
    members = tuple(m for m in fields.get("members", "").split(",") if m)
    if members and not any(name.endswith(suffix) for suffix in ARCHIVES):
        fail(f"members= applies to archives ({', '.join(ARCHIVES)}), not {name}")
    return Dataset(
        name=name,
        hash=digest,
        url=url,
        size=None if size == "-" else int(size),
        licence=None if fields["licence"] in ("", "-") else fields["licence"],
        citation=None if fields["citation"] in ("", "-") else fields["citation"],
        members=members,
        origin=origin,
    )


def _check_hash(digest: str, fail) -> str:
    if digest in (UNVERIFIED, FROM_DOI):
        return digest
    algorithm, colon, hexdigest = digest.partition(":")
    algorithm, hexdigest = algorithm.lower(), hexdigest.lower()
    if not colon or algorithm not in HEX_DIGITS:
        fail(
            f"hash {digest!r} must be ALGORITHM:HEX ({', '.join(HEX_DIGITS)}), "
            f"{FROM_DOI} or {UNVERIFIED}"
        )
    if len(hexdigest) != HEX_DIGITS[algorithm] or not re.fullmatch("[0-9a-f]+", hexdigest):
        fail(f"{algorithm} hash {hexdigest!r} is not {HEX_DIGITS[algorithm]} hex digits")
    return f"{algorithm}:{hexdigest}"


def _registry_files(registry: RegistryArg) -> list[Path]:
    files = [PACKAGED_REGISTRY]
    for item in os.environ.get(REGISTRY_ENV, "").split(os.pathsep):
        if item.strip():
            if not Path(item).is_file():
                msg = f"{REGISTRY_ENV} names {item}, which is not a file"
                raise DatasetError(msg)
            files.append(Path(item))
    if isinstance(registry, (str, os.PathLike)):
        files.append(Path(registry))
    elif registry is not None:
        files.extend(Path(item) for item in registry)
    return files


def _load(registry: RegistryArg) -> dict[str, Dataset]:
    entries: dict[str, Dataset] = {}
    for path in _registry_files(registry):
        for entry in read_registry(path):
            entries.pop(entry.name, None)  # an override moves to where it was read
            entries[entry.name] = entry
    return entries


def list_datasets(*, registry: RegistryArg = None) -> list[Dataset]:
    """Every registry entry: packaged ones, then ``TOMOBENCH_REGISTRY``'s, then ``registry``'s.

    An entry whose name an earlier file already has replaces the earlier one.
    """
    return list(_load(registry).values())


def _find(name: str, registry: RegistryArg) -> Dataset:
    entries = _load(registry)
    if name in entries:
        return entries[name]
    close = difflib.get_close_matches(name, entries, n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    msg = f"unknown dataset {name!r}; {hint}known: {', '.join(entries) or 'none'}"
    raise DatasetError(msg)


# --- the cache --------------------------------------------------------------------------


def cache_dir() -> Path:
    """Where datasets are cached: ``$TOMOBENCH_DATA_DIR``, else ``pooch.os_cache("tomobench")``."""
    import pooch

    folder = os.environ.get(DATA_DIR_ENV) or pooch.os_cache("tomobench")
    return Path(folder).expanduser().absolute()


def _unpacked(entry: Dataset, folder: Path) -> Path:
    """The folder an archive is unpacked into (pooch's convention: NAME.unzip, NAME.untar)."""
    return folder / f"{entry.name}.un{entry.archive}"


def path_of(name: str, *, registry: RegistryArg = None) -> Path | None:
    """Where a fetched dataset is (its file, or an archive's unpacked folder), or None.

    Never downloads and does not re-hash: files enter the cache only once checked.
    """
    entry = _find(name, registry)
    folder = cache_dir()
    found = _unpacked(entry, folder) if entry.archive else folder / entry.name
    return found if found.exists() else None


# --- fetching ---------------------------------------------------------------------------


def fetch(name: str, *, registry: RegistryArg = None, progress: bool = False) -> Path:
    """Download a registry dataset (once), check it, unpack an archive; return where it is.

    Returns the file, or the folder an archive was unpacked into. A file already in the cache
    is re-hashed and downloaded again if it does not match. ``progress=True`` draws a
    progress line on stderr. Raises :class:`DatasetError` with one line when the name is
    unknown, the download fails, or the file does not match its hash; nothing of a failed
    download is left in the cache.
    """
    import pooch
    import requests

    entry = _find(name, registry)
    folder = cache_dir()
    target = folder / entry.name
    known = _known_hash(entry, cached=target.is_file())
    download = _Download(entry, known, progress=progress)
    pup = pooch.create(
        path=folder, base_url="", registry={entry.name: known}, urls={entry.name: entry.url}
    )
    try:
        path = Path(pup.fetch(entry.name, downloader=download))
    except Exception as error:
        if download.called and target.exists():  # pooch was replacing a file that mismatched
            target.unlink()
            if entry.archive:
                shutil.rmtree(_unpacked(entry, folder), ignore_errors=True)
        if isinstance(error, DatasetError):
            raise
        if isinstance(error, requests.RequestException):
            raise DatasetError(_download_failure(entry, error, download.received)) from None
        if isinstance(error, OSError):
            msg = (
                f"cannot store {entry.name} in {folder}: {error.strerror or error}; "
                f"set {DATA_DIR_ENV} to a writable folder"
            )
            raise DatasetError(msg) from None
        if isinstance(error, ValueError):  # pooch: a DOI it cannot resolve, ...
            raise DatasetError(f"cannot download {entry.name}: {error}") from None
        raise
    if download.called and not entry.verified:
        warnings.warn(
            f"{entry.name} was downloaded without an integrity check: the registry gives "
            f"no checksum for it ({entry.origin}); sha256 of this copy: {download.digest}",
            UserWarning,
            stacklevel=2,
        )
    if entry.archive:
        return _unpack(entry, path, fresh=download.called)
    return path


def _known_hash(entry: Dataset, *, cached: bool) -> str | None:
    """The hash pooch checks, or None (unverified; a from-doi file already in the cache,
    checked when it was downloaded, so that fetching it again needs no network)."""
    if entry.hash == UNVERIFIED or (entry.hash == FROM_DOI and cached):
        return None
    if entry.hash != FROM_DOI:
        return entry.hash
    import pooch
    import requests

    doi, _, filename = entry.url.removeprefix("doi:").rpartition("/")
    pup = pooch.create(path=cache_dir(), base_url=f"doi:{doi}/")
    try:
        pup.load_registry_from_doi()
    except requests.RequestException as error:
        msg = f"cannot read the checksums doi:{doi} publishes for {entry.name}: {_reason(error)}"
        raise DatasetError(msg) from None
    except (ValueError, KeyError, TypeError) as error:  # not a repository pooch knows
        msg = f"cannot read the checksums doi:{doi} publishes for {entry.name}: {error}"
        raise DatasetError(msg) from None
    if filename not in pup.registry:
        listed = ", ".join(pup.registry) or "nothing"
        msg = f"doi:{doi} has no file {filename!r} ({entry.origin}); it lists {listed}"
        raise DatasetError(msg)
    return pup.registry[filename]


class _Download:
    """A pooch downloader: pooch's HTTP (or DOI) downloader writing through a hashing sink,
    then the size and hash checks, so that a mismatch reads as one line with both hashes.

    It runs inside pooch's temporary-file context: when it raises, pooch deletes the file.
    """

    def __init__(self, entry: Dataset, known: str | None, *, progress: bool):
        self.entry = entry
        self.algorithm, _, self.expected = (known or "sha256:").partition(":")
        self.progress = progress
        self.called = False
        self.received = 0
        self.digest = ""

    def __call__(self, url: str, output_file: str, pup) -> None:
        import pooch

        self.called = True
        kind = pooch.DOIDownloader if url.startswith("doi:") else pooch.HTTPDownloader
        bar = _Progress(self.entry.name) if self.progress else False
        with open(output_file, "wb") as file:
            sink = _HashingWriter(file, self.algorithm)
            try:
                kind(progressbar=bar, chunk_size=_CHUNK)(url, sink, pup)
            except BaseException:
                if bar:  # end the progress line, so that the error starts a line of its own
                    bar.close()
                raise
            finally:
                self.received = sink.received
            self.digest = sink.hexdigest()
        entry, size = self.entry, self.entry.size
        got = f"{self.received} bytes" + (f" of {size}" if size is not None else "")
        if self.expected and self.digest != self.expected:
            msg = (
                f"{entry.name} from {entry.url}: {self.algorithm} mismatch: expected "
                f"{self.expected}, got {self.digest} ({got}) — the download is corrupted or "
                "the registry is wrong; nothing was kept"
            )
            raise DatasetError(msg)
        if size is not None and self.received != size:
            msg = (
                f"{entry.name} from {entry.url}: size mismatch: expected {size} bytes, got "
                f"{self.received} — the download is corrupted or the registry is wrong; "
                "nothing was kept"
            )
            raise DatasetError(msg)


class _HashingWriter:
    """A binary file that hashes and counts what is written to it."""

    def __init__(self, file, algorithm: str):
        self._file = file
        self._hash = hashlib.new(algorithm)
        self.received = 0

    def write(self, data: bytes) -> int:
        self._hash.update(data)
        self.received += len(data)
        return self._file.write(data)

    def flush(self) -> None:
        self._file.flush()

    def hexdigest(self) -> str:
        return self._hash.hexdigest()


class _Progress:
    """A progress line on stderr, driven by pooch's downloaders (total, update, reset, close)."""

    def __init__(self, label: str, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.total = 0
        self.done = 0
        self._shown = 0.0

    def update(self, nbytes: int) -> None:
        self.done += nbytes
        if time.monotonic() - self._shown > 0.25:
            self._show()

    def reset(self) -> None:
        self.done = 0

    def close(self) -> None:
        self._show()
        self.stream.write("\n")

    def _show(self) -> None:
        self._shown = time.monotonic()
        done = min(self.done, self.total) if self.total else self.done
        of = f" of {_human(self.total)} ({100 * done / self.total:.0f}%)" if self.total else ""
        self.stream.write(f"\r{self.label}: {_human(done)}{of}")
        self.stream.flush()


def _human(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return ""


def _download_failure(entry: Dataset, error, received: int) -> str:
    import requests

    where = f"cannot download {entry.name}: {entry.url}"
    if isinstance(error, requests.HTTPError) and error.response is not None:
        response = error.response
        moved = f" (at {response.url})" if response.url != entry.url else ""
        return f"{where}{moved} answered HTTP {response.status_code} {response.reason}"
    if isinstance(error, requests.Timeout):
        return f"{where} did not answer in time ({_reason(error)})"
    if isinstance(error, requests.ConnectionError):
        return f"{where} is unreachable ({_reason(error)})"
    if isinstance(error, requests.exceptions.ChunkedEncodingError):
        received, announced = _bytes_read(error, received)
        total = announced if announced is not None else entry.size
        of = f" of {total}" if total is not None else ""
        return (
            f"{where}: the connection broke after {received} bytes{of}; nothing was kept "
            "— try again"
        )
    return f"{where}: {_reason(error)}"


def _bytes_read(error: Exception, received: int) -> tuple[int, int | None]:
    """(bytes read, bytes announced) from the IncompleteRead that urllib3 raises when a
    connection closes early (it knows what was read but not handed on); else (received, None).
    """
    pending = [error]
    while pending:
        cause = pending.pop()
        partial, expected = getattr(cause, "partial", None), getattr(cause, "expected", None)
        if isinstance(partial, int) and isinstance(expected, int):
            return partial, partial + expected
        pending.extend(arg for arg in getattr(cause, "args", ()) if isinstance(arg, Exception))
    return received, None


def _reason(error: Exception) -> str:
    """The innermost readable cause of a requests error ("Connection refused"), one line."""
    text = str(error)
    found = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if found:
        return found.group(1).strip()
    return " ".join(text.split()) or type(error).__name__


# --- unpacking --------------------------------------------------------------------------


def _unpack(entry: Dataset, archive: Path, *, fresh: bool) -> Path:
    """Unpack with pooch's Unzip/Untar into a staging folder, check the members the registry
    lists, then rename it to NAME.unzip / NAME.untar: a folder under that name is complete."""
    import pooch

    final = _unpacked(entry, archive.parent)
    if final.is_dir() and not fresh:
        return final
    staging = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        if entry.archive == "tar":
            _check_tar(entry, archive, staging)
        processor = pooch.Unzip if entry.archive == "zip" else pooch.Untar
        processor(extract_dir=str(staging))(str(archive), "download", None)
        missing = [member for member in entry.members if not (staging / member).exists()]
        if missing:
            msg = (
                f"{entry.name} lacks {', '.join(missing)}, which the registry expects "
                f"({entry.origin}); nothing was unpacked"
            )
            raise DatasetError(msg)
        if final.exists():
            shutil.rmtree(final)
        try:
            os.replace(staging, final)
        except OSError:
            if not final.is_dir():
                raise
            # another process unpacked the same archive meanwhile: theirs is as good
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, BadGzipFile) as error:
        if not entry.verified:  # nothing vouches for the file: do not keep it
            archive.unlink(missing_ok=True)
        msg = f"{entry.name} is not a readable {entry.archive} archive: {error}"
        raise DatasetError(msg) from None
    except OSError as error:
        msg = f"cannot unpack {entry.name} into {final}: {error.strerror or error}"
        raise DatasetError(msg) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _check_tar(entry: Dataset, archive: Path, staging: Path) -> None:
    """Refuse a tar member that would land outside the folder (pooch filters tar members
    only on Python >= 3.12)."""
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            if hasattr(tarfile, "data_filter"):
                try:
                    tarfile.data_filter(member, str(staging))
                except tarfile.FilterError as error:
                    msg = f"refusing to unpack {entry.name}: {error}"
                    raise DatasetError(msg) from None
            elif member.name.startswith("/") or ".." in Path(member.name).parts:
                msg = f"refusing to unpack {entry.name}: member {member.name!r} leaves its folder"
                raise DatasetError(msg)
