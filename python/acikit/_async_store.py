"""``AsyncStore``: the async twin of ``Store`` (same methods, awaitable; cancelling the
awaiting task cancels the Rust work, which leaves nothing behind)."""

from __future__ import annotations

import os
from types import TracebackType
from typing import IO, Any, Iterable, List, Mapping, Optional, Type, Union

from . import _native, _ops
from ._calls import await_call
from ._ops import ImageRef, Insecure, Labels, Resolve, StrPath
from ._progress import ProgressArg
from ._reader import AsyncImageReader
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

__all__ = ["AsyncStore", "AsyncRendered", "AsyncTrust"]


class AsyncRendered(RenderInfo):
    """A rendered rootfs (``target``, ``strategy``, ``layers``...); an async context
    manager that releases it on exit."""

    _store: "AsyncStore"
    _released: bool

    @classmethod
    def _of(cls, store: "AsyncStore", fields: Mapping[str, Any]) -> "AsyncRendered":
        rendered = cls.parse(fields)
        object.__setattr__(rendered, "_store", store)
        object.__setattr__(rendered, "_released", False)
        return rendered

    @property
    def released(self) -> bool:
        """Whether it was released."""
        return self._released

    async def release(self) -> None:
        """Releases the rootfs (removes the run); releasing again does nothing."""
        if not self._released:
            await self._store.release(self.target)
            object.__setattr__(self, "_released", True)

    async def __aenter__(self) -> "AsyncRendered":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.release()


class AsyncTrust:
    """The keys a store trusts for signatures (``store.trust``), async."""

    def __init__(self, native: _native.Store) -> None:
        self._native = native

    async def add(self, key: Union[bytes, StrPath], prefix: Optional[str] = None) -> TrustedKey:
        """Trusts an armored public key for names under ``prefix`` (every name: ``None``)."""
        return await _ops.trust_add(self._native, key, prefix).run_async()

    async def list(self) -> List[TrustedKey]:
        """The trusted keys."""
        return await _ops.trust_list(self._native).run_async()

    async def remove(self, fingerprint: str) -> List[TrustedKey]:
        """Stops trusting the key with this fingerprint; gives the keys removed."""
        return await _ops.trust_remove(self._native, fingerprint).run_async()

    def __repr__(self) -> str:
        return f"<AsyncTrust of {self._native.path}>"


class AsyncStore:
    """The async twin of ``Store``: open it with ``await AsyncStore.connect(path)``."""

    def __init__(self, native: _native.Store) -> None:
        self._native = native

    @classmethod
    async def connect(
        cls,
        path: Optional[StrPath] = None,
        *,
        database: Optional[str] = None,
        read_only: bool = False,
    ) -> "AsyncStore":
        """Opens (creating if needed) the store at ``path`` (default: as ``Store``)."""
        where = None if path is None else os.fspath(path)
        native: _native.Store = await await_call(_native.Store.open(where, database, read_only))
        return cls(native)

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
    def trust(self) -> AsyncTrust:
        """The trusted keys (``add``, ``list``, ``remove``)."""
        return AsyncTrust(self._native)

    async def import_file(
        self,
        path: StrPath,
        *,
        origin: Optional[str] = None,
        original: bool = False,
        progress: ProgressArg = None,
    ) -> Imported:
        """Imports the image archive at ``path`` (any compression); ``original=True``
        keeps a compressed archive's exact bytes (see ``Store.import_file``)."""
        return await _ops.import_file(self._native, path, origin, original, progress).run_async()

    async def fetch(
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
        """Fetches an image by name or URL (see ``Store.fetch``)."""
        return await _ops.fetch(
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
        ).run_async()

    async def export(
        self,
        image: ImageRef,
        dest: Union[StrPath, IO[bytes]],
        *,
        compression: str = "none",
        progress: ProgressArg = None,
    ) -> Exported:
        """Writes the image archive to ``dest``, a path or a writable binary file object."""
        return await _ops.export(self._native, image, dest, compression, progress).run_async()

    async def open(self, image: ImageRef) -> AsyncImageReader:
        """A streaming reader of the image's canonical tar (``await reader.read(n)``)."""
        return AsyncImageReader(await _ops.open_reader(self._native, image).run_async())

    async def render(
        self,
        image: ImageRef,
        dest: StrPath,
        strategy: str = "auto",
        *,
        skip_unprivileged: bool = False,
        progress: ProgressArg = None,
    ) -> AsyncRendered:
        """Renders the image's rootfs into ``dest`` (``async with`` releases it)."""
        fields = await _ops.render(
            self._native, image, dest, strategy, skip_unprivileged, progress
        ).run_async()
        return AsyncRendered._of(self, fields)

    async def release(self, target: StrPath) -> None:
        """Releases a rootfs rendered at ``target``."""
        await _ops.release(self._native, target).run_async()

    async def list(self) -> ImageList:
        """Every image in the store."""
        return await _ops.list_images(self._native).run_async()

    async def find(self, name: str, labels: Labels = None) -> ImageList:
        """The images named ``name`` with these labels, newest first; empty when none."""
        return await _ops.find(self._native, name, labels).run_async()

    async def get(self, id_or_prefix: str) -> Image:
        """The image with this ID or unambiguous ID prefix."""
        return await _ops.get(self._native, id_or_prefix).run_async()

    async def manifest(self, image: ImageRef) -> Manifest:
        """The manifest of a stored image."""
        return await _ops.manifest(self._native, image).run_async()

    async def remove(self, image: ImageRef) -> None:
        """Removes an image (an ID, a prefix, or a name that matches one image only)."""
        await _ops.remove(self._native, image).run_async()

    async def gc(self, *, progress: ProgressArg = None) -> GcReport:
        """Removes what no image uses any more."""
        return await _ops.gc(self._native, progress).run_async()

    async def compact_originals(self, *, progress: ProgressArg = None) -> OriginalCompaction:
        """Turns the pending originals into their compact forms (see
        ``Store.compact_originals``)."""
        return await _ops.compact_originals(self._native, progress).run_async()

    async def original(self, image: ImageRef) -> Optional[OriginalInfo]:
        """What the store keeps to give back the image's original archive (``None``:
        nothing recorded)."""
        return await _ops.original(self._native, image).run_async()

    async def fsck(self, *, repair: bool = False, progress: ProgressArg = None) -> FsckReport:
        """Checks the store (and repairs it with ``repair=True``)."""
        return await _ops.fsck(self._native, repair, progress).run_async()

    async def stats(self) -> StoreStats:
        """Counts and sizes of the store."""
        return await _ops.stats(self._native).run_async()

    async def close(self) -> None:
        """Closes the index."""
        await _ops.close(self._native).run_async()

    async def __aenter__(self) -> "AsyncStore":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"AsyncStore({self.path!r})"
