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
matches, and archives (``.zip``, ``.tar``, ``.tar.gz``, ``.tgz``) are unpacked (every member
checked first: no path out of the folder, no device, a bounded size) into a staging folder
that is renamed to ``NAME.unzip`` / ``NAME.untar`` only once complete: whatever the cache
holds under a registry name is whole. Nothing here touches the disk or the network at import
time.
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
import time
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from gzip import BadGzipFile
from pathlib import Path

from tomobench._atomic import atomic_path
from tomobench._text import file_kind, shorten
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
        text = _read_regular(path)
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


def _read_regular(path: Path) -> str:
    """The UTF-8 text of a regular file; OSError for anything else (a FIFO would block, a
    device never end), checked before the file is opened."""
    import stat

    if not stat.S_ISREG(os.stat(path).st_mode):
        raise OSError("not a regular file")
    return path.read_text(encoding="utf-8")


_MAX_LINE = 4096
"""Longest registry line, in characters: shlex takes quadratic time in a field's length."""


def _parse_line(line: str, *, origin: str) -> Dataset:
    def fail(problem: str):
        raise DatasetError(f"{origin}: {problem}")

    if len(line) > _MAX_LINE:
        fail(f"the line is {len(line)} characters long; a registry line holds at most {_MAX_LINE}")
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
    """The innermost readable cause of a requests error ("Connection refused"), one line:
    the ``strerror`` of the first operating-system error among its causes (each error's
    ``__cause__``, ``__context__``, the errors among its ``args`` and urllib3's ``reason``),
    else the error's own text."""
    pending, seen = [error], set()
    while pending:
        cause = pending.pop(0)
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, OSError) and cause.strerror:
            return " ".join(str(cause.strerror).split())
        pending += [found for found in (cause.__cause__, cause.__context__) if found is not None]
        pending += [arg for arg in getattr(cause, "args", ()) if isinstance(arg, BaseException)]
        reason = getattr(cause, "reason", None)
        if isinstance(reason, BaseException):
            pending.append(reason)
    return " ".join(str(error).split()) or type(error).__name__


# --- unpacking --------------------------------------------------------------------------


def _unpack(entry: Dataset, archive: Path, *, fresh: bool) -> Path:
    """Unpack (:func:`_unpack_members`) into a staging folder, check the members the registry
    lists, then rename it to NAME.unzip / NAME.untar (replacing a folder there whole): a
    folder under that name is complete."""
    final = _unpacked(entry, archive.parent)
    if final.is_dir() and not fresh:
        return final
    with atomic_path(final, error=DatasetError) as staging:
        staging.mkdir()
        _extract(entry, archive, staging, final)
    return final


def _extract(entry: Dataset, archive: Path, staging: Path, final: Path) -> None:
    """Unpack ``archive`` into the folder ``staging`` and check that it holds the members the
    registry lists; :class:`DatasetError` otherwise (an unreadable archive that nothing
    vouches for is deleted)."""
    try:
        _unpack_members(entry, archive, staging)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, BadGzipFile) as error:
        if not entry.verified:  # nothing vouches for the file: do not keep it
            archive.unlink(missing_ok=True)
        msg = f"{entry.name} is not a readable {entry.archive} archive: {error}"
        raise DatasetError(msg) from None
    except OSError as error:
        msg = f"cannot unpack {entry.name} into {final}: {error.strerror or error}"
        raise DatasetError(msg) from None
    missing = [member for member in entry.members if not (staging / member).exists()]
    if missing:
        msg = (
            f"{entry.name} lacks {', '.join(missing)}, which the registry expects "
            f"({entry.origin}); nothing was unpacked"
        )
        raise DatasetError(msg)


