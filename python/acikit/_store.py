"""``Store``: the sync API (each call blocks with the GIL released; Ctrl-C cancels it)."""

from __future__ import annotations

import os
from types import TracebackType
from typing import IO, Any, Iterable, List, Mapping, Optional, Type, Union

from . import _native, _ops
from ._ops import ImageRef, Insecure, Labels, Resolve, StrPath
from ._progress import ProgressArg
from ._reader import ImageReader
from ._records import Image, ImageList, Manifest
from ._results import (
    Exported,
    Fetched,
    FsckReport,
    GcReport,
    Imported,
    OriginalCompaction,
    OriginalInfo,
    RenderInfo,
    StoreStats,
    TrustedKey,
)

__all__ = ["Store", "Rendered", "Trust"]


class Rendered(RenderInfo):
    """A rendered rootfs (``target``, ``strategy``, ``layers``...); a context
    manager that releases it on exit."""

    _store: "Store"
    _released: bool

    @classmethod
    def _of(cls, store: "Store", fields: Mapping[str, Any]) -> "Rendered":
        rendered = cls.parse(fields)
        object.__setattr__(rendered, "_store", store)
        object.__setattr__(rendered, "_released", False)
        return rendered

    @property
    def released(self) -> bool:
        """Whether it was released."""
        return self._released

    def release(self) -> None:
        """Releases the rootfs (removes the run); releasing again does nothing."""
        if not self._released:
            self._store.release(self.target)
            object.__setattr__(self, "_released", True)

    def __enter__(self) -> "Rendered":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.release()


class Trust:
    """The keys a store trusts for signatures (``store.trust``)."""

    def __init__(self, native: _native.Store) -> None:
        self._native = native

    def add(self, key: Union[bytes, StrPath], prefix: Optional[str] = None) -> TrustedKey:
        """Trusts an armored public key (bytes, armored text or a file) for names under
        ``prefix`` (every name when ``None``)."""
        return _ops.trust_add(self._native, key, prefix).run()

    def list(self) -> List[TrustedKey]:
        """The trusted keys."""
        return _ops.trust_list(self._native).run()

    def remove(self, fingerprint: str) -> List[TrustedKey]:
        """Stops trusting the key with this fingerprint; gives the keys removed."""
        return _ops.trust_remove(self._native, fingerprint).run()

    def __repr__(self) -> str:
        return f"<Trust of {self._native.path}>"


