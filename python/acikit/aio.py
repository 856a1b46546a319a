"""``acikit.aio``: the async API, as ``redis.asyncio`` or ``httpx.AsyncClient`` offer one.

Every name here is the awaitable twin of the sync name in ``acikit``, with the same
signature: ``AsyncStore`` (opened with ``await AsyncStore.connect(path)``), the module
functions ``validate``, ``image_id``, ``read_manifest``, ``discover``, ``build``, ``sign``
and ``push``, and ``serve`` (an ``AsyncServer``, stopped with ``await``). Cancelling the
awaiting task cancels the Rust work and waits for it to clean up (it leaves nothing
half-written), then raises ``CancelledError``.

    import acikit.aio as acikit_aio

    built = await acikit_aio.build("layout", "hello.aci")
    async with await acikit_aio.AsyncStore.connect("store") as store:
        await store.import_file(built.path)
"""

from __future__ import annotations

from typing import Iterable, Optional, Union

from . import _functions
from ._async_store import AsyncRendered, AsyncStore, AsyncTrust
from ._ops import Insecure, Labels, Resolve, StrPath
from ._progress import ProgressArg
from ._reader import AsyncImageReader
from ._records import Manifest
from ._results import Built, Discovered, Inspection, Pushed
from ._server import AsyncServer
from ._server import serve_async as serve

__all__ = [
    "AsyncImageReader",
    "AsyncRendered",
    "AsyncServer",
    "AsyncStore",
    "AsyncTrust",
    "build",
    "discover",
    "image_id",
    "push",
    "read_manifest",
    "serve",
    "sign",
    "validate",
]


async def validate(p: StrPath, *, progress: ProgressArg = None) -> Inspection:
    """Awaitable ``acikit.validate``: the archive at ``p`` checked in one streaming pass."""
    return await _functions.validate_op(p, progress).run_async()


async def image_id(p: StrPath, *, progress: ProgressArg = None) -> str:
    """Awaitable ``acikit.image_id``: the image ID of the valid archive at ``p``."""
    return await _functions.image_id_op(p, progress).run_async()


async def read_manifest(p: StrPath) -> Manifest:
    """Awaitable ``acikit.read_manifest``: the manifest of the valid archive at ``p``."""
    return await _functions.read_manifest_op(p).run_async()


async def discover(
    name: str,
    labels: Labels = None,
    *,
    insecure: Insecure = None,
    port: Optional[int] = None,
    resolve: Resolve = None,
    ca_certs: Iterable[StrPath] = (),
    pubkeys: bool = True,
    auth_config: Optional[StrPath] = None,
    progress: ProgressArg = None,
) -> Discovered:
    """Awaitable ``acikit.discover``: meta discovery of ``name`` with ``labels``."""
    return await _functions.discover_op(
        name, labels, insecure, port, resolve, ca_certs, pubkeys, auth_config, progress
    ).run_async()


async def build(
    layout_dir: StrPath,
    out: StrPath,
    *,
    compression: str = "gzip",
    mtime: Optional[int] = None,
    progress: ProgressArg = None,
) -> Built:
    """Awaitable ``acikit.build``: the layout ``layout_dir`` built into the archive ``out``."""
    return await _functions.build_op(layout_dir, out, compression, mtime, progress).run_async()


async def sign(
    p: StrPath,
    key: Union[bytes, StrPath],
    *,
    passphrase: Optional[str] = None,
    out: Optional[StrPath] = None,
    progress: ProgressArg = None,
) -> bytes:
    """Awaitable ``acikit.sign``: a detached, armored signature of the file ``p``."""
    return await _functions.sign_op(p, key, passphrase, out, progress).run_async()


async def push(
    url: str,
    p: StrPath,
    *,
    token: str,
    signature: Union[bytes, StrPath, None] = None,
    insecure: Insecure = None,
    ca_certs: Iterable[StrPath] = (),
    auth_config: Optional[StrPath] = None,
    progress: ProgressArg = None,
) -> Pushed:
    """Awaitable ``acikit.push``: the archive ``p`` uploaded to the repository at ``url``."""
    return await _functions.push_op(
        url, p, token, signature, insecure, ca_certs, auth_config, progress
    ).run_async()
