"""Progress events, and the ``progress=`` argument of long calls."""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Dict, Iterator, NamedTuple, Optional, Union

__all__ = ["Progress", "ProgressArg", "native_callback"]


class Progress(NamedTuple):
    """One progress event: the ``phase`` (``"import"``, ``"download"``, ...), units
    ``done`` so far and the ``total`` when known."""

    phase: str
    done: int
    total: Optional[int]


#: What ``progress=`` takes: a callable receiving ``Progress`` events, ``True`` for a
#: ``tqdm.auto`` bar (``pip install acikit[progress]``), or ``None``/``False``.
ProgressArg = Union[Callable[[Progress], Any], bool, None]

NativeCallback = Callable[[str, int, Optional[int]], None]

# Phases counted in bytes (the rest count entries or images).
_BYTE_PHASES = {"import", "commit", "export", "download", "build", "inspect", "sign", "push"}


class _Bars:
    """One ``tqdm.auto`` bar per phase, the previous one closed when the phase changes."""

    def __init__(self) -> None:
        from tqdm.auto import tqdm  # type: ignore[import-untyped,unused-ignore]

        self._tqdm = tqdm
        self._bar: Any = None
        self._phase: Optional[str] = None

    def __call__(self, phase: str, done: int, total: Optional[int]) -> None:
        if phase != self._phase:
            self.close()
            self._phase = phase
            options: Dict[str, Any] = {"desc": phase, "total": total}
            if phase in _BYTE_PHASES:
                options.update(unit="B", unit_scale=True, unit_divisor=1024)
            self._bar = self._tqdm(**options)
        bar = self._bar
        if total is not None and bar.total != total:
            bar.total = total
        bar.update(done - bar.n)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


@contextlib.contextmanager
def native_callback(progress: ProgressArg) -> Iterator[Optional[NativeCallback]]:
    """The callback the native module calls as ``(phase, done, total)``, for the
    duration of one call."""
    if progress is None or progress is False:
        yield None
        return
    if progress is True:
        bars = _Bars()
        try:
            yield bars
        finally:
            bars.close()
        return
    if not callable(progress):
        raise TypeError("progress must be a callable, True or None")
    user = progress

    def forward(phase: str, done: int, total: Optional[int]) -> None:
        user(Progress(phase, done, total))

    yield forward
