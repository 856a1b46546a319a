"""Module-level calls: validate, image_id, read_manifest, discover, build, sign, push."""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Union

from . import _native
from ._calls import Op
from ._ops import Insecure, Labels, Resolve, StrPath, insecure_text, key_bytes, label_pairs, path
from ._progress import ProgressArg
from ._records import Manifest, Report

__all__ = ["validate", "image_id", "read_manifest", "discover", "build", "sign", "push"]


def _inspection(fields: Dict[str, Any]) -> Report:
    fields = dict(fields)
    fields["manifest"] = Manifest(fields["manifest"], fields["image_id"])
    return Report("Inspection", fields)


def validate(p: StrPath, *, progress: ProgressArg = None) -> Report:
    """Validates the image archive at ``p`` in one streaming pass: its ``image_id``,
    ``manifest`` (a ``Manifest``), ``compression`` and sizes; an invalid archive raises
    ``InvalidImage`` (with the ``entry`` and, for a manifest, the ``problems``)."""
    return Op(lambda cb: _native.inspect(path(p), cb), _inspection, progress).run()


def image_id(p: StrPath, *, progress: ProgressArg = None) -> str:
    """The image ID (``sha512-...``) of the valid archive at ``p``."""
    inspection = validate(p, progress=progress)
    result: str = inspection.image_id
    return result


def read_manifest(p: StrPath) -> Manifest:
    """The manifest of the valid archive at ``p``."""
    manifest: Manifest = validate(p).manifest
    return manifest


def discover(
    name: str,
    labels: Labels = None,
    *,
    insecure: Insecure = None,
    port: Optional[int] = None,
    resolve: Resolve = None,
    ca_certs: Iterable[StrPath] = (),
    pubkeys: bool = True,
) -> Report:
    """Meta discovery of ``name`` (``name:version`` works) with ``labels``: the image
    URLs (``aci_endpoints``) and key URLs (``pubkeys``)."""
    pairs = label_pairs(labels)
    resolved = list((resolve or {}).items())
    certs = [path(c) for c in ca_certs]
    return Op(
        lambda cb: _native.discover(
            name, pairs, insecure_text(insecure), port, resolved, certs, pubkeys
        ),
        lambda fields: Report("Discovered", fields),
    ).run()


def build(
    layout_dir: StrPath,
    out: StrPath,
    *,
    compression: str = "gzip",
    mtime: Optional[int] = None,
    progress: ProgressArg = None,
) -> Report:
    """Builds the image layout ``layout_dir`` (``manifest`` + ``rootfs/``) into the
    reproducible archive ``out``; ``mtime`` clamps file times (seconds since the epoch)."""
    return Op(
        lambda cb: _native.build(path(layout_dir), path(out), compression, mtime, cb),
        lambda fields: Report("Built", fields),
        progress,
    ).run()


def sign(
    p: StrPath,
    key: Union[bytes, StrPath],
    *,
    passphrase: Optional[str] = None,
    out: Optional[StrPath] = None,
    progress: ProgressArg = None,
) -> bytes:
    """A detached, armored OpenPGP signature of the file ``p`` by the armored secret
    ``key`` (bytes, armored text or a file); also written to ``out`` if given."""
    secret = key_bytes(key)
    signature: bytes = Op(
        lambda cb: _native.sign(path(p), secret, passphrase, cb), lambda s: s, progress
    ).run()
    if out is not None:
        with open(path(out), "wb") as file:
            file.write(signature)
    return signature


def push(
    url: str,
    p: StrPath,
    *,
    token: str,
    signature: Union[bytes, StrPath, None] = None,
    insecure: Insecure = None,
    ca_certs: Iterable[StrPath] = (),
    progress: ProgressArg = None,
) -> Report:
    """Uploads the archive ``p`` (with its armored ``signature``: bytes or a file) to the
    repository at ``url`` (an ``acikit serve``), with the bearer ``token``."""
    sig = None if signature is None else key_bytes(signature)
    certs = [path(c) for c in ca_certs]
    return Op(
        lambda cb: _native.push(url, path(p), token, sig, insecure_text(insecure), certs, cb),
        lambda fields: Report("Pushed", fields),
        progress,
    ).run()
