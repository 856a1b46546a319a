"""Every operation of AsyncStore, awaited."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

import acikit

from conftest import PUBLIC_KEY, MakeImage, publish


def test_async_store_operations(tmp_path: Path, make_image: MakeImage) -> None:
    one_aci, two_aci = make_image(version="1.0.0"), make_image(version="2.0.0")

    async def main() -> None:
        async with await acikit.AsyncStore.connect(tmp_path / "store") as store:
            assert repr(store).startswith("AsyncStore(")
            events: list[acikit.Progress] = []
            one = await store.import_file(one_aci, progress=events.append)
            assert events and events[0].phase == "import"
            await store.import_file(two_aci)
            assert len(await store.list()) == 2
            assert [i.version for i in await store.find("example.com/hello")] == ["2.0.0", "1.0.0"]
            image = await store.get(one.image_id[:30])
            assert image.id == one.image_id
            assert (await store.manifest(image)).labels["version"] == "1.0.0"

            out = tmp_path / "one.aci"
            exported = await store.export(image, out)
            assert exported.written == out.stat().st_size
            buffer = io.BytesIO()
            await store.export(image, buffer, compression="zstd")
            assert buffer.getvalue()[:4] == b"\x28\xb5\x2f\xfd"

            async with await store.open(image) as reader:
                data = b""
                while chunk := await reader.read(4096):
                    data += chunk
            assert data == out.read_bytes() and reader.closed

            target = tmp_path / "rootfs"
            async with await store.render(image, target, "copy") as rendered:
                assert (target / "etc" / "hello").exists() and rendered.strategy == "copy"
            assert not target.exists()

            with pytest.raises(acikit.AmbiguousId):
                await store.remove("example.com/hello")
            await store.remove(image)
            assert len(await store.list()) == 1
            assert (await store.gc()).objects_removed == 0
            assert (await store.fsck(repair=True)).problems == ()
            assert (await store.stats()).images == 1

            key = await store.trust.add(PUBLIC_KEY, "example.com")
            assert [k.fingerprint for k in await store.trust.list()] == [key.fingerprint]
            assert len(await store.trust.remove(key.fingerprint)) == 1

            with pytest.raises(acikit.NotFound):
                await store.get("sha512-00")

    asyncio.run(main())


def test_async_fetch_and_sync_serve(
    tmp_path: Path, repository: acikit.Server, small_aci: Path
) -> None:
    publish(repository, small_aci)

    async def main() -> str:
        store = await acikit.AsyncStore.connect(tmp_path / "client")
        await store.trust.add(PUBLIC_KEY, prefix="example.com")
        fetched = await store.fetch(
            "example.com/hello",
            labels={"version": "1.0.0"},
            insecure=["http"],
            port=repository.port,
            resolve={"example.com": repository.address},
        )
        await store.close()
        name: str = fetched.name
        return name

    assert asyncio.run(main()) == "example.com/hello"


def test_many_calls_run_concurrently(tmp_path: Path, make_image: MakeImage) -> None:
    archives = [make_image(version=f"{n}.0.0") for n in range(4)]

    async def main() -> int:
        store = await acikit.AsyncStore.connect(tmp_path / "store")
        await asyncio.gather(*(store.import_file(a) for a in archives))
        count = len(await store.list())
        await store.close()
        return count

    assert asyncio.run(main()) == 4
