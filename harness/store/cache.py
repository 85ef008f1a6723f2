"""Content-addressed on-disk cache for checkpoints, predictions and generated data.

Layout: ``<root>/<kind>/<key>/{<files>..., meta.json}``. An entry appears atomically:
it is built in ``<root>/<kind>/.tmp-<key>-<pid>-<rand>`` and renamed into place after
``meta.json`` (which lists the sha256 of every file) is written last. A ``filelock`` per
key (``<root>/<kind>/.locks/<key>.lock``) makes concurrent processes build once. Loads
verify the hashes; a corrupt entry is removed and rebuilt. See DESIGN.md section 5.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePath, PurePosixPath
from typing import Any

from filelock import FileLock, Timeout
from pydantic import BaseModel

from robustness_harness.errors import CacheError, HarnessError
from robustness_harness.store.remote import RemoteStore, is_url

__all__ = [
    "Cache",
    "Entry",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "cache_key",
    "sha256_file",
]

META_NAME = "meta.json"
ENV_VAR = "HARNESS_CACHE"
LOCAL_ENV_VAR = "HARNESS_LOCAL_CACHE"
"""With a remote ``--harness-cache URL``: the local read-through directory (default
``./.harness-cache``)."""
DEFAULT_DIR = ".harness-cache"
RESERVED_META_KEYS = ("files", "created", "harness_version")
STALE_AFTER_S = 3600.0
_CHUNK = 1 << 20
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=+-]{0,199}")
_SCRATCH_RE = re.compile(r"\.(?:tmp|trash)-(?P<key>.+)-(?P<pid>\d+)-[0-9a-f]{8}")
_FIX = "pass --harness-cache DIR or set HARNESS_CACHE=DIR to a writable directory"
_log = logging.getLogger("robustness_harness.store.cache")


# --------------------------------------------------------------------------- keys


def cache_key(*parts: Any) -> str:
    """sha256 hex of the canonical JSON of ``parts``.

    Accepts None, bool, int, float, str, lists/tuples, dicts with str keys, pydantic
    models (``model_dump(mode="json")``) and paths (as ``str``). Anything else raises
    ``TypeError`` naming the type and where it was found. ``1`` and ``1.0`` differ.
    """
    canon = _canonical(list(parts), "parts")
    text = json.dumps(canon, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _canonical(obj: Any, where: str) -> Any:
    """``obj`` as plain JSON types (exact str/int/float/bool/None, list, dict)."""
    if obj is None or isinstance(obj, bool):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, str):
        return str.__str__(obj)
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, BaseModel):
        return _canonical(obj.model_dump(mode="json"), where)
    if isinstance(obj, list | tuple):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, dict):
        return {_dict_key(k, where): _canonical(v, f"{where}[{k!r}]") for k, v in obj.items()}
    raise TypeError(f"cache_key cannot encode {type(obj).__qualname__} (at {where})")


def _dict_key(key: Any, where: str) -> str:
    if not isinstance(key, str):
        raise TypeError(
            f"cache_key needs str dict keys, got {type(key).__qualname__} {key!r} (at {where})"
        )
    return str.__str__(key)


# ------------------------------------------------------------------ file helpers


def sha256_file(path: Path) -> str:
    """sha256 hex of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as fh:
        while n := fh.readinto(buf):
            digest.update(view[:n])
    return digest.hexdigest()


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new content, never a mix.

    Writes a temp file in the same directory, fsyncs it, ``os.replace``s it over
    ``path`` and fsyncs the directory. The parent directory must exist.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    """:func:`atomic_write_bytes` of ``text`` encoded as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    """:func:`atomic_write_text` of ``obj`` as JSON (indent=2, sorted keys, final newline)."""
    text = json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False)
    atomic_write_text(path, text + "\n")


def _fsync_dir(path: Path) -> None:
    """Persist a rename in ``path`` (best effort: not every filesystem allows it)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _hash_tree(root: Path) -> dict[str, str]:
    """``{relative posix name: sha256}`` of every regular file under ``root``."""
    files: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            rel = path.relative_to(root).as_posix()
            if path.is_symlink() or not path.is_file():
                raise ValueError(f"cache build wrote {rel!r}, which is not a regular file")
            files[rel] = sha256_file(path)
    return files


@cache
def _harness_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("robustness-harness")
    except PackageNotFoundError:
        return "unknown"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ------------------------------------------------------------------------ entries


