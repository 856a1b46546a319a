"""``serve``: an image repository over a store, running in the background (``Server``;
``AsyncServer`` and ``serve_async`` for ``acikit.aio``)."""

from __future__ import annotations

from types import TracebackType
from typing import Iterable, Optional, Type, Union

from . import _native
from ._async_store import AsyncStore
from ._calls import Op
from ._store import Store

__all__ = ["AsyncServer", "Server", "serve", "serve_async"]


class Server:
    """A running image repository: its ``url`` and ``address``; ``stop()`` it, or use it
    as a context manager."""

    def __init__(self, native: _native.Server) -> None:
        self._native = native

    @property
    def address(self) -> str:
        """``ip:port`` it listens on."""
        return self._native.address

    @property
    def port(self) -> int:
        """The port it listens on."""
        return int(self.address.rsplit(":", 1)[1])

    @property
    def url(self) -> str:
        """Its base URL (plain HTTP)."""
        return f"http://{self.address}"

    @property
    def running(self) -> bool:
        """Whether it has not been stopped."""
        return self._native.running

    def stop(self, grace: float = 5.0) -> None:
        """Stops serving (requests in flight get ``grace`` seconds to finish)."""
        Op(lambda cb: self._native.stop(grace), lambda _: None).run()

    def __enter__(self) -> "Server":
        return self

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<Server {self.url} {state}>"


def _serve_op(
    store: Union[Store, AsyncStore],
    listen: str,
    push_token: Optional[str],
    require_signature: bool,
    hosts: Iterable[str],
) -> "Op[_native.Server]":
    native = store._native
    names = list(hosts)
    return Op(
        lambda cb: _native.serve(native, listen, push_token, require_signature, names),
        lambda s: s,
    )


def serve(
    store: Union[Store, AsyncStore],
    listen: str = "127.0.0.1:0",
    *,
    push_token: Optional[str] = None,
    require_signature: bool = False,
    hosts: Iterable[str] = (),
) -> Server:
    """Serves ``store`` as an image repository (meta discovery, images, signatures, keys,
    pushes with ``push_token``) on ``listen`` (port 0: any free port), in the background."""
    return Server(_serve_op(store, listen, push_token, require_signature, hosts).run())


class AsyncServer:
    """The async twin of ``Server`` (``acikit.aio.serve``): ``await server.stop()``, or
    ``async with``; ``url``, ``address``, ``port`` and ``running`` as on ``Server``."""

    def __init__(self, native: _native.Server) -> None:
        self._sync = Server(native)

    @property
    def address(self) -> str:
        """``ip:port`` it listens on."""
        return self._sync.address

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self._sync.port

    @property
    def url(self) -> str:
        """Its base URL (plain HTTP)."""
        return self._sync.url

    @property
    def running(self) -> bool:
        """Whether it has not been stopped."""
        return self._sync.running

    async def stop(self, grace: float = 5.0) -> None:
        """Stops serving (requests in flight get ``grace`` seconds to finish)."""
        native = self._sync._native
        await Op(lambda cb: native.stop(grace), lambda _: None).run_async()

    async def __aenter__(self) -> "AsyncServer":
        return self

    async def __aexit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        await self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<AsyncServer {self.url} {state}>"


async def serve_async(
    store: Union[Store, AsyncStore],
    listen: str = "127.0.0.1:0",
    *,
    push_token: Optional[str] = None,
    require_signature: bool = False,
    hosts: Iterable[str] = (),
) -> AsyncServer:
    """Awaitable ``serve`` (``acikit.aio.serve``): the repository of ``store`` on
    ``listen``, running in the background; stop it with ``await server.stop()``."""
    op = _serve_op(store, listen, push_token, require_signature, hosts)
    return AsyncServer(await op.run_async())