class Store:
    """An image store (a folder; its index in SQLite, or PostgreSQL with ``database``).

    ``path`` defaults to ``$ACIKIT_STORE``, else ``$XDG_DATA_HOME/acikit``, else
    ``~/.local/share/acikit``. A store is used by the process that opened it: after
    ``os.fork()`` the child opens its own (using the parent's raises ``RuntimeError``).
    """

    def __init__(
        self,
        path: Optional[StrPath] = None,
        *,
        database: Optional[str] = None,
        read_only: bool = False,
    ) -> None:
        where = None if path is None else os.fspath(path)
        self._native: _native.Store = _native.Store.open(where, database, read_only).wait()

    @classmethod
    def _of(cls, native: _native.Store) -> "Store":
        store = cls.__new__(cls)
        store._native = native
        return store

    @property
    def path(self) -> str:
        """The store's folder."""
        return self._native.path

    @property
    def auth_config_path(self) -> str:
        """The credentials file ``fetch`` reads when given no ``auth_config``: the
        store's ``config/auth.json`` (it need not exist)."""
        return self._native.auth_config_path

    @property
    def trust(self) -> Trust:
        """The trusted keys (``add``, ``list``, ``remove``)."""
        return Trust(self._native)

    def import_file(
        self,
        path: StrPath,
        *,
        origin: Optional[str] = None,
        original: bool = False,
        progress: ProgressArg = None,
    ) -> Imported:
        """Imports the image archive at ``path`` (any compression). With ``original=True``
        the store also records the archive's exact bytes, for ``export(...,
        compression="original")``: a compressed archive is kept whole, ``pending``, until
        ``compact_originals()`` (or ``gc()``) replaces it by its compact form."""
        return _ops.import_file(self._native, path, origin, original, progress).run()

    def fetch(
        self,
        name_or_url: str,
        *,
        labels: Labels = None,
        insecure: Insecure = None,
        port: Optional[int] = None,
        resolve: Resolve = None,
        ca_certs: Iterable[StrPath] = (),
        trust_keys: bool = False,
        dependencies: bool = True,
        auth_config: Optional[StrPath] = None,
        progress: ProgressArg = None,
    ) -> Fetched:
        """Fetches an image by name (meta discovery; ``name:version`` or ``labels``) or
        URL, verifies its signature against the trusted keys, imports it (and its
        dependencies). ``insecure`` allows ``"http"``, ``"tls"`` or ``"image"`` (no
        signature check); ``resolve`` maps host names to ``"ip:port"``; ``auth_config``
        is a per-host credentials file (default: ``auth_config_path`` if it exists)."""
        return _ops.fetch(
            self._native,
            name_or_url,
            labels,
            insecure,
            port,
            resolve,
            ca_certs,
            trust_keys,
            dependencies,
            auth_config,
            progress,
        ).run()

    def export(
        self,
        image: ImageRef,
        dest: Union[StrPath, IO[bytes]],
        *,
        compression: str = "none",
        progress: ProgressArg = None,
    ) -> Exported:
        """Writes the image archive (``"none"``, ``"gzip"``, ``"zstd"``, or ``"original"``:
        the exact bytes it was fetched or pushed as, or imported as with ``original=True``,
        which the store records for those; an image without a record raises ``NotFound``)
        to ``dest``, a path or a writable binary file object."""
        return _ops.export(self._native, image, dest, compression, progress).run()

    def open(self, image: ImageRef) -> ImageReader:
        """A streaming, read-only binary file object of the image's canonical tar."""
        return ImageReader(_ops.open_reader(self._native, image).run())

    def render(
        self,
        image: ImageRef,
        dest: StrPath,
        strategy: str = "auto",
        *,
        skip_unprivileged: bool = False,
        progress: ProgressArg = None,
    ) -> Rendered:
        """Renders the image's rootfs (with its dependencies) into ``dest``; use the
        result as a context manager, or ``release()`` it, to remove it."""
        fields = _ops.render(self._native, image, dest, strategy, skip_unprivileged, progress).run()
        return Rendered._of(self, fields)

    def release(self, target: StrPath) -> None:
        """Releases a rootfs rendered at ``target``."""
        _ops.release(self._native, target).run()

    def list(self) -> ImageList:
        """Every image in the store."""
        return _ops.list_images(self._native).run()

    def find(self, name: str, labels: Labels = None) -> ImageList:
        """The images named ``name`` (``name:version`` works) with these labels, the
        newest import first; empty when none."""
        return _ops.find(self._native, name, labels).run()

    def get(self, id_or_prefix: str) -> Image:
        """The image with this ID or unambiguous ID prefix (``NotFound``, ``AmbiguousId``)."""
        return _ops.get(self._native, id_or_prefix).run()

    def manifest(self, image: ImageRef) -> Manifest:
        """The manifest of a stored image."""
        return _ops.manifest(self._native, image).run()

    def remove(self, image: ImageRef) -> None:
        """Removes an image (an ID, a prefix, or a name that matches one image only)."""
        _ops.remove(self._native, image).run()

    def gc(self, *, progress: ProgressArg = None) -> GcReport:
        """Removes what no image uses any more."""
        return _ops.gc(self._native, progress).run()

    def compact_originals(self, *, progress: ProgressArg = None) -> OriginalCompaction:
        """Turns the originals kept whole by ``import_file(..., original=True)``
        (``pending``) into their compact forms, each proved by re-creating the archive
        before the kept bytes go; an original nothing re-creates stays kept. Long: it
        takes ``progress`` and stops on Ctrl-C, leaving every original as it was."""
        return _ops.compact_originals(self._native, progress).run()

    def original(self, image: ImageRef) -> Optional[OriginalInfo]:
        """What the store keeps to give back the image's original archive
        (``export(..., compression="original")``); ``None`` when nothing is recorded."""
        return _ops.original(self._native, image).run()

    def fsck(self, *, repair: bool = False, progress: ProgressArg = None) -> FsckReport:
        """Checks the store (and repairs it with ``repair=True``)."""
        return _ops.fsck(self._native, repair, progress).run()

    def stats(self) -> StoreStats:
        """Counts and sizes of the store."""
        return _ops.stats(self._native).run()

    def close(self) -> None:
        """Closes the index."""
        _ops.close(self._native).run()

    def __enter__(self) -> "Store":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.path!r})"