@dataclass(frozen=True)
class Entry:
    """A complete cache entry: its directory and its ``meta.json``.

    ``meta`` is the builder's meta plus ``files`` ({name: sha256}), ``created`` (ISO
    8601, UTC) and ``harness_version``.
    """

    kind: str
    key: str
    path: Path
    meta: dict = field(hash=False)

    @property
    def files(self) -> dict[str, str]:
        """``{relative name: sha256}`` of the entry's files."""
        return self.meta["files"]

    def file(self, name: str) -> Path:
        """Path of the entry's file ``name`` (``"sub/x.bin"`` for nested files)."""
        if name not in self.files:
            raise KeyError(
                f"cache entry {self.kind}/{self.key} has no file {name!r}; "
                f"it has {sorted(self.files)}"
            )
        return self.path / name


class _Corrupt(Exception):
    """An entry failed a check; ``str`` is the reason."""


class _NotRemote(Exception):
    """The remote store has no committed entry for the key."""


def _read_meta(entry_dir: Path) -> dict:
    """The parsed ``meta.json`` of an entry, or raise :class:`_Corrupt`."""
    try:
        meta = json.loads((entry_dir / META_NAME).read_text("utf-8"))
    except FileNotFoundError:
        raise _Corrupt("meta.json is missing") from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise _Corrupt(f"meta.json is unreadable: {exc}") from None
    _check_table(meta)
    return meta


def _check_table(meta: Any) -> None:
    """Raise :class:`_Corrupt` unless ``meta`` has a ``files`` table of safe relative
    names and sha256 strings (a local ``meta.json`` or a remote manifest's meta)."""
    if not isinstance(meta, dict) or not isinstance(meta.get("files"), dict):
        raise _Corrupt("meta.json has no 'files' table")
    for name, digest in meta["files"].items():
        if not _safe_relpath(name) or not isinstance(digest, str):
            raise _Corrupt(f"meta.json lists a bad file entry {name!r}")


