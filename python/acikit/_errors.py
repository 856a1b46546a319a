"""The exceptions: ``AcikitError`` and one subclass per error category of the core.

Every exception carries the core's stable ``code`` (e.g. ``"not_found"``), its
``category``, whether retrying may help (``retryable``), the ``message``, the archive
``entry`` it concerns (if any) and, for ``invalid_manifest``, the ``problems`` (each with
its JSON ``path``, ``code`` and ``message``). Where a builtin exception fits, the class
also subclasses it, so ``except FileNotFoundError`` catches a missing image.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Type

__all__ = [
    "AcikitError",
    "InputError",
    "AmbiguousId",
    "InvalidImage",
    "NotFound",
    "ConflictError",
    "IntegrityError",
    "SignatureError",
    "NetworkError",
    "DiscoveryError",
    "StorageError",
    "PrivilegeError",
    "UnsupportedError",
    "Cancelled",
    "InternalError",
]


class AcikitError(Exception):
    """An error of the acikit core (see ``docs/ERRORS.md`` for every code)."""

    #: The category every instance of this class belongs to.
    category_code: str = ""

    code: str
    category: str
    retryable: bool
    message: str
    entry: Optional[str]
    problems: List[Dict[str, str]]

    def __init__(
        self,
        message: str,
        *,
        code: str = "internal",
        category: Optional[str] = None,
        retryable: bool = False,
        entry: Optional[str] = None,
        problems: Optional[List[Dict[str, str]]] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.category = category or self.category_code
        self.retryable = retryable
        self.entry = entry
        self.problems = list(problems or [])

    def __str__(self) -> str:
        text = self.message
        if self.entry is not None and self.entry not in text:
            text = f"{text} (entry {self.entry!r})"
        return text

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class InputError(AcikitError, ValueError):
    """An argument or value that cannot be used (fix the call)."""

    category_code = "input"


class AmbiguousId(InputError):
    """An ID prefix or a name matches several images (code ``ambiguous_image``)."""


class InvalidImage(AcikitError, ValueError):
    """The archive or manifest is not a valid image (fix the image)."""

    category_code = "invalid_image"


class NotFound(AcikitError, FileNotFoundError):
    """What was asked for (a file, an image, a dependency) does not exist."""

    category_code = "not_found"


class ConflictError(AcikitError):
    """The thing is held by something else (e.g. an unreleased run)."""

    category_code = "conflict"


class IntegrityError(AcikitError):
    """Data does not match what it was checked against (a damaged store, a wrong image)."""

    category_code = "integrity"


class SignatureError(AcikitError):
    """A signature, key or security policy refused the operation."""

    category_code = "trust"


class NetworkError(AcikitError, ConnectionError):
    """A request over the network failed or gave no usable answer."""

    category_code = "network"


class DiscoveryError(NetworkError):
    """Meta discovery found no endpoint for a name (code ``discovery_failed``)."""


class StorageError(AcikitError, OSError):
    """The operating system or the SQL index failed (disk, permissions, database)."""

    category_code = "io"


class PrivilegeError(AcikitError, PermissionError):
    """The operation needs privileges the process does not have (or a read-only store)."""

    category_code = "privilege"


class UnsupportedError(AcikitError):
    """The kernel or file system lacks what the operation needs."""

    category_code = "unsupported"


class Cancelled(AcikitError):
    """The operation was cancelled."""

    category_code = "cancelled"


class InternalError(AcikitError, RuntimeError):
    """A bug in acikit (a panicked background task)."""

    category_code = "internal"


_BY_CATEGORY: Dict[str, Type[AcikitError]] = {
    cls.category_code: cls
    for cls in (
        InputError,
        InvalidImage,
        NotFound,
        ConflictError,
        IntegrityError,
        SignatureError,
        NetworkError,
        StorageError,
        PrivilegeError,
        UnsupportedError,
        Cancelled,
        InternalError,
    )
}

# Kinds with a class of their own, under their category's.
_BY_CODE: Dict[str, Type[AcikitError]] = {
    "ambiguous_image": AmbiguousId,
    "discovery_failed": DiscoveryError,
}


def error_class(code: str, category: str) -> Type[AcikitError]:
    """The class of an error of this code and category."""
    return _BY_CODE.get(code) or _BY_CATEGORY.get(category, AcikitError)


def from_native(
    code: str,
    category: str,
    retryable: bool,
    message: str,
    entry: Optional[str],
    problems: List[Dict[str, str]],
) -> AcikitError:
    """The exception of a core error (called by the native module)."""
    cls = error_class(code, category)
    return cls(
        message,
        code=code,
        category=category,
        retryable=retryable,
        entry=entry,
        problems=problems,
    )
