"""Typed results of the core's operations: frozen dataclasses with real attributes, a
readable ``repr``, ``to_dict()`` and an HTML table for Jupyter.

The native module hands each result over as a dict of the core's JSON form; ``parse``
turns it into the class (dates to ``datetime``, labels to dicts, nested results to their
classes). Closed choices are ``Literal`` strings, as the core names them.
"""

from __future__ import annotations

import dataclasses
import datetime
import html
from typing import Any, Dict, Literal, Mapping, Optional, Tuple, Type, TypeVar

from ._records import Manifest

__all__ = [
    "AciEndpoint",
    "Built",
    "BuildCompression",
    "Compression",
    "Discovered",
    "Exported",
    "FetchOutcome",
    "Fetched",
    "FsckProblem",
    "FsckReport",
    "GcReport",
    "ImageOriginal",
    "Imported",
    "IndexBackend",
    "Inspection",
    "KeyAdded",
    "OriginalCompaction",
    "OriginalForm",
    "OriginalInfo",
    "Pushed",
    "RenderCacheReport",
    "RenderInfo",
    "ServedForm",
    "StoreStats",
    "Strategy",
    "TrustedKey",
    "VerifiedSignature",
]

#: How an archive was compressed (``Inspection.compression``).
Compression = Literal["none", "gzip", "bzip2", "xz", "zstd"]
#: How ``build`` compresses (``Built.compression``).
BuildCompression = Literal["none", "gzip", "zstd"]
#: How a fetched image was obtained (``Fetched.outcome``).
FetchOutcome = Literal["downloaded", "already_present", "not_modified", "cached"]
#: Which bytes a repository serves for an image (``Pushed.form``).
ServedForm = Literal["tar", "gzip", "original"]
#: How the store re-creates an image's original bytes (``OriginalInfo.form``).
OriginalForm = Literal["none", "gzip", "recompress", "gzip_export", "kept"]
#: Which database holds a store's index (``StoreStats.index``).
IndexBackend = Literal["sqlite", "postgres"]
#: How a rootfs is rendered (``auto`` picks one of the others).
Strategy = Literal["auto", "overlay", "reflink", "hardlink", "copy", "composefs"]

R = TypeVar("R", bound="_Result")


def _utc(seconds: Optional[int]) -> Optional[datetime.datetime]:
    if seconds is None:
        return None
    return datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)


def _scope(scope: Mapping[str, Any]) -> Optional[str]:
    """A trust scope: the name prefix, or ``None`` for every name."""
    prefix: Optional[str] = scope.get("prefix")
    return prefix


def _short(value: str) -> str:
    return value[:19] + "…" if value.startswith("sha512-") and len(value) > 20 else value


def _plain(value: Any) -> Any:
    if isinstance(value, _Result):
        return value.to_dict()
    if isinstance(value, Manifest):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _shown(value: Any) -> str:
    if isinstance(value, str):
        return repr(_short(value))
    if isinstance(value, tuple) and len(value) > 3:
        return f"({len(value)} items)"
    return repr(value)


def _cell(value: Any) -> str:
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S UTC")
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, tuple):
        return "<br>".join(html.escape(_short(str(_plain(v)))) for v in value)
    return html.escape(_short(str(value)))


@dataclasses.dataclass(frozen=True)
class _Result:
    """Base of the typed results."""

    @classmethod
    def parse(cls: Type[R], data: Mapping[str, Any]) -> R:
        """The result of the core's JSON form ``data`` (fields it does not know are left out)."""
        names = [k.__name__ for k in cls.__mro__ if k.__name__ in _CONVERTERS]
        convert = _CONVERTERS[names[0]] if names else {}
        values = {}
        for field in dataclasses.fields(cls):
            if not field.init or field.name not in data:
                continue
            value = data[field.name]
            how = convert.get(field.name)
            values[field.name] = how(value) if how is not None else value
        return cls(**values)

    def to_dict(self) -> Dict[str, Any]:
        """Every field as plain Python values (nested results as dicts, dates as ``datetime``)."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.init}

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{f.name}={_shown(getattr(self, f.name))}"
            for f in dataclasses.fields(self)
            if f.init and f.repr
        )
        return f"{type(self).__name__}({shown})"

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><th style='text-align:left'>{f.name}</th>"
            f"<td>{_cell(getattr(self, f.name))}</td></tr>"
            for f in dataclasses.fields(self)
            if f.init
        )
        return f"<table><caption>{type(self).__name__}</caption>{rows}</table>"


@dataclasses.dataclass(frozen=True, repr=False)
class Inspection(_Result):
    """What one validating pass over an archive found (``validate``)."""

    image_id: str
    manifest: Manifest
    compression: Compression
    compressed_size: int
    uncompressed_size: int
    entries: int
    regular_files: int
    content_bytes: int


@dataclasses.dataclass(frozen=True, repr=False)
class AciEndpoint(_Result):
    """One place an image can be fetched from: its ``aci`` URL and signature ``asc`` URL."""

    aci: str
    asc: str


@dataclasses.dataclass(frozen=True, repr=False)
class Discovered(_Result):
    """What meta discovery found (``discover``)."""

    name: str
    labels: Dict[str, str]
    aci_endpoints: Tuple[AciEndpoint, ...]
    pubkeys: Tuple[str, ...]
    tried: Tuple[str, ...]


@dataclasses.dataclass(frozen=True, repr=False)
class Built(_Result):
    """The archive ``build`` wrote: its ``path``, ``image_id``, ``size`` (compressed) and
    ``tar_size``, member counts and ``compression``."""

    path: str
    image_id: str
    size: int
    tar_size: int
    entries: int
    regular_files: int
    sparse_files: int
    hardlinks: int
    compression: BuildCompression


@dataclasses.dataclass(frozen=True, repr=False)
class Pushed(_Result):
    """The repository's answer to a ``push``."""

    image_id: str
    name: str
    already_present: bool
    received: int
    form: ServedForm
    signed: bool
    signature_checked: bool = False
    verified_by: Optional[str] = None


