"""Ctrl-C during a sync call, the sync API inside a running loop, task cancellation of
async calls, and what a forked child may do."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

import acikit

from conftest import SECRET_KEY, TOKEN, fetch_from, publish


@pytest.fixture(autouse=True)
def ctrl_c_raises() -> Iterator[None]:
    """Python's own SIGINT handler, as in a terminal: a shell starts background jobs with
    SIGINT ignored, and Python then installs none, so Ctrl-C would not raise here."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def assert_clean(store: acikit.Store) -> None:
    assert store.list() == []
    report = store.fsck()
    assert report.stale_staging == 0 and report.problems == ()


def test_ctrl_c_interrupts_a_sync_import(store: acikit.Store, big_aci: Path) -> None:
    sent = threading.Event()

    def interrupt(event: acikit.Progress) -> None:
        if event.phase == "import" and not sent.is_set():
            sent.set()
            # As a terminal's Ctrl-C does: SIGINT to the process, handled in the main
            # thread; the import waits here meanwhile, so it cannot finish first. The signal
            # is sent before the wait starts, and the wait is long enough for a loaded
            # machine's main thread to see it (it checks every 100 ms).
            killer = threading.Thread(target=os.kill, args=(os.getpid(), signal.SIGINT))
            killer.start()
            killer.join()
            time.sleep(2.0)

    started = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        store.import_file(big_aci, progress=interrupt)
    assert sent.is_set() and time.monotonic() - started < 30
    assert_clean(store)
    # The store works afterwards.
    assert store.import_file(big_aci).name == "example.com/big"


def test_sync_api_inside_a_running_loop(store: acikit.Store, small_aci: Path) -> None:
    async def cell() -> int:
        # A notebook cell: a loop already runs; the sync API blocks it briefly and works.
        store.import_file(small_aci)
        await asyncio.sleep(0)
        return len(store.list())

    assert asyncio.run(cell()) == 1


def test_cancelling_an_async_fetch_leaves_nothing(
    tmp_path: Path, repository: acikit.Server, big_aci: Path
) -> None:
    publish(repository, big_aci)

    async def main() -> None:
        store = await acikit.AsyncStore.connect(tmp_path / "client")
        await store.trust.add(SECRET_KEY.with_name("example.pub.asc"), prefix="example.com")
        loop = asyncio.get_running_loop()
        started = asyncio.Event()

        def on_progress(event: acikit.Progress) -> None:
            if event.phase == "download" and event.done > 0:
                loop.call_soon_threadsafe(started.set)
                time.sleep(0.05)

        task = asyncio.ensure_future(
            store.fetch(
                "example.com/big:1.0.0",
                insecure="http",
                port=repository.port,
                resolve={"example.com": repository.address},
                progress=on_progress,
            )
        )
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await store.list() == []
        report = await store.fsck()
        assert report.stale_staging == 0 and report.unreferenced_objects == 0
        await store.close()

    asyncio.run(main())


def test_after_fork_the_child_opens_its_own_store(
    tmp_path: Path, store: acikit.Store, small_aci: Path
) -> None:
    store.import_file(small_aci)
    pid = os.fork()
    if pid == 0:  # the child: report through the exit status only
        status = 1
        try:
            try:
                store.list()
            except RuntimeError as err:
                if "fork" in str(err):
                    status = 2
            if status == 2:
                with acikit.Store(tmp_path / "child") as own:
                    own.import_file(small_aci)
                    if len(own.list()) == 1 and acikit.image_id(small_aci):
                        status = 3

            async def child_async() -> bool:
                # The async API too runs on the child's own runtime.
                async with await acikit.AsyncStore.connect(tmp_path / "child-async") as own:
                    await own.import_file(small_aci)
                    listed = await own.list()
                return len(listed) == 1 and bool(await acikit.aio.image_id(small_aci))

            if status == 3 and asyncio.run(child_async()):
                status = 0
        finally:
            os._exit(status)
    _, waited = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(waited) == 0
    assert len(store.list()) == 1  # the parent's store still works


def test_token_is_needed_to_push(repository: acikit.Server, small_aci: Path) -> None:
    with pytest.raises(acikit.AcikitError):
        acikit.push(repository.url, small_aci, token=TOKEN + "-wrong", insecure="http")