_UNPACK_RATIO = 100
"""Most bytes an archive may unpack to, per byte of the archive (DIV2K's zips of PNGs: 1)."""
_UNPACK_CEILING = 64 << 30
"""Most bytes an archive of an entry that declares no size (``size=-``) may unpack to."""
_TAR_READ = 16 << 20
"""Most bytes tarfile may read from an archive at once: it reads a pax or GNU long-name
header whole, whatever size the header claims (file data goes in small reads)."""
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_DRIVE = re.compile(r"[A-Za-z]:")


def _unpack_members(entry: Dataset, archive: Path, staging: Path) -> None:
    """Unpack ``archive`` into the empty folder ``staging``, refusing a hostile archive before
    anything is written: every member is checked first (its path, its type, where a link
    points, the bytes all members declare), then a tar is extracted with tarfile's ``data``
    filter where Python has it, a zip by :func:`_write_zip`; the bytes written are counted
    against the same bound. :class:`DatasetError` names the archive and the member."""
    budget = _Budget(entry, archive)
    if entry.archive == "zip":
        with zipfile.ZipFile(archive) as zipped:
            infos = _check_zip(entry, zipped, budget)
            _write_zip(entry, zipped, infos, staging, budget)
        return
    with open(archive, "rb") as raw, _decompressed(raw) as stream:
        source = _TarStream(entry, stream, compressed=stream is not raw)
        with tarfile.open(fileobj=source, mode="r:") as tar:
            members = _check_tar(entry, tar, staging, budget)
            safest = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
            tar.extractall(staging, members=budget.counted(members, staging), **safest)


def _path_problem(name: str) -> str | None:
    """What makes a member's path land outside the folder it is unpacked into, or None."""
    if "\x00" in name:
        return "has a NUL character in its name"
    if name.startswith(("/", "\\")) or _DRIVE.match(name):
        return "has an absolute path"
    if ".." in re.split(r"[/\\]", name):
        return "has a '..' component"
    return None


def _relative(name: str) -> str:
    """A checked member name as the path it lands at, relative to the folder."""
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def _refuse(entry: Dataset, name: str, problem: str) -> DatasetError:
    msg = (
        f"refusing to unpack {entry.name}: member {shorten(name)!r} {problem}; "
        "nothing was unpacked"
    )
    return DatasetError(msg)


class _Budget:
    """The bytes an archive may unpack to: at most ``_UNPACK_RATIO`` × the archive's size, and
    at most ``_UNPACK_RATIO`` × the size its registry entry declares (``_UNPACK_CEILING`` when
    it declares none). Checked against the sizes the members declare before anything is
    written, then against the bytes written."""

    def __init__(self, entry: Dataset, archive: Path):
        self.entry = entry
        size = archive.stat().st_size
        bounds = [(_UNPACK_RATIO * size, f"{_UNPACK_RATIO} × the archive's {size} bytes")]
        if entry.size is not None:
            declared = f"{_UNPACK_RATIO} × the {entry.size} bytes its registry entry declares"
            bounds.append((_UNPACK_RATIO * entry.size, declared))
        else:
            unknown = f"the {_UNPACK_CEILING} bytes allowed to an entry of unknown size"
            bounds.append((_UNPACK_CEILING, unknown))
        self.bound, self.why = min(bounds, key=lambda bound: bound[0])  # the first of equals
        self.declared = 0
        self.written = 0

    def declare(self, nbytes: int, *, complete: bool) -> None:
        self.declared += nbytes
        if self.declared > self.bound:
            least = "" if complete else "at least "
            msg = (
                f"refusing to unpack {self.entry.name}: its members would unpack to {least}"
                f"{self.declared} bytes, more than the bound of {self.bound} bytes ({self.why}); "
                "nothing was unpacked"
            )
            raise DatasetError(msg)

    def write(self, nbytes: int, member: str) -> None:
        self.written += nbytes
        if self.written > self.bound:
            msg = (
                f"refusing to unpack {self.entry.name}: it wrote more than the bound of "
                f"{self.bound} bytes ({self.why}) at member {shorten(member)!r}, though its "
                f"members declare {self.declared}; stopped, and nothing was kept"
            )
            raise DatasetError(msg)

    def counted(self, members: list[tarfile.TarInfo], staging: Path):
        """``members`` for ``TarFile.extractall``, which extracts each before it asks for the
        next: the size of each file extracted is then counted."""
        for member in members:
            yield member
            if member.isreg():
                self.write(os.lstat(staging / _relative(member.name)).st_size, member.name)


