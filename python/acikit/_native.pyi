"""Stubs of the native module ``acikit._native`` (PyO3): the Python layer's building blocks."""

from typing import Any, Callable, List, Optional, Tuple, final

__all__ = [
    "__version__",
    "PHASES",
    "EXPORT_COMPRESSIONS",
    "BUILD_COMPRESSIONS",
    "STRATEGIES",
    "ERROR_CODES",
    "Call",
    "Store",
    "ImageReader",
    "Server",
    "inspect",
    "build",
    "sign",
    "discover",
    "push",
    "serve",
]

__version__: str
PHASES: List[str]
EXPORT_COMPRESSIONS: List[str]
BUILD_COMPRESSIONS: List[str]
STRATEGIES: List[str]
ERROR_CODES: List[Tuple[str, str, bool]]

_Progress = Optional[Callable[[str, int, Optional[int]], None]]
_Pairs = List[Tuple[str, str]]

@final
class Call:
    def wait(self) -> Any: ...
    def start(self, done: Callable[[bool, Any], None]) -> None: ...
    def cancel(self) -> None: ...

@final
class Store:
    @staticmethod
    def open(
        path: Optional[str] = None, database: Optional[str] = None, read_only: bool = False
    ) -> Call: ...
    @property
    def path(self) -> str: ...
    @property
    def auth_config_path(self) -> str: ...
    def import_file(
        self,
        path: str,
        origin: Optional[str] = None,
        original: bool = False,
        progress: _Progress = None,
    ) -> Call: ...
    def fetch(
        self,
        source: str,
        labels: _Pairs,
        insecure: str,
        port: Optional[int],
        resolve: _Pairs,
        ca_certs: List[str],
        trust_keys: bool,
        dependencies: bool,
        auth_config: Optional[str] = None,
        progress: _Progress = None,
    ) -> Call: ...
    def export(
        self, image: str, dest: str, compression: str, progress: _Progress = None
    ) -> Call: ...
    def export_to_file(
        self, image: str, file: Any, compression: str, progress: _Progress = None
    ) -> Call: ...
    def open_reader(self, image: str) -> Call: ...
    def render(
        self,
        image: str,
        dest: str,
        strategy: str,
        skip_unprivileged: bool = False,
        progress: _Progress = None,
    ) -> Call: ...
    def release(self, target: str) -> Call: ...
    def list(self) -> Call: ...
    def find(self, name: str, labels: _Pairs) -> Call: ...
    def get(self, id: str) -> Call: ...
    def manifest(self, image: str) -> Call: ...
    def remove(self, image: str) -> Call: ...
    def gc(self, progress: _Progress = None) -> Call: ...
    def compact_originals(self, progress: _Progress = None) -> Call: ...
    def original(self, image: str) -> Call: ...
    def fsck(self, repair: bool = False, progress: _Progress = None) -> Call: ...
    def stats(self) -> Call: ...
    def trust_add(self, key: bytes, prefix: Optional[str] = None) -> Call: ...
    def trust_list(self) -> Call: ...
    def trust_remove(self, fingerprint: str) -> Call: ...
    def close(self) -> Call: ...

@final
class ImageReader:
    @property
    def size(self) -> int: ...
    def read(self, size: int = ...) -> bytes: ...
    def read_call(self, size: int = ...) -> Call: ...
    def unread(self, data: bytes) -> None: ...
    def close(self) -> None: ...

@final
class Server:
    @property
    def address(self) -> str: ...
    @property
    def running(self) -> bool: ...
    def stop(self, grace: float = 5.0) -> Call: ...

def inspect(path: str, progress: _Progress = None) -> Call: ...
def build(
    layout: str,
    out: str,
    compression: str,
    mtime: Optional[int] = None,
    progress: _Progress = None,
) -> Call: ...
def sign(
    path: str, key: bytes, passphrase: Optional[str] = None, progress: _Progress = None
) -> Call: ...
def discover(
    name: str,
    labels: _Pairs,
    insecure: str,
    port: Optional[int],
    resolve: _Pairs,
    ca_certs: List[str],
    pubkeys: bool = True,
    auth_config: Optional[str] = None,
    progress: _Progress = None,
) -> Call: ...
def push(
    url: str,
    path: str,
    token: str,
    signature: Optional[bytes] = None,
    insecure: str = ...,
    ca_certs: List[str] = ...,
    auth_config: Optional[str] = None,
    progress: _Progress = None,
) -> Call: ...
def serve(
    store: Store,
    listen: str,
    push_token: Optional[str] = None,
    require_signature: bool = False,
    hosts: List[str] = ...,
) -> Call: ...
