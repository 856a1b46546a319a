"""Original-byte recording (``import_file(original=True)``), ``original()``,
``compact_originals()`` and ``gc()`` compacting, on an archive written by GNU gzip."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
from pathlib import Path

import pytest

import acikit

from conftest import write_layout


@pytest.fixture
def gnu_gzip_aci(tmp_path: Path) -> Path:
    """An image archive compressed by the ``gzip`` CLI (``-9``), which our own exports never
    write: only a correction record re-creates it."""
    layout = write_layout(tmp_path, "example.com/original", "1.0.0")
    with open(layout / "rootfs" / "etc" / "lines", "w") as file:
        for n in range(40000):
            file.write(f"line {n}: {n * 7919 % 104729} of the original archive\n")
    tar = tmp_path / "original.tar"
    acikit.build(layout, tar, compression="none")
    aci = tmp_path / "original.aci"
    with open(aci, "wb") as out:
        subprocess.run(["gzip", "-9", "-c", str(tar)], stdout=out, check=True)
    assert acikit.validate(aci).compression == "gzip"
    return aci


def exported_original(store: acikit.Store, image: str, dest: Path) -> bytes:
    store.export(image, dest, compression="original")
    return dest.read_bytes()


def test_original_is_kept_pending_then_compacted(
    tmp_path: Path, store: acikit.Store, gnu_gzip_aci: Path
) -> None:
    data = gnu_gzip_aci.read_bytes()
    image = store.import_file(gnu_gzip_aci, original=True).image_id

    kept = store.original(image)
    assert kept is not None
    assert kept.form == "kept" and kept.pending is True
    assert kept.compression == "gzip"
    assert kept.size == len(data) == kept.kept_bytes
    assert kept.sha256 == hashlib.sha256(data).hexdigest()
    assert exported_original(store, image, tmp_path / "before.aci") == data
    stats = store.stats()
    assert (stats.original_records, stats.original_forms) == (1, {"kept": 1})
    assert stats.original_compressed_bytes == stats.original_kept_bytes == len(data)
    assert stats.original_images == (acikit.ImageOriginal(image, kept),)

    events: list[acikit.Progress] = []
    done = store.compact_originals(progress=events.append)
    assert isinstance(done, acikit.OriginalCompaction)
    assert (done.compacted, done.kept) == (1, 0)
    assert done.bytes_freed > 0
    assert events and all(e.phase == "original" for e in events)
    assert events[-1].done == events[-1].total == len(data)

    compact = store.original(image)
    assert compact is not None
    assert compact.form == "gzip" and compact.pending is False
    assert compact.size == len(data) and compact.sha256 == kept.sha256
    assert 0 < compact.kept_bytes < len(data) / 10
    assert exported_original(store, image, tmp_path / "after.aci") == data
    stats = store.stats()
    assert (stats.original_records, stats.original_forms) == (1, {"gzip": 1})
    assert stats.original_compressed_bytes == len(data)
    assert stats.original_kept_bytes == compact.kept_bytes
    assert stats.original_images == (acikit.ImageOriginal(image, compact),)
    assert stats.to_dict()["original_images"][0]["original"]["form"] == "gzip"
    # Nothing is pending any more: a second compaction does nothing.
    assert store.compact_originals() == acikit.OriginalCompaction(0, 0, 0)


def test_no_original_without_the_option_and_none_for_a_tar(
    tmp_path: Path, store: acikit.Store, gnu_gzip_aci: Path
) -> None:
    with pytest.raises(TypeError):
        store.import_file(gnu_gzip_aci, original="yes")  # type: ignore[arg-type]
    assert store.list() == []
    image = store.import_file(gnu_gzip_aci).image_id
    assert store.original(image) is None
    with pytest.raises(acikit.NotFound):
        store.export(image, tmp_path / "x.aci", compression="original")

    tar = tmp_path / "plain.tar"
    subprocess.run(["gzip", "-dkc", str(gnu_gzip_aci)], stdout=open(tar, "wb"), check=True)
    store.remove(image)
    plain = store.import_file(tar, original=True).image_id
    info = store.original(plain)
    assert info is not None and info.form == "none" and info.pending is False
    assert info.kept_bytes == 0 and info.compression == "none"
    with pytest.raises(acikit.NotFound):
        store.original("sha512-" + "0" * 32)


def test_gc_compacts_a_pending_original(store: acikit.Store, gnu_gzip_aci: Path) -> None:
    image = store.import_file(gnu_gzip_aci, original=True).image_id
    report = store.gc()
    assert report.originals_compacted == 1
    assert report.originals_kept == 0
    assert report.original_bytes_freed > 0
    info = store.original(image)
    assert info is not None and info.form == "gzip" and not info.pending
    assert store.gc().originals_compacted == 0


def test_a_cancelled_compaction_leaves_the_original_pending(
    tmp_path: Path, store: acikit.Store, gnu_gzip_aci: Path
) -> None:
    image = store.import_file(gnu_gzip_aci, original=True).image_id

    def stop(event: acikit.Progress) -> None:
        raise RuntimeError("stop the compaction")

    with pytest.raises(RuntimeError, match="stop the compaction"):
        store.compact_originals(progress=stop)
    info = store.original(image)
    assert info is not None and info.form == "kept" and info.pending
    assert exported_original(store, image, tmp_path / "x.aci") == gnu_gzip_aci.read_bytes()


def test_async_twins(tmp_path: Path, gnu_gzip_aci: Path) -> None:
    async def main() -> None:
        async with await acikit.AsyncStore.connect(tmp_path / "store") as store:
            image = (await store.import_file(gnu_gzip_aci, original=True)).image_id
            kept = await store.original(image)
            assert kept is not None and kept.pending and kept.form == "kept"

            # The first progress event (before any byte is compacted) cancels the task,
            # and holds the work until the loop has passed the cancellation on.
            loop = asyncio.get_running_loop()

            def cancel_task(event: acikit.Progress) -> None:
                loop.call_soon_threadsafe(task.cancel)
                time.sleep(0.5)

            task = asyncio.ensure_future(store.compact_originals(progress=cancel_task))
            with pytest.raises(asyncio.CancelledError):
                await task
            still = await store.original(image)
            assert still is not None and still.pending

            done = await store.compact_originals()
            assert done.compacted == 1
            info = await store.original(image)
            assert info is not None and info.form == "gzip" and not info.pending
            await store.export(image, tmp_path / "x.aci", compression="original")
            assert (tmp_path / "x.aci").read_bytes() == gnu_gzip_aci.read_bytes()

    asyncio.run(main())
