"""Every sync operation of Store and the module functions, on real images."""

from __future__ import annotations

import datetime
import io
import tarfile
from pathlib import Path

import pytest

import acikit

from conftest import PUBLIC_KEY, MakeImage


def test_build_validate_id_manifest(small_aci: Path) -> None:
    inspection = acikit.validate(small_aci)
    assert inspection.image_id.startswith("sha512-")
    assert inspection.compression == "gzip"
    assert acikit.image_id(str(small_aci)) == inspection.image_id
    manifest = acikit.read_manifest(small_aci)
    assert manifest == inspection.manifest
    assert manifest.name == "example.com/hello"
    assert manifest.labels["version"] == "1.0.0"
    assert manifest.app is not None and manifest.app.exec == ("/bin/hello",)
    assert manifest.app.user == "0" and manifest.app.environment == {}
    assert manifest.dependencies == ()
    assert manifest.to_dict()["acKind"] == "ImageManifest"
    assert "example.com/hello" in repr(manifest) and "<table>" in manifest._repr_html_()


def test_build_is_reproducible_with_mtime(tmp_path: Path, make_image: MakeImage) -> None:
    first = make_image(compression="none")
    again = tmp_path / "again.aci"
    built = acikit.build(tmp_path / "layout-example.com_hello-1.0.0", again, compression="none")
    assert built.image_id == acikit.image_id(first)
    assert built.path == str(again)
    with pytest.raises(acikit.InputError) as info:
        acikit.build(tmp_path / "layout-example.com_hello-1.0.0", again, compression="lz4")
    assert info.value.code == "invalid_argument"


def test_import_list_find_get(store: acikit.Store, make_image: MakeImage) -> None:
    first = make_image(version="1.0.0")
    one = store.import_file(first, origin="test")
    two = store.import_file(make_image(version="2.0.0"))
    assert not one.already_present and one.name == "example.com/hello"
    images = store.list()
    assert isinstance(images, acikit.ImageList) and len(images) == 2
    assert {i.id for i in images} == {one.image_id, two.image_id}
    found = store.find("example.com/hello")
    assert [i.version for i in found] == ["2.0.0", "1.0.0"]  # newest import first
    assert [i.id for i in store.find("example.com/hello", {"version": "1.0.0"})] == [one.image_id]
    assert [i.id for i in store.find("example.com/hello:1.0.0")] == [one.image_id]
    assert store.find("example.com/nothing") == []
    image = store.get(one.image_id[:24])
    assert image == store.get(one.image_id) and hash(image) == hash(store.get(one.image_id))
    assert image.origin == "test" and image.labels["version"] == "1.0.0"
    assert image.size == one.tar_size and image.archive_size == one.archive_size
    assert isinstance(image.imported_at, datetime.datetime)
    assert image.imported_at.tzinfo is not None
    assert image.to_dict()["id"] == image.id
    assert "example.com/hello:1.0.0" in repr(image)
    html = images._repr_html_()
    assert html.count("<tr>") == 3 and "example.com/hello" in html
    assert image._repr_html_().startswith("<table>")
    assert store.manifest(image).labels["version"] == "1.0.0"
    assert store.import_file(first).already_present


def test_export_to_path_and_file_object(
    tmp_path: Path, store: acikit.Store, small_aci: Path
) -> None:
    imported = store.import_file(small_aci)
    out = tmp_path / "out.aci"
    exported = store.export(imported.image_id, out)
    assert exported.written == out.stat().st_size == imported.tar_size
    assert acikit.image_id(out) == imported.image_id
    gz = store.export("example.com/hello", tmp_path / "out.aci.gz", compression="gzip")
    assert gz.written < gz.tar_size
    buffer = io.BytesIO()
    store.export(store.get(imported.image_id), buffer)
    assert buffer.getvalue() == out.read_bytes()


def test_open_streams_the_canonical_tar(
    tmp_path: Path, store: acikit.Store, small_aci: Path
) -> None:
    imported = store.import_file(small_aci)
    with store.open(imported.image_id) as reader:
        assert reader.readable() and reader.size == imported.tar_size
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            names = [member.name for member in tar]
    assert names == ["manifest", "rootfs", "rootfs/etc", "rootfs/etc/hello"]
    store.export(imported.image_id, tmp_path / "plain.aci")
    with store.open(imported.image_id) as reader:
        chunks = []
        while chunk := reader.read(1000):
            chunks.append(chunk)
    assert b"".join(chunks) == (tmp_path / "plain.aci").read_bytes()
    with store.open(imported.image_id) as reader:
        assert reader.read() == (tmp_path / "plain.aci").read_bytes()
    buffered = io.BufferedReader(store.open(imported.image_id))
    assert buffered.read(512)[257:262] == b"ustar"
    buffered.close()
    assert "closed" in repr(reader)


def test_render_is_released_by_the_context_manager(
    tmp_path: Path, store: acikit.Store, small_aci: Path
) -> None:
    store.import_file(small_aci)
    target = tmp_path / "rootfs"
    with store.render("example.com/hello", target, strategy="copy") as rendered:
        assert (target / "etc" / "hello").read_text().startswith("hello from")
        assert rendered.strategy == "copy" and not rendered.released
    assert rendered.released and not target.exists()
    again = store.render("example.com/hello", target, "copy")
    again.release()
    again.release()
    assert not target.exists()
    with pytest.raises(acikit.InputError):
        store.render("example.com/hello", target, strategy="teleport")


def test_remove_gc_fsck_stats(store: acikit.Store, make_image: MakeImage) -> None:
    one = store.import_file(make_image(version="1.0.0"))
    store.import_file(make_image(version="2.0.0"))
    stats = store.stats()
    assert stats.images == 2 and stats.index == "sqlite"
    with pytest.raises(acikit.AmbiguousId) as info:
        store.remove("example.com/hello")
    assert info.value.code == "ambiguous_image" and isinstance(info.value, ValueError)
    store.remove(one.image_id)
    assert [i.version for i in store.list()] == ["2.0.0"]
    assert store.stats().images == 1
    gc = store.gc()
    assert gc.objects_removed == 0 and "GcReport(" in repr(gc)
    report = store.fsck()
    assert report.images_checked == 1 and report.problems == ()
    assert "FsckReport(" in repr(report) and report.to_dict()["images_checked"] == 1


def test_trust_add_list_remove(store: acikit.Store) -> None:
    added = store.trust.add(PUBLIC_KEY, prefix="example.com")
    assert added.scope == "example.com"
    keys = store.trust.list()
    assert [k.fingerprint for k in keys] == [added.fingerprint]
    store.trust.add(PUBLIC_KEY.read_bytes())  # every name
    assert len(store.trust.list()) == 2
    removed = store.trust.remove(added.fingerprint)
    assert len(removed) == 2 and store.trust.list() == []
    with pytest.raises(acikit.SignatureError) as info:
        store.trust.add(b"not a key")
    assert info.value.code == "bad_openpgp"


def test_paths_may_be_pathlike(tmp_path: Path, small_aci: Path) -> None:
    with acikit.Store(tmp_path / "s") as store:
        assert store.path == str(tmp_path / "s")
        assert repr(store) == f"Store({str(tmp_path / 's')!r})"
        store.import_file(small_aci)
    with acikit.Store(str(tmp_path / "s"), read_only=True) as again:
        assert len(again.list()) == 1
        with pytest.raises(acikit.PrivilegeError) as info:
            again.import_file(small_aci)
        assert info.value.code == "read_only_store"
        assert isinstance(info.value, PermissionError)
