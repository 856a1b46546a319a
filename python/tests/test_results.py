"""The typed results: real attributes of the right Python types, readable reprs,
``to_dict()``, HTML tables, dates as ``datetime`` and labels as dicts."""

from __future__ import annotations

import dataclasses
import datetime
import io
import json
from pathlib import Path
from typing import Any

import pytest

import acikit

from conftest import PUBLIC_KEY, fetch_from, publish, write_layout


def check_result(result: Any, name: str) -> None:
    """Common to every result: a frozen dataclass named ``name``, a repr naming it with
    its fields, ``to_dict()`` of every field and an HTML table."""
    assert dataclasses.is_dataclass(type(result)) and type(result).__name__ == name
    text = repr(result)
    assert text.startswith(f"{name}(") and len(text) < 2000
    fields = [f.name for f in dataclasses.fields(result)]
    as_dict = result.to_dict()
    assert list(as_dict) == fields
    assert f"<caption>{name}</caption>" in result._repr_html_()
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(result, fields[0], None)


def test_store_results_are_typed(
    tmp_path: Path, store: acikit.Store, small_aci: Path, repository: acikit.Server
) -> None:
    imported = store.import_file(small_aci)
    check_result(imported, "Imported")
    assert isinstance(imported.new_bytes, int) and imported.already_present is False
    assert imported.image_id in repr(imported)[:200] or "sha512-" in repr(imported)

    exported = store.export(imported.image_id, io.BytesIO())
    check_result(exported, "Exported")
    assert exported.written == exported.tar_size == imported.tar_size

    with store.render(imported.image_id, tmp_path / "rootfs", "copy") as rendered:
        assert isinstance(rendered, acikit.RenderInfo) and rendered.strategy == "copy"
        assert rendered.layers == (imported.image_id,) and rendered.target == str(
            tmp_path / "rootfs"
        )
        assert rendered.to_dict()["strategy"] == "copy" and "Rendered(" in repr(rendered)

    gc = store.gc()
    check_result(gc, "GcReport")
    fsck = store.fsck()
    check_result(fsck, "FsckReport")
    assert fsck.ok and fsck.problems == () and fsck.images_checked == 1
    assert fsck.render_caches is not None and fsck.render_caches.trees_checked >= 0
    assert isinstance(fsck.to_dict()["render_caches"], dict)
    stats = store.stats()
    check_result(stats, "StoreStats")
    assert stats.index == "sqlite" and stats.images == 1 and isinstance(stats.dedup_ratio, float)

    key = store.trust.add(PUBLIC_KEY, prefix="example.com")
    check_result(key, "TrustedKey")
    assert key.scope == "example.com" and len(key.fingerprint) == 40
    assert isinstance(key.created_at, datetime.datetime) and key.created_at.tzinfo is not None
    assert key.user_ids and isinstance(key.user_ids, tuple)
    assert store.trust.list() == [key]
    everywhere = store.trust.add(PUBLIC_KEY)
    assert everywhere.scope is None

    publish(repository, small_aci)
    with acikit.Store(tmp_path / "client") as client:
        client.trust.add(PUBLIC_KEY, prefix="example.com")
        fetched = fetch_from(client, repository, "example.com/hello:1.0.0")
        check_result(fetched, "Fetched")
        assert fetched.outcome == "downloaded" and fetched.dependencies == ()
        signature = fetched.signature
        assert isinstance(signature, acikit.VerifiedSignature)
        assert signature.scope == "example.com" and signature.fingerprint == key.fingerprint
        assert isinstance(signature.created_at, datetime.datetime)
        assert fetched.to_dict()["signature"]["fingerprint"] == key.fingerprint


def test_module_results_are_typed(small_aci: Path, repository: acikit.Server) -> None:
    inspection = acikit.validate(small_aci)
    check_result(inspection, "Inspection")
    assert isinstance(inspection.manifest, acikit.Manifest)
    assert inspection.to_dict()["manifest"]["name"] == "example.com/hello"
    assert inspection.compression == "gzip" and inspection.entries >= 3

    pushed = acikit.push(repository.url, small_aci, token="test-token", insecure="http")
    check_result(pushed, "Pushed")
    assert pushed.form in ("tar", "gzip", "original") and pushed.signed is False

    found = acikit.discover(
        "example.com/hello",
        {"version": "1.0.0"},
        insecure="http",
        port=repository.port,
        resolve={"example.com": repository.address},
    )
    check_result(found, "Discovered")
    assert isinstance(found.labels, dict) and found.labels["version"] == "1.0.0"
    assert isinstance(found.aci_endpoints[0], acikit.AciEndpoint)
    assert found.to_dict()["aci_endpoints"][0]["aci"] == found.aci_endpoints[0].aci


def test_manifest_app_and_dependencies_are_typed(tmp_path: Path) -> None:
    layout = write_layout(tmp_path, "example.com/worker", "1.0.0")
    manifest = json.loads((layout / "manifest").read_text())
    manifest["app"] = {
        "exec": ["/usr/bin/reduce-worker", "--quiet"],
        "user": "100",
        "group": "300",
        "supplementaryGIDs": [400, 500],
        "eventHandlers": [{"name": "pre-start", "exec": ["/usr/bin/data-downloader"]}],
        "workingDirectory": "/opt/work",
        "environment": [{"name": "REDUCE_WORKER_DEBUG", "value": "true"}],
        "isolators": [{"name": "resource/cpu", "value": {"request": "250m", "limit": "500m"}}],
        "mountPoints": [{"name": "work", "path": "/var/lib/work", "readOnly": True}],
        "ports": [{"name": "ftp-data", "port": 20000, "count": 1000, "protocol": "tcp"}],
    }
    manifest["dependencies"] = [
        {
            "imageName": "example.com/reduce-worker-base",
            "labels": [{"name": "os", "value": "linux"}],
            "size": 22017258,
        }
    ]
    (layout / "manifest").write_text(json.dumps(manifest))
    aci = tmp_path / "worker.aci"
    acikit.build(layout, aci)
    read = acikit.read_manifest(aci)
    app = read.app
    assert isinstance(app, acikit.App)
    assert app.exec == ("/usr/bin/reduce-worker", "--quiet") and app.user == "100"
    assert app.supplementary_gids == (400, 500) and app.working_directory == "/opt/work"
    assert app.event_handlers == (acikit.EventHandler("pre-start", ("/usr/bin/data-downloader",)),)
    assert app.environment == {"REDUCE_WORKER_DEBUG": "true"}
    assert app.isolators[0].name == "resource/cpu" and app.isolators[0].value["limit"] == "500m"
    assert app.mount_points == (acikit.MountPoint("work", "/var/lib/work", True),)
    assert app.ports == (acikit.Port("ftp-data", 20000, "tcp", count=1000),)
    assert read.dependencies == (
        acikit.Dependency("example.com/reduce-worker-base", None, {"os": "linux"}, 22017258),
    )
    assert "example.com/reduce-worker-base" in read._repr_html_()