@dataclasses.dataclass(frozen=True, repr=False)
class Imported(_Result):
    """The outcome of ``import_file``: the image, whether the store had it, what it added."""

    image_id: str
    name: str
    already_present: bool
    new_bytes: int
    new_objects: int
    staged_bytes: int
    archive_size: int
    tar_size: int
    recipe_size: int
    entries: int


@dataclasses.dataclass(frozen=True, repr=False)
class VerifiedSignature(_Result):
    """A signature that verified, and by which trusted key (``scope``: the name prefix the
    key is trusted for, ``None`` for every name)."""

    fingerprint: str
    signing_key: str
    user_ids: Tuple[str, ...]
    scope: Optional[str]
    key_path: str
    hash_algorithm: str
    created_at: datetime.datetime
    data_len: int


@dataclasses.dataclass(frozen=True, repr=False)
class KeyAdded(_Result):
    """A key trusted during a fetch (``trust_keys=True``)."""

    url: str
    fingerprint: str
    prefix: str


@dataclasses.dataclass(frozen=True, repr=False)
class Fetched(_Result):
    """The outcome of ``fetch``: the image, where and how it came, its verified
    ``signature`` (``None`` when cached or not checked), keys trusted, dependencies."""

    image_id: str
    name: str
    url: Optional[str]
    outcome: FetchOutcome
    signature: Optional[VerifiedSignature]
    keys_added: Tuple[KeyAdded, ...]
    dependencies: Tuple["Fetched", ...]


@dataclasses.dataclass(frozen=True, repr=False)
class Exported(_Result):
    """The outcome of ``export``: bytes of the canonical tar and bytes written."""

    image_id: str
    tar_size: int
    written: int


@dataclasses.dataclass(frozen=True, repr=False)
class RenderInfo(_Result):
    """A rendered run (what ``render`` returns is a ``Rendered``, which adds ``release``):
    the rootfs at ``target``, the ``strategy`` used, whether it is ``read_only`` (and
    ``protected`` by a read-only mount), the ``layers`` applied, whether the flattened tree
    was ``cached``, and ``warnings``."""

    image_id: str
    target: str
    strategy: Strategy
    read_only: bool
    protected: bool
    layers: Tuple[str, ...]
    cached: bool
    warnings: Tuple[str, ...]


@dataclasses.dataclass(frozen=True, repr=False)
class GcReport(_Result):
    """What ``gc`` removed."""

    objects_removed: int = 0
    bytes_removed: int = 0
    recipes_removed: int = 0
    staging_removed: int = 0
    renders_removed: int = 0
    checkouts_removed: int = 0
    push_files_removed: int = 0
    dead_runs_removed: int = 0
    originals_compacted: int = 0
    originals_kept: int = 0
    original_bytes_freed: int = 0


@dataclasses.dataclass(frozen=True, repr=False)
class OriginalCompaction(_Result):
    """What ``compact_originals`` did: pending originals ``compacted`` into a compact form,
    those found to need their bytes ``kept`` whole, and the ``bytes_freed``."""

    compacted: int = 0
    kept: int = 0
    bytes_freed: int = 0


@dataclasses.dataclass(frozen=True, repr=False)
class OriginalInfo(_Result):
    """What the store keeps to give back an image's original archive (``original``): the
    ``form`` that re-creates it, its ``compression``, ``size`` and ``sha256``, the
    ``kept_bytes`` on disk for it, why it is kept whole (``reason``), and whether it is
    ``pending`` (kept whole until ``compact_originals`` or ``gc``)."""

    form: OriginalForm
    compression: Compression
    size: int
    sha256: str
    kept_bytes: int
    reason: Optional[str] = None
    pending: bool = False


