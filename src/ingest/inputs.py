"""What ``ocds-ingest load`` reads: files and folders, plain or compressed, as a stream of named byte streams.

Folders are searched recursively for ``*.json``, ``*.jsonl``, ``*.ndjson`` (and files without a suffix), each
possibly compressed (``.gz``, ``.bz2``, ``.xz``), and for archives (``.zip``, ``.tar``, ``.tar.gz``/``.tgz``,
``.tar.bz2``, ``.tar.xz``) whose members are chosen by the same rule. Everything is decompressed as it is read:
nothing is unpacked to disk and memory does not grow with the file. Bytes are counted as they are read from disk
(compressed bytes for compressed files), which is what a progress bar can compare with the total on disk.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ingest.documents import detect_encoding
from ingest.errors import ConfigurationError

JSON_SUFFIXES = (".json", ".jsonl", ".ndjson", "")
_COMPRESSORS: dict[str, Callable[[Any], Any]] = {
    ".gz": lambda raw: gzip.GzipFile(fileobj=raw, mode="rb"),
    ".bz2": lambda raw: bz2.BZ2File(raw, mode="rb"),
    ".xz": lambda raw: lzma.LZMAFile(raw, mode="rb"),
}
_TARS = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")
DESCRIBED = ("*.json, *.jsonl, *.ndjson, each also .gz, .bz2 or .xz, and .zip or .tar(.gz/.bz2/.xz) archives of "
             "them")
# The bad-archive errors of the standard library, named here once.
ARCHIVE_ERRORS = (OSError, EOFError, zlib.error, zipfile.BadZipFile, tarfile.TarError, lzma.LZMAError)


def _kind(name: str) -> str:
    """'tar', 'zip', 'json' or '' (not ours), from a file name."""
    lower = name.lower()
    if lower.endswith(_TARS):
        return "tar"
    if lower.endswith(".zip"):
        return "zip"
    for suffix in _COMPRESSORS:
        if lower.endswith(suffix):
            lower = lower[: -len(suffix)]
            break
    return "json" if Path(lower).suffix in JSON_SUFFIXES else ""


def _hidden(name: str) -> bool:
    return any(part.startswith(".") or part == "__MACOSX" for part in Path(name).parts)


STDIN = Path("-")  # standard input, read as one JSON document


def size_on_disk(path: Path) -> int | None:
    return None if path == STDIN else path.stat().st_size


def find(paths: Sequence[str]) -> list[Path]:
    """The files to read: given files as they are, folders searched recursively. A missing path is an error."""
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if given == "-":
            files.append(STDIN)
        elif path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(str(p.relative_to(path)))
                                and _kind(p.name)))
        elif path.is_file():
            files.append(path)
        elif path.exists():
            raise ConfigurationError(f"{given} is neither a file nor a folder")
        else:
            raise ConfigurationError(f"no such file or folder: {given} (give JSON files or folders of them)")
    return files


class Counting(io.RawIOBase):
    """A file read through this reports how many bytes were read from it (to a progress bar)."""

    def __init__(self, raw: BinaryIO, on_bytes: Callable[[int], None], *, owned: bool = True) -> None:
        self.raw = raw
        self.on_bytes = on_bytes
        self.owned = owned

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self.raw.seekable()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def readinto(self, buffer: Any) -> int:
        data = self.raw.read(len(buffer))
        buffer[: len(data)] = data
        if data:
            self.on_bytes(len(data))
        return len(data)

    def close(self) -> None:
        if self.owned:
            self.raw.close()
        super().close()


@dataclass
class Member:
    """One JSON document to load: its name (``file`` or ``archive!member``) and its decompressed bytes."""

    name: str
    stream: BinaryIO
    size: int | None  # known for plain files only


def members(path: Path, on_bytes: Callable[[int], None] = lambda n: None) -> Iterator[Member]:
    """The documents in one file, decompressed as they are read. Raises ConfigurationError for a bad archive."""
    raw = sys.stdin.buffer if path == STDIN else path.open("rb")
    counted = io.BufferedReader(Counting(raw, on_bytes, owned=path != STDIN), buffer_size=256 * 1024)
    try:
        if path == STDIN:
            yield Member("stdin", counted, None)
            return
        kind = _kind(path.name) or "json"  # a file given by name is read whatever its suffix
        if kind == "zip":
            with zipfile.ZipFile(counted) as archive:
                for info in archive.infolist():
                    if not info.is_dir() and not _hidden(info.filename) and _kind(info.filename) == "json":
                        with archive.open(info) as member:
                            yield _decompressed(f"{path}!{info.filename}", member, None)
        elif kind == "tar":
            with tarfile.open(fileobj=counted, mode="r|*") as archive:
                for entry in archive:
                    if entry.isfile() and not _hidden(entry.name) and _kind(entry.name) == "json":
                        member = archive.extractfile(entry)
                        if member is not None:
                            yield _decompressed(f"{path}!{entry.name}", member, None)
        else:
            yield _decompressed(str(path), counted, path.stat().st_size)
    except ARCHIVE_ERRORS as exc:
        if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) and exc.errno is not None:
            raise ConfigurationError(f"cannot read {path}: {exc.strerror}") from None
        raise ConfigurationError(f"{path} is not a readable archive or compressed file ({exc}); "
                                 "what was read before it is committed") from None
    finally:
        counted.close()


def _decompressed(name: str, stream: Any, size: int | None) -> Member:
    lower = name.lower()
    for suffix, opener in _COMPRESSORS.items():
        if lower.endswith(suffix):
            return Member(name, opener(stream), None)
    return Member(name, stream, size)


def sniff(head: bytes) -> str:
    """'json', 'empty' (nothing but white space) or 'text' (cannot be JSON), from a document's first bytes."""
    encoding, bom = detect_encoding(head[:4])
    text = head[bom:].decode(encoding, errors="ignore").lstrip(" \t\r\n")
    if not text:
        return "empty"
    if text[0] in '{["-0123456789' or text.startswith(("true", "false", "null")):
        return "json"
    return "text"
