"""acikit.aio: the awaitable twins of the module functions, on real images and a real
repository; one cancelled mid-way; errors mapped as in the sync API."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import time
from pathlib import Path

import pytest

import acikit
import acikit.aio

from conftest import PUBLIC_KEY, SECRET_KEY, TOKEN, write_layout


def test_twins_have_the_sync_signatures() -> None:
    names = ("validate", "image_id", "read_manifest", "discover", "build", "sign", "push", "serve")
    for name in names:
        sync, twin = getattr(acikit, name), getattr(acikit.aio, name)
        assert inspect.iscoroutinefunction(twin), name
        assert inspect.signature(twin).parameters == inspect.signature(sync).parameters, name
    assert acikit.aio.AsyncStore is acikit.AsyncStore


def test_import_acikit_leaves_asyncio_out() -> None:
    # Scripts that never await pay nothing for the async API: asyncio (with ssl and
    # concurrent.futures, ~80 ms) is imported on the first await, not by `import acikit`.
    code = "import sys, acikit, acikit.aio; print('asyncio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_every_twin_awaited(tmp_path: Path, repository: acikit.Server) -> None:
    layout = write_layout(tmp_path, "example.com/hello", "1.0.0")
    aci = tmp_path / "hello.aci"

    async def main() -> None:
        events: list[acikit.Progress] = []
        built = await acikit.aio.build(layout, aci, compression="zstd", progress=events.append)
        assert isinstance(built, acikit.Built) and built.compression == "zstd"
        assert built.path == str(aci) and events and events[-1].phase == "build"

        inspection = await acikit.aio.validate(aci)
        assert isinstance(inspection, acikit.Inspection)
        assert inspection.image_id == built.image_id and inspection.compression == "zstd"
        assert await acikit.aio.image_id(aci) == built.image_id
        manifest = await acikit.aio.read_manifest(aci)
        assert manifest.name == "example.com/hello" and manifest == inspection.manifest

        signature = await acikit.aio.sign(aci, SECRET_KEY, out=tmp_path / "hello.aci.asc")
        assert signature.startswith(b"-----BEGIN PGP SIGNATURE-----")
        assert (tmp_path / "hello.aci.asc").read_bytes() == signature

        pushed = await acikit.aio.push(
            repository.url, aci, token=TOKEN, signature=signature, insecure="http"
        )
        assert isinstance(pushed, acikit.Pushed)
        assert pushed.image_id == built.image_id and pushed.signed and not pushed.already_present

        walked: list[acikit.Progress] = []
        found = await acikit.aio.discover(
            "example.com/hello",
            {"version": "1.0.0"},
            insecure="http",
            port=repository.port,
            resolve={"example.com": repository.address},
            progress=walked.append,
        )
        assert isinstance(found, acikit.Discovered) and found.name == "example.com/hello"
        # Two levels (example.com/hello, example.com): the last event says both are done.
        assert {e.phase for e in walked} == {"discover"}
        assert walked[0].done == 0 and (walked[-1].done, walked[-1].total) == (2, 2)
        assert found.aci_endpoints[0].aci.endswith("/example.com/hello/1.0.0.aci")
        assert found.labels["version"] == "1.0.0"

    asyncio.run(main())
    # The sync twins agree.
    assert acikit.image_id(aci) == acikit.validate(aci).image_id


def test_twin_errors_map_to_the_same_classes(tmp_path: Path) -> None:
    not_an_image = tmp_path / "junk.aci"
    not_an_image.write_bytes(b"this is no archive" * 100)
    with pytest.raises(acikit.InvalidImage) as sync:
        acikit.validate(not_an_image)

    async def main() -> None:
        with pytest.raises(acikit.InvalidImage) as invalid:
            await acikit.aio.validate(not_an_image)
        assert invalid.value.code == sync.value.code and isinstance(invalid.value, ValueError)
        with pytest.raises(acikit.NotFound) as missing:
            await acikit.aio.image_id(tmp_path / "missing.aci")
        assert isinstance(missing.value, FileNotFoundError)
        with pytest.raises(acikit.InputError) as bad:
            await acikit.aio.build(tmp_path, tmp_path / "out.aci", compression="lz4")
        assert bad.value.code == "invalid_argument" and isinstance(bad.value, ValueError)
        with pytest.raises(acikit.AcikitError):
            await acikit.aio.sign(not_an_image, PUBLIC_KEY)  # a public key cannot sign

    asyncio.run(main())


def test_cancelling_a_build_leaves_nothing(tmp_path: Path) -> None:
    layout = write_layout(tmp_path, "example.com/big", "1.0.0", payload=48 << 20)
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        def on_progress(event: acikit.Progress) -> None:
            if event.done > 0:
                loop.call_soon_threadsafe(started.set)
                time.sleep(0.02)  # keeps the build going while the task is cancelled

        task = asyncio.ensure_future(
            acikit.aio.build(layout, out_dir / "big.aci", compression="gzip", progress=on_progress)
        )
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Cancellation waited for the Rust work to clean up: no archive, no temporary file.
        assert list(out_dir.iterdir()) == []

    asyncio.run(main())


def test_the_aio_example_runs(tmp_path: Path) -> None:
    layout = write_layout(tmp_path, "example.com/hello", "1.0.0")
    example = Path(__file__).resolve().parents[2] / "examples" / "python" / "aio_build.py"
    done = subprocess.run(
        [sys.executable, str(example), str(layout), str(tmp_path / "store")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "valid: example.com/hello 1.0.0 sha512-" in done.stdout
    assert "(zstd)" in done.stdout and "store: 1 image(s)" in done.stdout


def test_async_serve(tmp_path: Path, small_aci: Path) -> None:
    async def main() -> None:
        async with await acikit.aio.AsyncStore.connect(tmp_path / "repository") as repo:
            async with await acikit.aio.serve(repo, push_token=TOKEN) as server:
                assert isinstance(server, acikit.AsyncServer) and server.running
                assert repr(server) == f"<AsyncServer {server.url} running>"
                pushed = await acikit.aio.push(server.url, small_aci, token=TOKEN, insecure="http")
                assert [i.id for i in await repo.list()] == [pushed.image_id]
            assert not server.running

    asyncio.run(main())