def _safe_relpath(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return bool(parts) and not name.startswith("/") and ".." not in parts and name != META_NAME


def _check_files(entry_dir: Path, files: dict[str, str], *, hashes: bool) -> None:
    """Raise :class:`_Corrupt` if a listed file is missing or (``hashes``) differs."""
    for name, digest in files.items():
        path = entry_dir / name
        try:
            if not path.is_file():
                raise _Corrupt(f"file {name!r} is missing")
            if hashes and sha256_file(path) != digest:
                raise _Corrupt(f"sha256 of {name!r} does not match meta.json")
        except OSError as exc:
            raise _Corrupt(f"file {name!r} is unreadable: {exc}") from None


# -------------------------------------------------------------------------- cache


class Cache:
    """A content-addressed store of entries ``<root>/<kind>/<key>/``.

    ``on_event`` receives one-line human messages about rebuilds (default: a warning on
    the ``robustness_harness.store.cache`` logger). ``lock_timeout`` bounds the wait for another
    process's build (``None``: wait as long as it takes). With a ``remote`` store, an entry
    missing here is downloaded from it when it has one, and an entry built here is
    uploaded to it (``robustness_harness.store.remote``); ``downloads`` counts the first.
    """

    def __init__(
        self,
        root: Path | str,
        *,
        on_event: Callable[[str], None] | None = None,
        lock_timeout: float | None = None,
        remote: RemoteStore | None = None,
    ) -> None:
        self.root = Path(root).expanduser().absolute()
        self.on_event = on_event if on_event is not None else _log.warning
        self.lock_timeout = lock_timeout
        self.remote = remote
        self.downloads = 0
        _check_writable(self.root)

    @classmethod
    def from_env(cls, override: str | None = None, **kwargs: Any) -> Cache:
        """The cache at ``override``, else ``$HARNESS_CACHE``, else ``./.harness-cache``.
        A URL (``s3://bucket/prefix``) is a remote store read through the local directory
        ``$HARNESS_LOCAL_CACHE`` (default ``./.harness-cache``)."""
        location = override or os.environ.get(ENV_VAR) or DEFAULT_DIR
        if is_url(location):
            local = os.environ.get(LOCAL_ENV_VAR) or DEFAULT_DIR
            return cls(local, remote=RemoteStore(location), **kwargs)
        return cls(location, **kwargs)

    def __repr__(self) -> str:
        remote = f", remote={self.remote.url!r}" if self.remote is not None else ""
        return f"Cache({str(self.root)!r}{remote})"

    # ------------------------------------------------------------------ lookup

    def entry_dir(self, kind: str, key: str) -> Path:
        """``<root>/<kind>/<key>`` (whether or not it exists)."""
        return self.root / _check_name(kind, "kind") / _check_name(key, "key")

    def get(self, kind: str, key: str, *, verify: bool = True) -> Entry | None:
        """The entry, or None if absent. A corrupt entry is removed and None returned.

        ``verify`` re-hashes every file; without it only ``meta.json`` and the presence
        of the listed files are checked.
        """
        entry, reason = self._inspect(kind, key, hashes=verify)
        if entry is not None or (reason is None and self.remote is None):
            return entry
        with self._locked(kind, key):
            entry, reason = self._inspect(kind, key, hashes=verify)
            if reason is not None:
                self._drop_corrupt(kind, key, reason)
            if entry is None:
                entry = self._download(kind, key)
        return entry

    def get_or_build(
        self,
        kind: str,
        key: str,
        build: Callable[[Path], dict],
        *,
        rebuild: bool = False,
    ) -> tuple[Entry, bool]:
        """``(entry, built_now)``: the verified entry, built by ``build`` if needed.

        ``build(tmp_dir)`` writes its files into ``tmp_dir`` and returns the user meta
        (a JSON-able dict without the keys ``files``, ``created``, ``harness_version``).
        Exceptions from ``build`` propagate unchanged and leave nothing behind.
        ``rebuild`` replaces an existing entry once the new one is complete (a failed
        rebuild keeps the old entry).
        """
        if not rebuild:
            entry, reason = self._inspect(kind, key, hashes=True)
            if entry is not None:
                return entry, False
        with self._locked(kind, key):
            self._clean_scratch(kind, key)
            entry, reason = self._inspect(kind, key, hashes=True)
            if entry is not None and not rebuild:
                return entry, False
            if reason is not None:
                self._drop_corrupt(kind, key, reason)
            elif entry is not None:
                self.on_event(f"cache entry {kind}/{key}: rebuilding as requested")
            if not rebuild:
                downloaded = self._download(kind, key)
                if downloaded is not None:
                    return downloaded, False
            built = self._build(kind, key, build)
            self._upload(built)
            return built, True

    # ----------------------------------------------------------------- remote

    def _download(self, kind: str, key: str) -> Entry | None:
        """The remote store's entry, committed here as a local entry (lock held)."""
        if self.remote is None:
            return None
        remote = self.remote

        def fill(tmp: Path) -> dict:
            manifest = remote.manifest(kind, key)
            if manifest is None:
                raise _NotRemote
            meta = manifest.get("meta")
            try:  # the checks a local entry gets: a safe files table, every sha256
                _check_table(meta)
                remote.download(kind, key, manifest.get("upload"), meta["files"], tmp)
                _check_files(tmp, meta["files"], hashes=True)
            except (_Corrupt, FileNotFoundError) as exc:
                self.on_event(f"remote cache {remote.url}: {kind}/{key} not used ({exc})")
                raise _NotRemote from None
            return {k: v for k, v in meta.items() if k not in RESERVED_META_KEYS}

        try:
            entry = self._build(kind, key, fill)
        except _NotRemote:
            return None
        except OSError as exc:  # unreachable storage: build here instead
            self.on_event(f"remote cache {remote.url}: cannot read {kind}/{key} ({exc})")
            return None
        self.downloads += 1
        return entry

    def _upload(self, entry: Entry) -> None:
        """Share a new local entry through the remote store (failures are warnings)."""
        if self.remote is None:
            return
        try:
            self.remote.publish(entry.kind, entry.key, entry.path, entry.meta)
        except OSError as exc:
            self.on_event(
                f"remote cache {self.remote.url}: cannot write {entry.kind}/{entry.key} ({exc})"
            )

    # ---------------------------------------------------------------- listing

    def ls(self) -> list[Entry]:
        """All complete entries (meta.json readable; files not checked), sorted."""
        entries = []
        for kind, entry_dir in self._iter_entry_dirs():
            with contextlib.suppress(_Corrupt):
                entries.append(Entry(kind, entry_dir.name, entry_dir, _read_meta(entry_dir)))
        return entries

    def verify(self) -> list[tuple[Entry | Path, str]]:
        """Problems found, as ``(entry or path, reason)``; the cache is not changed.

        Checks every entry's hashes and reports scratch directories left by killed
        builds (removed by the next build of that key or by :meth:`clear`).
        """
        problems: list[tuple[Entry | Path, str]] = []
        for kind, entry_dir in self._iter_entry_dirs():
            try:
                meta = _read_meta(entry_dir)
            except _Corrupt as exc:
                problems.append((entry_dir, str(exc)))
                continue
            entry = Entry(kind, entry_dir.name, entry_dir, meta)
            try:
                _check_files(entry_dir, entry.files, hashes=True)
            except _Corrupt as exc:
                problems.append((entry, str(exc)))
        for kind_dir in self._kind_dirs():
            for path in self._stale_scratch(kind_dir, key=None):
                problems.append((path, "leftover temporary directory of an interrupted build"))
        return problems

    def clear(self, kind: str | None = None) -> int:
        """Remove every entry (of ``kind``, if given); return how many were removed.

        Also removes scratch directories of interrupted builds. Lock files are kept:
        deleting one while another process holds it would break mutual exclusion.
        """
        if kind is not None:
            _check_name(kind, "kind")
        removed = 0
        for entry_kind, entry_dir in self._iter_entry_dirs():
            if kind in (None, entry_kind) and self._discard(entry_dir):
                removed += 1
        for kind_dir in self._kind_dirs():
            if kind in (None, kind_dir.name):
                self._clear_scratch(kind_dir)
        return removed

    # --------------------------------------------------------------- internals

    def _inspect(self, kind: str, key: str, *, hashes: bool) -> tuple[Entry | None, str | None]:
        """``(entry, None)`` if sound, ``(None, reason)`` if corrupt, ``(None, None)`` if absent."""
        entry_dir = self.entry_dir(kind, key)
        if not entry_dir.exists():
            return None, None
        try:
            meta = _read_meta(entry_dir)
            _check_files(entry_dir, meta["files"], hashes=hashes)
        except _Corrupt as exc:
            if not entry_dir.exists():  # removed by a concurrent clear()
                return None, None
            return None, str(exc)
        return Entry(kind, key, entry_dir, meta), None

    def _drop_corrupt(self, kind: str, key: str, reason: str) -> None:
        self.on_event(f"cache entry {kind}/{key} was corrupt ({reason}); rebuilding")
        self._discard(self.entry_dir(kind, key))

    def _build(self, kind: str, key: str, build: Callable[[Path], dict]) -> Entry:
        """Build into a scratch directory and rename it into place (lock held).

        An existing entry (``rebuild``) stays in place until the new one is complete,
        so readers see it missing only for the two renames of the swap.
        """
        kind_dir = self.root / kind
        tmp = kind_dir / f".tmp-{key}-{os.getpid()}-{secrets.token_hex(4)}"
        final = self.entry_dir(kind, key)
        try:
            tmp.mkdir()
            meta = self._finish(tmp, build(tmp))
            old = self._move_aside(final)
            os.replace(tmp, final)
        except BaseException as exc:
            shutil.rmtree(tmp, ignore_errors=True)
            if isinstance(exc, OSError) and _is_under(exc, kind_dir):
                raise CacheError(
                    f"cannot write cache entry {kind}/{key}: {exc.strerror or exc}",
                    file=exc.filename,
                    hint=f"free disk space or {_FIX}",
                ) from None
            raise
        _fsync_dir(kind_dir)
        if old is not None:
            _delete(old)
        return Entry(kind, key, final, meta)

    @staticmethod
    def _finish(tmp: Path, user_meta: dict) -> dict:
        """Hash the built files and write meta.json, last."""
        if not isinstance(user_meta, dict):
            raise TypeError(f"cache build must return a dict, got {type(user_meta).__name__}")
        clash = [k for k in RESERVED_META_KEYS if k in user_meta]
        if clash:
            raise ValueError(f"cache build meta must not set the reserved keys {clash}")
        if (tmp / META_NAME).exists():
            raise ValueError(f"cache build must not write {META_NAME}; return the meta instead")
        meta = {
            **user_meta,
            "files": _hash_tree(tmp),
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "harness_version": _harness_version(),
        }
        atomic_write_json(tmp / META_NAME, meta)
        return meta

    def _discard(self, entry_dir: Path) -> bool:
        """Move ``entry_dir`` aside atomically, then delete it; False if already gone."""
        trash = self._move_aside(entry_dir)
        if trash is None:
            return False
        _delete(trash)
        return True

    @staticmethod
    def _move_aside(entry_dir: Path) -> Path | None:
        """Rename ``entry_dir`` to a ``.trash-`` sibling; None if it does not exist."""
        trash = entry_dir.with_name(f".trash-{entry_dir.name}-{os.getpid()}-{secrets.token_hex(4)}")
        try:
            os.rename(entry_dir, trash)
        except FileNotFoundError:
            return None
        return trash

    @contextlib.contextmanager
    def _locked(self, kind: str, key: str, timeout: float | None = None) -> Iterator[None]:
        """Hold the per-key file lock (creating the directories it needs)."""
        lock_dir = self.root / _check_name(kind, "kind") / ".locks"
        make_dirs(lock_dir, CacheError, "the harness cache directory", file=self.root, hint=_FIX)
        lock_path = lock_dir / f"{_check_name(key, 'key')}.lock"
        wait = self.lock_timeout if timeout is None else timeout
        lock = FileLock(lock_path, timeout=-1 if wait is None else wait)
        try:
            lock.acquire()
        except Timeout:
            raise CacheError(
                f"another process has held the lock for {kind}/{key} for over {wait} s",
                file=lock_path,
                hint="wait for the other run to finish, or remove a stuck process",
            ) from None
        try:
            yield
        finally:
            lock.release()

    def _kind_dirs(self) -> list[Path]:
        if not self.root.is_dir():
            return []
        return sorted(p for p in self.root.iterdir() if p.is_dir() and _is_name(p.name))

    def _iter_entry_dirs(self) -> Iterator[tuple[str, Path]]:
        for kind_dir in self._kind_dirs():
            for entry_dir in sorted(kind_dir.iterdir()):
                if entry_dir.is_dir() and _is_name(entry_dir.name):
                    yield kind_dir.name, entry_dir

    def _clean_scratch(self, kind: str, key: str) -> None:
        """Remove scratch dirs of ``key`` left by dead or old builds (lock held)."""
        for path in self._stale_scratch(self.root / kind, key=key):
            _log.info("removing leftover cache directory %s", path)
            shutil.rmtree(path, ignore_errors=True)

    def _clear_scratch(self, kind_dir: Path) -> None:
        """Remove stale scratch dirs of every key whose lock is free right now."""
        by_key: dict[str, list[Path]] = {}
        for path in self._stale_scratch(kind_dir, key=None):
            by_key.setdefault(_scratch_key(path), []).append(path)
        for key, paths in by_key.items():
            with contextlib.suppress(CacheError), self._locked(kind_dir.name, key, timeout=0):
                for path in paths:
                    shutil.rmtree(path, ignore_errors=True)

    @staticmethod
    def _stale_scratch(kind_dir: Path, *, key: str | None) -> list[Path]:
        """Scratch dirs (of ``key``, or of any key) whose owner is dead or that are old."""
        if not kind_dir.is_dir():
            return []
        now = time.time()
        stale = []
        for path in sorted(kind_dir.iterdir()):
            match = _SCRATCH_RE.fullmatch(path.name)
            if match is None or (key is not None and match["key"] != key):
                continue
            with contextlib.suppress(FileNotFoundError):
                old = now - path.stat().st_mtime > STALE_AFTER_S
                if old or not _pid_alive(int(match["pid"])):
                    stale.append(path)
        return stale


def _delete(path: Path) -> None:
    """Remove a moved-aside entry (leftovers are cleaned as stale scratch later)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _is_under(exc: OSError, directory: Path) -> bool:
    """Whether the file an ``OSError`` names lies in ``directory`` (a cache write failed)."""
    name = exc.filename
    return isinstance(name, str | os.PathLike) and Path(name).is_relative_to(directory)


def _scratch_key(path: Path) -> str:
    match = _SCRATCH_RE.fullmatch(path.name)
    assert match is not None
    return match["key"]


def _is_name(name: str) -> bool:
    return _NAME_RE.fullmatch(name) is not None


def _check_name(name: str, what: str) -> str:
    """``name`` if it is a safe single path component, else ``ValueError``."""
    if not isinstance(name, str) or not _is_name(name):
        raise ValueError(
            f"cache {what} {name!r} must be 1-200 characters of letters, digits and "
            "'_.=+-', not starting with '.' or '-'"
        )
    return name


def _check_writable(root: Path) -> None:
    """Raise :class:`CacheError` unless ``root`` exists as or can become a writable dir."""
    probe = root
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        problem = f"{probe} is not a directory" if probe != root else "it is not a directory"
    elif not os.access(probe, os.W_OK | os.X_OK):
        problem = f"{probe} is not writable" if probe != root else "it is not writable"
    else:
        return
    raise CacheError(
        f"cannot use this as the harness cache directory: {problem}", file=root, hint=_FIX
    )


def make_dirs(
    path: Path,
    error: type[HarnessError],
    what: str,
    *,
    file: Path,
    field: str | None = None,
    hint: str | None = None,
) -> None:
    """Create ``path`` and its missing parents; failing, raise ``error`` located at
    ``file`` and ``field`` with the message ``cannot create <what>: <reason>``."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        reason = exc.strerror or exc
        raise error(f"cannot create {what}: {reason}", file=file, field=field, hint=hint) from None
