"""acikit: App Container Images (appc ACIs) from Python.

``Store`` over one Rust core: import, fetch, export, stream, render, list and check
images; ``validate``, ``image_id``, ``read_manifest``, ``discover``, ``build``, ``sign``,
``push`` and ``serve`` at module level. Errors are ``AcikitError`` subclasses with the
core's stable ``code``; long calls take ``progress=`` (a callable or ``True`` for a tqdm
bar) and stop on Ctrl-C.

Sync and async: ``acikit`` is the sync API (each call blocks with the GIL released and
also works inside a running event loop, as in Jupyter). ``acikit.aio`` is the async API,
as ``redis.asyncio`` is redis's: the same names with the same signatures, awaitable
(``AsyncStore``, ``await acikit.aio.validate(...)``, ``build``, ``sign``, ``push``,
``serve``...);
cancelling the awaiting task cancels the Rust work. ``acikit.AsyncStore`` is the same
class as ``acikit.aio.AsyncStore``.

Results are typed: ``Image``, ``ImageList`` and ``Manifest`` for records, and frozen
dataclasses for the rest (``Imported``, ``Fetched``, ``Exported``, ``Built``, ``Pushed``,
``Inspection``, ``Discovered``, ``GcReport``, ``FsckReport``, ``StoreStats``,
``TrustedKey``...), each with ``to_dict()`` and an HTML table in Jupyter.

Credentials: ``fetch``, ``discover`` and ``push`` take ``auth_config=``, the path of the
per-host credentials file the CLI reads with ``--auth-config``. Left out, a store's
``fetch`` reads the store's own ``config/auth.json`` (``Store.auth_config_path``) if it
exists; the module-level ``discover`` and ``push`` use none.
"""

from __future__ import annotations

from . import _native, aio
from ._async_store import AsyncRendered, AsyncStore, AsyncTrust
from ._errors import (
    AcikitError,
    AmbiguousId,
    Cancelled,
    ConflictError,
    DiscoveryError,
    InputError,
    IntegrityError,
    InternalError,
    InvalidImage,
    NetworkError,
    NotFound,
    PrivilegeError,
    SignatureError,
    StorageError,
    UnsupportedError,
)
from ._functions import build, discover, image_id, push, read_manifest, sign, validate
from ._progress import Progress
from ._reader import AsyncImageReader, ImageReader
from ._records import (
    App,
    Dependency,
    EventHandler,
    Image,
    ImageList,
    Isolator,
    Manifest,
    MountPoint,
    Port,
)
from ._results import (
    AciEndpoint,
    BuildCompression,
    Built,
    Compression,
    Discovered,
    Exported,
    Fetched,
    FetchOutcome,
    FsckProblem,
    FsckReport,
    GcReport,
    ImageOriginal,
    Imported,
    IndexBackend,
    Inspection,
    KeyAdded,
    OriginalCompaction,
    OriginalForm,
    OriginalInfo,
    Pushed,
    RenderCacheReport,
    RenderInfo,
    ServedForm,
    StoreStats,
    Strategy,
    TrustedKey,
    VerifiedSignature,
)
from ._server import AsyncServer, Server, serve
from ._store import Rendered, Store, Trust

__version__: str = _native.__version__

#: Phase names of progress events, export and build compressions, render strategies.
PHASES = tuple(_native.PHASES)
EXPORT_COMPRESSIONS = tuple(_native.EXPORT_COMPRESSIONS)
BUILD_COMPRESSIONS = tuple(_native.BUILD_COMPRESSIONS)
STRATEGIES = tuple(_native.STRATEGIES)

__all__ = [
    "AciEndpoint",
    "AcikitError",
    "AmbiguousId",
    "App",
    "AsyncImageReader",
    "AsyncRendered",
    "AsyncServer",
    "AsyncStore",
    "AsyncTrust",
    "BUILD_COMPRESSIONS",
    "BuildCompression",
    "Built",
    "Cancelled",
    "Compression",
    "ConflictError",
    "Dependency",
    "Discovered",
    "DiscoveryError",
    "EXPORT_COMPRESSIONS",
    "EventHandler",
    "Exported",
    "FetchOutcome",
    "Fetched",
    "FsckProblem",
    "FsckReport",
    "GcReport",
    "Image",
    "ImageList",
    "ImageOriginal",
    "ImageReader",
    "Imported",
    "IndexBackend",
    "InputError",
    "Inspection",
    "IntegrityError",
    "InternalError",
    "InvalidImage",
    "Isolator",
    "KeyAdded",
    "Manifest",
    "MountPoint",
    "NetworkError",
    "NotFound",
    "OriginalCompaction",
    "OriginalForm",
    "OriginalInfo",
    "PHASES",
    "Port",
    "PrivilegeError",
    "Progress",
    "Pushed",
    "RenderCacheReport",
    "RenderInfo",
    "Rendered",
    "STRATEGIES",
    "ServedForm",
    "Server",
    "SignatureError",
    "StorageError",
    "Store",
    "StoreStats",
    "Strategy",
    "Trust",
    "TrustedKey",
    "UnsupportedError",
    "VerifiedSignature",
    "__version__",
    "aio",
    "build",
    "discover",
    "image_id",
    "push",
    "read_manifest",
    "serve",
    "sign",
    "validate",
]