@dataclasses.dataclass(frozen=True, repr=False)
class ImageOriginal(_Result):
    """One image's ``original`` record (``OriginalInfo``), as ``stats`` reports it for
    ``image_id``."""

    image_id: str
    original: OriginalInfo


@dataclasses.dataclass(frozen=True, repr=False)
class FsckProblem(_Result):
    """One problem ``fsck`` found: its ``kind`` (``corrupt_object``, ``missing_recipe``,
    ``broken_image``, ``index``, ``damaged_render_cache``), ``subject`` and ``message``."""

    kind: str
    subject: str
    message: str


@dataclasses.dataclass(frozen=True, repr=False)
class RenderCacheReport(_Result):
    """What ``fsck`` did with the render caches."""

    trees_checked: int = 0
    stacks_checked: int = 0
    composefs_checked: int = 0
    damaged: int = 0
    set_aside: int = 0
    in_use: int = 0
    checkouts_unlinked: int = 0
    rebuilt: int = 0
    damaged_removed: int = 0
    damaged_left: int = 0
    unverified: int = 0


@dataclasses.dataclass(frozen=True, repr=False)
class FsckReport(_Result):
    """What ``fsck`` found (and repaired); ``ok`` when no ``problems``."""

    objects_checked: int = 0
    images_checked: int = 0
    problems: Tuple[FsckProblem, ...] = ()
    images_dropped: Tuple[str, ...] = ()
    unreferenced_objects: int = 0
    stale_staging: int = 0
    orphan_push_files: int = 0
    push_files_removed: int = 0
    dead_runs: int = 0
    head_entries_fixed: int = 0
    render_caches: Optional[RenderCacheReport] = None

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems


@dataclasses.dataclass(frozen=True, repr=False)
class StoreStats(_Result):
    """Counts and sizes of a store (``stats``). Of the images with an original record
    (``original_records``): their archives' sizes (``original_compressed_bytes``), the bytes
    kept to give them back (``original_kept_bytes``) and how many of each ``OriginalForm``
    (``original_forms``), and each image's record (``original_images``)."""

    index: IndexBackend = "sqlite"
    images: int = 0
    logical_bytes: int = 0
    referenced_content_bytes: int = 0
    objects: int = 0
    object_bytes: int = 0
    disk_bytes: int = 0
    objects_disk_bytes: int = 0
    recipes_disk_bytes: int = 0
    index_disk_bytes: int = 0
    signed_images: int = 0
    signatures_disk_bytes: int = 0
    originals: int = 0
    original_bytes: int = 0
    originals_disk_bytes: int = 0
    original_records: int = 0
    original_compressed_bytes: int = 0
    original_kept_bytes: int = 0
    original_forms: Dict[str, int] = dataclasses.field(default_factory=dict)
    original_images: Tuple[ImageOriginal, ...] = ()
    dedup_ratio: float = 0.0


@dataclasses.dataclass(frozen=True, repr=False)
class TrustedKey(_Result):
    """A trusted key: fingerprint, user IDs, dates, and the name ``scope`` it may sign
    (a prefix, or ``None`` for every name)."""

    fingerprint: str
    key_id: str
    user_ids: Tuple[str, ...]
    algorithm: str
    created_at: datetime.datetime
    expires_at: Optional[datetime.datetime]
    subkeys: Tuple[str, ...]
    scope: Optional[str]
    path: str


def _tuple(item: Any = None) -> Any:
    if item is None:
        return tuple
    return lambda values: tuple(item(v) for v in values)


def _labels(value: Any) -> Dict[str, str]:
    return dict(value)


_CONVERTERS: Dict[str, Dict[str, Any]] = {
    "Discovered": {
        "labels": _labels,
        "aci_endpoints": _tuple(AciEndpoint.parse),
        "pubkeys": _tuple(),
        "tried": _tuple(),
    },
    "VerifiedSignature": {"user_ids": _tuple(), "scope": _scope, "created_at": _utc},
    "Fetched": {
        "signature": lambda s: None if s is None else VerifiedSignature.parse(s),
        "keys_added": _tuple(KeyAdded.parse),
        "dependencies": _tuple(lambda d: Fetched.parse(d)),
    },
    "RenderInfo": {"layers": _tuple(), "warnings": _tuple()},
    "ImageOriginal": {"original": OriginalInfo.parse},
    "StoreStats": {"original_forms": dict, "original_images": _tuple(ImageOriginal.parse)},
    "FsckReport": {
        "problems": _tuple(FsckProblem.parse),
        "images_dropped": _tuple(),
        "render_caches": lambda r: None if r is None else RenderCacheReport.parse(r),
    },
    "TrustedKey": {
        "user_ids": _tuple(),
        "subkeys": _tuple(),
        "scope": _scope,
        "created_at": _utc,
        "expires_at": _utc,
    },
}
