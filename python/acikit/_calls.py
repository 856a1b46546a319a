"""Running a native call: blocking for the sync API, awaited for the async one."""

from __future__ import annotations

from typing import Any, Callable, Generic, Optional, TypeVar

from . import _native
from ._progress import NativeCallback, ProgressArg, native_callback

__all__ = ["Op", "await_call"]

T = TypeVar("T")


async def await_call(call: _native.Call, undo: Optional[Callable[[Any], None]] = None) -> Any:
    """Awaits a native call. Cancelling the awaiting task cancels the Rust work and
    waits for it to end (so it leaves nothing behind) before the cancellation goes on;
    if the work finished all the same, ``undo`` gets its result (a read puts its bytes
    back)."""
    # Imported here, not at the top: only the async API needs asyncio, which is already
    # imported by then, and `import acikit` stays fast for scripts (asyncio costs ~80 ms).
    import asyncio

    loop = asyncio.get_running_loop()
    future: asyncio.Future[Any] = loop.create_future()

    def settle(ok: bool, value: Any) -> None:
        if future.done():
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def done(ok: bool, value: Any) -> None:  # called from a worker thread
        try:
            loop.call_soon_threadsafe(settle, ok, value)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    call.start(done)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        call.cancel()
        await asyncio.wait([future])
        if not future.cancelled() and future.exception() is None and undo is not None:
            undo(future.result())
        raise


class Op(Generic[T]):
    """One operation: how to make its native call (given the progress callback) and how to
    turn the native result into the Python one."""

    def __init__(
        self,
        make: Callable[[Optional[NativeCallback]], _native.Call],
        convert: Callable[[Any], T],
        progress: ProgressArg = None,
    ) -> None:
        self._make = make
        self._convert = convert
        self._progress = progress

    def run(self) -> T:
        """Runs it blocking (GIL released; Ctrl-C cancels it and raises KeyboardInterrupt)."""
        with native_callback(self._progress) as callback:
            return self._convert(self._make(callback).wait())

    async def run_async(self) -> T:
        """Awaits it (cancelling the task cancels it)."""
        with native_callback(self._progress) as callback:
            return self._convert(await await_call(self._make(callback)))
