"""The operations shared by ``Store`` and ``AsyncStore``: arguments to the native call,
native results to Python objects. Each returns an ``Op`` the store runs or awaits."""

from __future__ import annotations

import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple, Union

from . import _native
from ._calls import Op
from ._progress import ProgressArg
from ._records import Image, ImageList, Manifest
from ._results import (
    Exported,
    Fetched,
    FsckReport,
    GcReport,
    Imported,
    OriginalCompaction,
    OriginalInfo,
    StoreStats,
    TrustedKey,
)

StrPath = Union[str, "os.PathLike[str]"]
ImageRef = Union[str, Image]
Labels = Optional[Mapping[str, str]]
Insecure = Union[str, Iterable[str], None]
Resolve = Optional[Mapping[str, str]]


def path(p: StrPath) -> str:
    """A path argument as a string."""
    return os.fspath(p)


def image_ref(image: ImageRef) -> str:
    """An image argument: an ``Image`` by its ID, else the text (ID, prefix or name)."""
    if isinstance(image, Image):
        return image.id
    if not isinstance(image, str):
        raise TypeError(f"an image is an Image or a str, not {type(image).__name__}")
    return image


def label_pairs(labels: Labels) -> List[Tuple[str, str]]:
    """Labels as the native (name, value) pairs."""
    return list((labels or {}).items())


def insecure_text(insecure: Insecure) -> str:
    """The core's comma-separated list of insecure steps (``"none"`` by default)."""
    if insecure is None:
        return "none"
    if isinstance(insecure, str):
        return insecure
    return ",".join(insecure) or "none"


def key_bytes(key: Union[bytes, StrPath]) -> bytes:
    """An armored key: given as bytes, as armored text, or as the path of a file."""
    if isinstance(key, bytes):
        return key
    if isinstance(key, str) and key.lstrip().startswith("-----BEGIN"):
        return key.encode()
    with open(path(key), "rb") as file:
        return file.read()


def images(records: List[Dict[str, Any]]) -> ImageList:
    """Native records to an ``ImageList``."""
    return ImageList(Image(r) for r in records)


def import_file(
    store: _native.Store,
    p: StrPath,
    origin: Optional[str],
    original: bool,
    progress: ProgressArg,
) -> Op[Imported]:
    return Op(lambda cb: store.import_file(path(p), origin, original, cb), Imported.parse, progress)


def fetch(
    store: _native.Store,
    name_or_url: str,
    labels: Labels,
    insecure: Insecure,
    port: Optional[int],
    resolve: Resolve,
    ca_certs: Iterable[StrPath],
    trust_keys: bool,
    dependencies: bool,
    auth_config: Optional[StrPath],
    progress: ProgressArg,
) -> Op[Fetched]:
    auth = None if auth_config is None else path(auth_config)
    return Op(
        lambda cb: store.fetch(
            name_or_url,
            label_pairs(labels),
            insecure_text(insecure),
            port,
            list((resolve or {}).items()),
            [path(c) for c in ca_certs],
            trust_keys,
            dependencies,
            auth,
            cb,
        ),
        Fetched.parse,
        progress,
    )


def export(
    store: _native.Store,
    image: ImageRef,
    dest: Any,
    compression: str,
    progress: ProgressArg,
) -> Op[Exported]:
    ref = image_ref(image)
    if hasattr(dest, "write"):
        return Op(
            lambda cb: store.export_to_file(ref, dest, compression, cb),
            Exported.parse,
            progress,
        )
    return Op(lambda cb: store.export(ref, path(dest), compression, cb), Exported.parse, progress)


def open_reader(store: _native.Store, image: ImageRef) -> Op[_native.ImageReader]:
    ref = image_ref(image)
    return Op(lambda cb: store.open_reader(ref), lambda r: r)


def render(
    store: _native.Store,
    image: ImageRef,
    dest: StrPath,
    strategy: str,
    skip_unprivileged: bool,
    progress: ProgressArg,
) -> Op[Dict[str, Any]]:
    ref = image_ref(image)
    return Op(
        lambda cb: store.render(ref, path(dest), strategy, skip_unprivileged, cb),
        lambda fields: fields,
        progress,
    )


def release(store: _native.Store, target: StrPath) -> Op[None]:
    return Op(lambda cb: store.release(path(target)), lambda _: None)


def list_images(store: _native.Store) -> Op[ImageList]:
    return Op(lambda cb: store.list(), images)


def find(store: _native.Store, name: str, labels: Labels) -> Op[ImageList]:
    return Op(lambda cb: store.find(name, label_pairs(labels)), images)


def get(store: _native.Store, id_or_prefix: str) -> Op[Image]:
    return Op(lambda cb: store.get(id_or_prefix), Image)


def manifest(store: _native.Store, image: ImageRef) -> Op[Manifest]:
    ref = image_ref(image)
    image_id = image.id if isinstance(image, Image) else None
    return Op(lambda cb: store.manifest(ref), lambda raw: Manifest(raw, image_id))


def remove(store: _native.Store, image: ImageRef) -> Op[None]:
    ref = image_ref(image)
    return Op(lambda cb: store.remove(ref), lambda _: None)


def gc(store: _native.Store, progress: ProgressArg) -> Op[GcReport]:
    return Op(lambda cb: store.gc(cb), GcReport.parse, progress)


def compact_originals(store: _native.Store, progress: ProgressArg) -> Op[OriginalCompaction]:
    return Op(lambda cb: store.compact_originals(cb), OriginalCompaction.parse, progress)


def original(store: _native.Store, image: ImageRef) -> Op[Optional[OriginalInfo]]:
    ref = image_ref(image)
    return Op(
        lambda cb: store.original(ref),
        lambda info: None if info is None else OriginalInfo.parse(info),
    )


def fsck(store: _native.Store, repair: bool, progress: ProgressArg) -> Op[FsckReport]:
    return Op(lambda cb: store.fsck(repair, cb), FsckReport.parse, progress)


def stats(store: _native.Store) -> Op[StoreStats]:
    return Op(lambda cb: store.stats(), StoreStats.parse)


def trust_add(
    store: _native.Store, key: Union[bytes, StrPath], prefix: Optional[str]
) -> Op[TrustedKey]:
    data = key_bytes(key)
    return Op(lambda cb: store.trust_add(data, prefix), TrustedKey.parse)


def trust_list(store: _native.Store) -> Op[List[TrustedKey]]:
    return Op(lambda cb: store.trust_list(), lambda keys: [TrustedKey.parse(k) for k in keys])


def trust_remove(store: _native.Store, fingerprint: str) -> Op[List[TrustedKey]]:
    return Op(
        lambda cb: store.trust_remove(fingerprint),
        lambda keys: [TrustedKey.parse(k) for k in keys],
    )


def close(store: _native.Store) -> Op[None]:
    return Op(lambda cb: store.close(), lambda _: None)
