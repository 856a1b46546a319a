"""acikit: App Container Images (appc ACIs) from Python.

``Store`` (sync) and ``AsyncStore`` (async) over one Rust core: import, fetch, export,
stream, render, list and check images; ``validate``, ``image_id``, ``read_manifest``,
``discover``, ``build``, ``sign``, ``push`` and ``serve`` at module level. Errors are
``AcikitError`` subclasses with the core's stable ``code``; long calls take
``progress=`` (a callable or ``True`` for a tqdm bar) and stop on Ctrl-C or task
cancellation.
"""

from __future__ import annotations

from . import _native
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
from ._records import Image, ImageList, Manifest, Report
from ._server import Server, serve
from ._store import Rendered, Store, Trust

__version__: str = _native.__version__

#: Phase names of progress events, export and build compressions, render strategies.
PHASES = tuple(_native.PHASES)
EXPORT_COMPRESSIONS = tuple(_native.EXPORT_COMPRESSIONS)
BUILD_COMPRESSIONS = tuple(_native.BUILD_COMPRESSIONS)
STRATEGIES = tuple(_native.STRATEGIES)

__all__ = [
    "AcikitError",
    "AmbiguousId",
    "AsyncImageReader",
    "AsyncRendered",
    "AsyncStore",
    "AsyncTrust",
    "BUILD_COMPRESSIONS",
    "Cancelled",
    "ConflictError",
    "DiscoveryError",
    "EXPORT_COMPRESSIONS",
    "Image",
    "ImageList",
    "ImageReader",
    "InputError",
    "IntegrityError",
    "InternalError",
    "InvalidImage",
    "Manifest",
    "NetworkError",
    "NotFound",
    "PHASES",
    "PrivilegeError",
    "Progress",
    "Rendered",
    "Report",
    "STRATEGIES",
    "Server",
    "SignatureError",
    "StorageError",
    "Store",
    "Trust",
    "UnsupportedError",
    "__version__",
    "build",
    "discover",
    "image_id",
    "push",
    "read_manifest",
    "serve",
    "sign",
    "validate",
]
