"""Fixtures: real images built with acikit.build, a real repository (acikit.serve) with a
signed image pushed to it, and the throw-away example signing key."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

import acikit

KEYS = Path(__file__).resolve().parents[2] / "examples" / "python" / "keys"
PUBLIC_KEY = KEYS / "example.pub.asc"
SECRET_KEY = KEYS / "example.secret.asc"
TOKEN = "test-token"

_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())

MakeImage = Callable[..., Path]


def write_layout(
    where: Path, name: str, version: str, payload: int = 0, labels: dict[str, str] | None = None
) -> Path:
    """An image layout: a manifest and a rootfs with a small file and ``payload`` bytes."""
    layout = where / f"layout-{name.replace('/', '_')}-{version}"
    if layout.exists():
        layout = Path(tempfile.mkdtemp(prefix=layout.name + "-", dir=where))
    (layout / "rootfs" / "etc").mkdir(parents=True)
    all_labels = {"version": version, "os": "linux", "arch": _ARCH, **(labels or {})}
    manifest = {
        "acKind": "ImageManifest",
        "acVersion": "0.8.11",
        "name": name,
        "labels": [{"name": k, "value": v} for k, v in all_labels.items()],
        "app": {"exec": ["/bin/hello"], "user": "0", "group": "0"},
    }
    (layout / "manifest").write_text(json.dumps(manifest))
    (layout / "rootfs" / "etc" / "hello").write_text(f"hello from {name} {version}\n")
    if payload:
        block = os.urandom(1 << 20)
        with open(layout / "rootfs" / "payload", "wb") as file:
            for _ in range(payload >> 20):
                file.write(block)
    return layout


@pytest.fixture
def make_image(tmp_path: Path) -> MakeImage:
    """Builds an image archive: ``make_image(name, version, payload=0, compression=...)``."""

    def make(
        name: str = "example.com/hello",
        version: str = "1.0.0",
        payload: int = 0,
        compression: str = "gzip",
        labels: dict[str, str] | None = None,
    ) -> Path:
        layout = write_layout(tmp_path, name, version, payload, labels)
        out = tmp_path / f"{layout.name}.aci"
        acikit.build(layout, out, compression=compression)
        return out

    return make


@pytest.fixture
def small_aci(make_image: MakeImage) -> Path:
    return make_image()


@pytest.fixture(scope="session")
def big_aci(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 32 MiB image (uncompressed), for calls long enough to interrupt."""
    where = tmp_path_factory.mktemp("big")
    layout = write_layout(where, "example.com/big", "1.0.0", payload=32 << 20)
    out = where / "big.aci"
    acikit.build(layout, out, compression="none")
    return out


@pytest.fixture
def store(tmp_path: Path) -> Iterator[acikit.Store]:
    with acikit.Store(tmp_path / "store") as s:
        yield s


@pytest.fixture
def repository(tmp_path: Path) -> Iterator[acikit.Server]:
    """A repository serving nothing yet (push with ``publish``)."""
    repo = acikit.Store(tmp_path / "repository")
    with acikit.serve(repo, push_token=TOKEN) as server:
        yield server
    repo.close()


def publish(server: acikit.Server, aci: Path) -> None:
    """Pushes ``aci`` with its signature by the example key to ``server``."""
    signature = acikit.sign(aci, SECRET_KEY)
    acikit.push(server.url, aci, token=TOKEN, signature=signature, insecure="http")


def fetch_from(
    store: acikit.Store, server: acikit.Server, name: str, **options: Any
) -> acikit.Fetched:
    """Fetches ``name`` with the options reaching ``server`` for every name under
    example.com over plain HTTP."""
    return store.fetch(
        name,
        insecure="http",
        port=server.port,
        resolve={"example.com": server.address},
        **options,
    )
