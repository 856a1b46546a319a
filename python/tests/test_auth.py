"""Credentials: ``auth_config=`` on fetch, discover and push, and a store's own
``config/auth.json``, against a real in-process HTTP server that records the
``Authorization`` header of every request."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import pytest

import acikit
import acikit.aio

from conftest import TOKEN


class Recorder:
    """A plain HTTP server on 127.0.0.1: ``/hello.aci`` is the image, ``/hello?ac-discovery=1``
    its discovery page; every request's path and ``Authorization`` header are recorded."""

    def __init__(self, aci: Path) -> None:
        self.requests: List[Tuple[str, Optional[str]]] = []
        recorder, image = self, aci.read_bytes()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                recorder.requests.append((self.path, self.headers.get("Authorization")))
                if self.path == "/hello.aci":
                    self.reply(200, "application/octet-stream", image)
                elif self.path.startswith("/hello?ac-discovery=1"):
                    port = recorder.port
                    page = (
                        '<html><head><meta name="ac-discovery" content="example.com '
                        f'http://127.0.0.1:{port}/hello.{{ext}}"></head></html>'
                    )
                    self.reply(200, "text/html", page.encode())
                else:
                    self.reply(404, "text/plain", b"not here")

            def reply(self, status: int, kind: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hello.aci"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def auth_of(self, path: str) -> List[Optional[str]]:
        """The ``Authorization`` headers of the requests for ``path``."""
        return [auth for p, auth in self.requests if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder(small_aci: Path) -> Iterator[Recorder]:
    server = Recorder(small_aci)
    yield server
    server.close()


def write_auth(where: Path, credential: dict[str, str], host: str = "127.0.0.1") -> Path:
    where.parent.mkdir(parents=True, exist_ok=True)
    where.write_text(json.dumps({host: credential}))
    return where


def fetch(
    store: acikit.Store, recorder: Recorder, auth_config: Optional[Path] = None
) -> acikit.Fetched:
    return store.fetch(recorder.url, insecure="http,image", auth_config=auth_config)


def test_fetch_without_a_file_sends_no_credentials(tmp_path: Path, recorder: Recorder) -> None:
    with acikit.Store(tmp_path / "store") as store:
        assert store.auth_config_path == str(tmp_path / "store" / "config" / "auth.json")
        fetched = fetch(store, recorder)
        assert fetched.outcome == "downloaded"
    assert recorder.auth_of("/hello.aci") == [None]


def test_fetch_reads_the_store_auth_config(tmp_path: Path, recorder: Recorder) -> None:
    with acikit.Store(tmp_path / "store") as store:
        write_auth(Path(store.auth_config_path), {"type": "bearer", "token": "store-token"})
        assert fetch(store, recorder).name == "example.com/hello"
    assert recorder.auth_of("/hello.aci") == ["Bearer store-token"]


def test_an_explicit_file_wins_over_the_store_file(tmp_path: Path, recorder: Recorder) -> None:
    given = write_auth(
        tmp_path / "given.json", {"type": "basic", "user": "alice", "password": "s3cret"}
    )
    with acikit.Store(tmp_path / "store") as store:
        write_auth(Path(store.auth_config_path), {"type": "bearer", "token": "store-token"})
        fetch(store, recorder, auth_config=given)
    basic = "Basic " + base64.b64encode(b"alice:s3cret").decode()
    assert recorder.auth_of("/hello.aci") == [basic]


def test_async_fetch_takes_the_file_too(tmp_path: Path, recorder: Recorder) -> None:
    given = write_auth(tmp_path / "given.json", {"type": "bearer", "token": "async-token"})

    async def main() -> None:
        async with await acikit.AsyncStore.connect(tmp_path / "store") as store:
            await store.fetch(recorder.url, insecure="http,image", auth_config=given)

    asyncio.run(main())
    assert recorder.auth_of("/hello.aci") == ["Bearer async-token"]


def test_a_bad_file_is_a_typed_error_naming_it(tmp_path: Path, recorder: Recorder) -> None:
    bad = tmp_path / "bad-auth.json"
    bad.write_text("{not json")
    with acikit.Store(tmp_path / "store") as store:
        with pytest.raises(acikit.InputError) as given:
            fetch(store, recorder, auth_config=bad)
        assert given.value.code == "invalid_argument" and str(bad) in str(given.value)
        with pytest.raises(acikit.NotFound) as missing:
            fetch(store, recorder, auth_config=tmp_path / "missing.json")
        assert "missing.json" in str(missing.value)
        # A bad file of the store's own is an error too (not silently no credentials).
        own = write_auth(Path(store.auth_config_path), {"type": "magic"})
        with pytest.raises(acikit.InputError) as stored:
            fetch(store, recorder)
        assert own.name in str(stored.value) and "config" in str(stored.value)
        assert store.list() == []
    with pytest.raises(acikit.InputError):
        acikit.discover("example.com/hello", auth_config=bad)
    with pytest.raises(acikit.InputError):
        acikit.push(recorder.url, bad, token=TOKEN, insecure="http", auth_config=bad)
    assert recorder.requests == []  # nothing was sent with or without credentials


def test_discover_sends_the_given_credentials_only(tmp_path: Path, recorder: Recorder) -> None:
    given = write_auth(
        tmp_path / "given.json", {"type": "bearer", "token": "discovery-token"}, "example.com"
    )
    address = f"127.0.0.1:{recorder.port}"
    found = acikit.discover(
        "example.com/hello",
        insecure="http",
        port=recorder.port,
        resolve={"example.com": address},
        pubkeys=False,
        auth_config=given,
    )
    assert found.aci_endpoints[0].aci == recorder.url
    plain = asyncio.run(
        acikit.aio.discover(
            "example.com/hello",
            insecure="http",
            port=recorder.port,
            resolve={"example.com": address},
            pubkeys=False,
        )
    )
    assert plain == found
    discovery = [auth for path, auth in recorder.requests if "ac-discovery" in path]
    assert discovery == ["Bearer discovery-token", None]