def test_fetch_by_name_verifies_the_signature(
    tmp_path: Path, repository: acikit.Server, small_aci: Path
) -> None:
    publish(repository, small_aci)
    with acikit.Store(tmp_path / "client") as store:
        with pytest.raises(acikit.SignatureError) as info:
            fetch_from(store, repository, "example.com/hello:1.0.0")
        assert info.value.code == "untrusted_key"
        store.trust.add(SECRET_KEY.with_name("example.pub.asc"), prefix="example.com")
        events: list[acikit.Progress] = []
        fetched = fetch_from(store, repository, "example.com/hello:1.0.0", progress=events.append)
        assert fetched.name == "example.com/hello" and fetched.outcome == "downloaded"
        assert fetched.signature is not None and len(fetched.signature.fingerprint) == 40
        assert any(e.phase == "download" for e in events)
        assert [i.id for i in store.list()] == [fetched.image_id]
        assert fetched.url is not None
        by_url = fetch_from(store, repository, fetched.url)
        assert by_url.image_id == fetched.image_id


def test_discover(repository: acikit.Server, small_aci: Path) -> None:
    publish(repository, small_aci)
    found = acikit.discover(
        "example.com/hello",
        {"version": "1.0.0"},
        insecure="http",
        port=repository.port,
        resolve={"example.com": repository.address},
    )
    assert found.aci_endpoints[0].aci.endswith("/example.com/hello/1.0.0.aci")
    assert found.pubkeys
    with pytest.raises(acikit.NetworkError):
        acikit.discover("example.com/hello", resolve={"example.com": "127.0.0.1:9"}, port=9)


def _export_bytes(store: acikit.Store, image: str) -> bytes:
    buffer = io.BytesIO()
    store.export(image, buffer)
    return buffer.getvalue()


def test_ctrl_c_during_a_read_loses_no_byte(store: acikit.Store, big_aci: Path) -> None:
    """A KeyboardInterrupt raised inside ``ImageReader.read`` leaves the reader open, and
    the next read goes on at the first byte the interrupted one did not return: the bytes
    read before and after add up to the export."""
    image = store.import_file(big_aci).image_id
    expected = _export_bytes(store, image)
    interrupted_in_read = False
    for delay in (0.05, 0.02, 0.005, 0.0):
        with store.open(image) as reader:
            got = [reader.read(1 << 20)]
            in_read = threading.Event()

            def interrupt(delay: float = delay, in_read: threading.Event = in_read) -> None:
                in_read.wait()
                time.sleep(delay)
                os.kill(os.getpid(), signal.SIGINT)

            killer = threading.Thread(target=interrupt)
            killer.start()
            try:
                try:
                    in_read.set()
                    got.append(reader.read())  # the rest, in one long read
                except KeyboardInterrupt:
                    interrupted_in_read = True
                killer.join()
                time.sleep(0.2)  # a signal that came after the read lands here
            except KeyboardInterrupt:
                killer.join()
                continue  # the read finished first: try again with an earlier signal
            assert interrupted_in_read and not reader.closed
            while chunk := reader.read(3 << 20):
                got.append(chunk)
            data = b"".join(got)
            assert len(data) == len(expected) and data == expected
            break
    assert interrupted_in_read, "no read was long enough to interrupt"


def test_cancelling_an_async_read_loses_no_byte(store: acikit.Store, big_aci: Path) -> None:
    image = store.import_file(big_aci).image_id
    expected = _export_bytes(store, image)

    async def main() -> tuple[bytes, bool]:
        async with await acikit.AsyncStore.connect(store.path) as astore:
            async with await astore.open(image) as reader:
                got = [await reader.read(1 << 20)]
                task = asyncio.ensure_future(reader.read())  # the rest, in one long read
                await asyncio.sleep(0.01)
                task.cancel()
                try:
                    got.append(await task)
                    cancelled = False
                except asyncio.CancelledError:
                    cancelled = True
                while chunk := await reader.read(3 << 20):
                    got.append(chunk)
                return b"".join(got), cancelled

    data, cancelled = asyncio.run(main())
    assert cancelled and data == expected