# --- zip


def _check_zip(entry: Dataset, zipped: zipfile.ZipFile, budget: _Budget) -> list:
    import stat

    infos = zipped.infolist()
    for info in infos:
        problem = _path_problem(info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16) if info.create_system == 3 else 0
        if problem is None and info.flag_bits & 0x1:
            problem = "is encrypted"
        elif problem is None and info.compress_type not in _ZIP_METHODS:
            problem = f"uses compression method {info.compress_type}, which Python cannot read"
        elif problem is None and kind == stat.S_IFLNK:  # unpacked as a file holding the target
            if info.file_size > 4096:
                problem = f"is a symbolic link of {info.file_size} bytes"
            else:
                target = zipped.read(info).decode("utf-8", "replace")
                problem = _symlink_problem(_relative(info.filename), target, links=set())
        elif problem is None and kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            problem = f"is {file_kind(kind)}"
        if problem is not None:
            raise _refuse(entry, info.filename, problem)
    budget.declare(sum(info.file_size for info in infos if not info.is_dir()), complete=True)
    return infos


def _write_zip(
    entry: Dataset, zipped: zipfile.ZipFile, infos: list, staging: Path, budget: _Budget
) -> None:
    """Write checked zip members under ``staging``, counting the bytes that come out of each:
    a member that unpacks to more than it declares is refused."""
    import lzma

    for info in infos:
        path = _relative(info.filename)
        if not path:
            continue
        target = staging / path
        if info.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        written = 0
        try:
            with zipped.open(info) as source, open(target, "wb") as sink:
                while chunk := source.read(_CHUNK):
                    written += len(chunk)
                    if written > info.file_size:
                        problem = f"unpacks to more than the {info.file_size} bytes it declares"
                        raise _refuse(entry, info.filename, problem)
                    budget.write(len(chunk), info.filename)
                    sink.write(chunk)
        except lzma.LZMAError as error:
            raise zipfile.BadZipFile(f"{info.filename}: {error}") from None


# --- tar


def _check_tar(entry: Dataset, tar: tarfile.TarFile, staging: Path, budget: _Budget) -> list:
    """Every member of ``tar``, each checked as it is read (so that a member too large is
    refused before its data is read past): its path, its type, where a link points, and
    tarfile's own ``data`` filter where Python has it (it strips a leading ``/`` on some
    versions rather than refusing: the path checks come first)."""
    members = []
    files: set[str] = set()  # regular files (and hard links to them) seen so far
    links: set[str] = set()  # symbolic links seen so far, case-folded
    folders: set[str] = set()  # every folder that a member seen so far lies in, case-folded
    for member in tar:
        problem = _path_problem(member.name) or _tar_problem(member, files, links, folders)
        if problem is None and hasattr(tarfile, "data_filter"):
            try:
                tarfile.data_filter(member, str(staging))
            except tarfile.FilterError as error:
                problem = f"is refused by tarfile's data filter ({shorten(str(error))})"
        if problem is not None:
            raise _refuse(entry, member.name, problem)
        if member.isreg():
            budget.declare(member.size, complete=False)
        members.append(member)
    return members


