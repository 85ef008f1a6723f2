"""A cache on shared storage (``--harness-cache s3://bucket/prefix``, ``gs://``, ``az://``,
``file://``): entries of the local cache mirrored through fsspec.

An entry ``<kind>/<key>`` is uploaded as ``<kind>/<key>/<upload id>/<files>`` and then
``<kind>/<key>/manifest.json``, written last: the commit marker. It names the upload and
carries the entry's ``meta.json`` (every file's sha256). The local cache downloads only a
committed upload and checks it as it checks its own entries (safe names, every digest)
before using it; an upload killed before its manifest is invisible. Two machines that
build one key both upload, each under its own upload id, and the manifest written first
stays (a publisher finding one does not write its own): readers always see one complete
entry. Credentials and endpoints come from the usual environment of the filesystem
(``AWS_*`` / ``AWS_ENDPOINT_URL`` for S3, ...). Downloads land in the local cache, so a
machine downloads an entry once.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from robustness_harness.errors import CacheError

MANIFEST = "manifest.json"
_FIX = "check the URL and the storage credentials in the environment (e.g. AWS_PROFILE)"


def is_url(location: str) -> bool:
    """Whether ``location`` names remote storage (``scheme://...``) rather than a directory."""
    return "://" in location


class RemoteStore:
    """Content-addressed, write-once entries under ``url`` (an fsspec URL)."""

    def __init__(self, url: str) -> None:
        import fsspec

        self.url = url.rstrip("/")
        try:
            self.fs, self.root = fsspec.core.url_to_fs(self.url, skip_instance_cache=True)
        except (ImportError, ValueError) as exc:
            raise CacheError(
                f"cannot open the remote cache {url}: {exc}",
                field="--harness-cache",
                hint="install the filesystem's fsspec package (s3fs, gcsfs, adlfs) or " + _FIX,
            ) from None

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"

    def _dir(self, kind: str, key: str) -> str:
        return f"{self.root}/{kind}/{key}"

    def manifest(self, kind: str, key: str) -> dict[str, Any] | None:
        """The committed manifest of ``kind/key``; None when there is none or it is not a
        JSON object (a damaged manifest is no commit)."""
        path = f"{self._dir(kind, key)}/{MANIFEST}"
        self.fs.invalidate_cache(self._dir(kind, key))
        try:
            manifest = json.loads(self.fs.cat_file(path))
        except (FileNotFoundError, ValueError):
            return None
        return manifest if isinstance(manifest, dict) else None

    def download(
        self, kind: str, key: str, upload: Any, files: Mapping[str, str], into: Path
    ) -> None:
        """Copy the ``files`` of committed upload ``upload`` into ``into``, file by file
        (never a whole file in memory); the caller checks names and digests.
        ``FileNotFoundError`` when the upload lacks one."""
        if not isinstance(upload, str) or not upload:
            raise FileNotFoundError(f"the manifest names no upload ({upload!r})")
        base = f"{self._dir(kind, key)}/{upload}"
        for name in files:
            target = into / name
            target.parent.mkdir(parents=True, exist_ok=True)
            self.fs.get_file(f"{base}/{name}", str(target))

    def publish(self, kind: str, key: str, entry_dir: Path, meta: dict[str, Any]) -> bool:
        """Upload a complete local entry and commit it; False when ``kind/key`` was already
        committed (by this or another machine: entries are write-once)."""
        if self.manifest(kind, key) is not None:
            return False
        upload = f"upload-{secrets.token_hex(8)}"
        base = f"{self._dir(kind, key)}/{upload}"
        for name in meta["files"]:
            self.fs.put_file(str(entry_dir / name), f"{base}/{name}")
        if self.manifest(kind, key) is not None:  # another machine committed meanwhile
            return False
        manifest = {"upload": upload, "kind": kind, "key": key, "meta": meta}
        self.fs.pipe_file(f"{self._dir(kind, key)}/{MANIFEST}", json.dumps(manifest).encode())
        return True
