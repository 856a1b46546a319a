"""Module-level calls: validate, image_id, read_manifest, discover, build, sign, push.

Each is made as an ``Op`` here; the sync functions run it (blocking, Ctrl-C cancels it),
``acikit.aio`` awaits the same ``Op`` (task cancellation cancels it).
"""

from __future__ import annotations

from typing import Any, Dict, Iterable, Optional, Union

from . import _native
from ._calls import Op
from ._ops import Insecure, Labels, Resolve, StrPath, insecure_text, key_bytes, label_pairs, path
from ._progress import ProgressArg
from ._records import Manifest
from ._results import Built, Discovered, Inspection, Pushed

__all__ = ["validate", "image_id", "read_manifest", "discover", "build", "sign", "push"]


def _inspection(fields: Dict[str, Any]) -> Inspection:
    fields = dict(fields)
    fields["manifest"] = Manifest(fields["manifest"], fields["image_id"])
    return Inspection.parse(fields)


def validate_op(p: StrPath, progress: ProgressArg = None) -> Op[Inspection]:
    """The ``Op`` of ``validate``."""
    where = path(p)
    return Op(lambda cb: _native.inspect(where, cb), _inspection, progress)


def image_id_op(p: StrPath, progress: ProgressArg = None) -> Op[str]:
    """The ``Op`` of ``image_id``."""
    where = path(p)
    return Op(lambda cb: _native.inspect(where, cb), lambda f: str(f["image_id"]), progress)


def read_manifest_op(p: StrPath) -> Op[Manifest]:
    """The ``Op`` of ``read_manifest``."""
    where = path(p)
    return Op(lambda cb: _native.inspect(where, cb), lambda f: _inspection(f).manifest)


def discover_op(
    name: str,
    labels: Labels,
    insecure: Insecure,
    port: Optional[int],
    resolve: Resolve,
    ca_certs: Iterable[StrPath],
    pubkeys: bool,
    auth_config: Optional[StrPath],
    progress: ProgressArg,
) -> Op[Discovered]:
    """The ``Op`` of ``discover``."""
    pairs = label_pairs(labels)
    resolved = list((resolve or {}).items())
    certs = [path(c) for c in ca_certs]
    auth = None if auth_config is None else path(auth_config)
    return Op(
        lambda cb: _native.discover(
            name, pairs, insecure_text(insecure), port, resolved, certs, pubkeys, auth, cb
        ),
        Discovered.parse,
        progress,
    )


def build_op(
    layout_dir: StrPath,
    out: StrPath,
    compression: str,
    mtime: Optional[int],
    progress: ProgressArg,
) -> Op[Built]:
    """The ``Op`` of ``build``."""
    layout, target = path(layout_dir), path(out)
    return Op(
        lambda cb: _native.build(layout, target, compression, mtime, cb), Built.parse, progress
    )


def sign_op(
    p: StrPath,
    key: Union[bytes, StrPath],
    passphrase: Optional[str],
    out: Optional[StrPath],
    progress: ProgressArg,
) -> Op[bytes]:
    """The ``Op`` of ``sign`` (writing ``out`` once the signature is made)."""
    secret = key_bytes(key)
    where = path(p)
    out_path = None if out is None else path(out)

    def written(signature: bytes) -> bytes:
        if out_path is not None:
            with open(out_path, "wb") as file:
                file.write(signature)
        return signature

    return Op(lambda cb: _native.sign(where, secret, passphrase, cb), written, progress)


def push_op(
    url: str,
    p: StrPath,
    token: str,
    signature: Union[bytes, StrPath, None],
    insecure: Insecure,
    ca_certs: Iterable[StrPath],
    auth_config: Optional[StrPath],
    progress: ProgressArg,
) -> Op[Pushed]:
    """The ``Op`` of ``push``."""
    sig = None if signature is None else key_bytes(signature)
    certs = [path(c) for c in ca_certs]
    where = path(p)
    auth = None if auth_config is None else path(auth_config)
    return Op(
        lambda cb: _native.push(url, where, token, sig, insecure_text(insecure), certs, auth, cb),
        Pushed.parse,
        progress,
    )


def validate(p: StrPath, *, progress: ProgressArg = None) -> Inspection:
    """Validates the image archive at ``p`` in one streaming pass: its ``image_id``,
    ``manifest`` (a ``Manifest``), ``compression`` and sizes; an invalid archive raises
    ``InvalidImage`` (with the ``entry`` and, for a manifest, the ``problems``)."""
    return validate_op(p, progress).run()


def image_id(p: StrPath, *, progress: ProgressArg = None) -> str:
    """The image ID (``sha512-...``) of the valid archive at ``p``."""
    return image_id_op(p, progress).run()


def read_manifest(p: StrPath) -> Manifest:
    """The manifest of the valid archive at ``p``."""
    return read_manifest_op(p).run()


def discover(
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
    """Meta discovery of ``name`` (``name:version`` works) with ``labels``: the image
    URLs (``aci_endpoints``) and key URLs (``pubkeys``). ``auth_config`` is a per-host
    credentials file (the JSON of the CLI's ``--auth-config``); none by default.
    ``progress`` gets ``discover`` events: levels of the name walked of its levels."""
    return discover_op(
        name, labels, insecure, port, resolve, ca_certs, pubkeys, auth_config, progress
    ).run()


def build(
    layout_dir: StrPath,
    out: StrPath,
    *,
    compression: str = "gzip",
    mtime: Optional[int] = None,
    progress: ProgressArg = None,
) -> Built:
    """Builds the image layout ``layout_dir`` (``manifest`` + ``rootfs/``) into the
    reproducible archive ``out``; ``mtime`` clamps file times (seconds since the epoch)."""
    return build_op(layout_dir, out, compression, mtime, progress).run()


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
    return sign_op(p, key, passphrase, out, progress).run()


def push(
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
    """Uploads the archive ``p`` (with its armored ``signature``: bytes or a file) to the
    repository at ``url`` (an ``acikit serve``), with the bearer ``token``;
    ``auth_config`` is a per-host credentials file (none by default)."""
    return push_op(url, p, token, signature, insecure, ca_certs, auth_config, progress).run()