def _tar_problem(member: tarfile.TarInfo, files: set, links: set, folders: set) -> str | None:
    """What is wrong with a tar member whose path is checked, given those before it; records
    it in ``files``, ``links``, ``folders`` when nothing is."""
    path = _relative(member.name)
    parts = path.casefold().split("/") if path else []
    for end in range(1, len(parts) + 1):
        if "/".join(parts[:end]) in links:
            return f"lies at or under the symbolic link {'/'.join(path.split('/')[:end])!r}"
    if (member.issym() or member.islnk()) and not path:
        return "is a link in place of the folder itself"
    if member.issym():
        if path.casefold() in folders:
            return "is a symbolic link that replaces a folder of earlier members"
        problem = _symlink_problem(path, member.linkname, links)
        if problem is None:
            links.add(path.casefold())
    elif member.islnk():
        target = member.linkname
        problem = _path_problem(target)
        if problem is not None:
            problem = f"is a hard link to {shorten(target)!r}, which {problem}"
        elif _relative(target) not in files:
            problem = f"is a hard link to {shorten(target)!r}, not to a file before it"
        else:
            files.add(path)
    elif member.isreg():
        problem = None
        files.add(path)
    elif member.isdir():
        problem = None
    elif member.ischr():
        problem = "is a character device"
    elif member.isblk():
        problem = "is a block device"
    elif member.isfifo():
        problem = "is a FIFO"
    else:
        problem = f"is neither a file, a folder nor a link (tar type {member.type!r})"
    if problem is None:
        folders.update("/".join(parts[:end]) for end in range(1, len(parts)))
    return problem


def _symlink_problem(path: str, target: str, links: set) -> str | None:
    """What is wrong with a symbolic link at ``path`` (relative to the folder) to ``target``:
    a target outside the folder, absolute, or reached through another link; else None."""
    if not target:
        return "is a symbolic link to nothing"
    if "\x00" in target or target.startswith(("/", "\\")) or _DRIVE.match(target):
        return f"is a symbolic link to the absolute path {shorten(target)!r}"
    where = path.split("/")[:-1]
    for part in re.split(r"[/\\]", target):
        if part in ("", "."):
            continue
        if part != "..":
            where.append(part)
        elif where:
            where.pop()
        else:
            return f"is a symbolic link to {shorten(target)!r}, outside the folder"
        if "/".join(where).casefold() in links:
            return f"is a symbolic link to {shorten(target)!r}, through another symbolic link"
    return None


class _TarStream:
    """An archive's tar bytes (decompressed) for tarfile, which may not read more than
    ``_TAR_READ`` bytes at once; a decompression error reads as an unreadable tar."""

    def __init__(self, entry: Dataset, stream, compressed: bool):
        self.entry = entry
        self.stream = stream
        self.compressed = compressed

    def read(self, size: int = -1) -> bytes:
        import lzma

        if size is None or size < 0 or size > _TAR_READ:
            msg = (
                f"refusing to unpack {self.entry.name}: a tar header asks to read "
                f"{'everything' if size is None or size < 0 else f'{size} bytes'} at once, "
                f"more than {_TAR_READ}; nothing was unpacked"
            )
            raise DatasetError(msg)
        try:
            return self.stream.read(size)
        except (EOFError, zlib.error, lzma.LZMAError, OSError) as error:
            if not self.compressed:
                raise
            raise tarfile.ReadError(f"cannot decompress: {error}") from None

    def seek(self, offset: int, whence: int = 0) -> int:
        import lzma

        try:
            return self.stream.seek(offset, whence)
        except (EOFError, zlib.error, lzma.LZMAError, OSError) as error:
            if not self.compressed:
                raise
            raise tarfile.ReadError(f"cannot decompress: {error}") from None

    def tell(self) -> int:
        return self.stream.tell()


def _decompressed(raw):
    """The tar bytes of an open archive: the file itself, or a gzip, bzip2 or xz reader of it,
    by its first bytes (as tarfile's ``r:*`` would choose)."""
    import bz2
    import gzip
    import lzma

    magic = raw.read(6)
    raw.seek(0)
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(raw)
    if magic == b"\xfd7zXZ\x00":
        return lzma.LZMAFile(raw)
    return raw
