"""Rich records: images and manifests, with readable reprs and HTML for Jupyter."""

from __future__ import annotations

import dataclasses
import datetime
import html
import json
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple

__all__ = [
    "App",
    "Dependency",
    "EventHandler",
    "Image",
    "ImageList",
    "Isolator",
    "Manifest",
    "MountPoint",
    "Port",
]


def _utc(ms: int) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.timezone.utc)


def _labels(items: Iterable[Mapping[str, str]]) -> Dict[str, str]:
    return {item["name"]: item["value"] for item in items}


def _size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def _short(image_id: str) -> str:
    return image_id[:19] if len(image_id) > 19 else image_id


class Image:
    """An image in a store. Equal (and hashed) by image ID."""

    _COLUMNS = ("name", "labels", "id", "size", "imported_at")

    def __init__(self, record: Mapping[str, Any]) -> None:
        self.id: str = record["image_id"]
        self.name: str = record["name"]
        self.labels: Dict[str, str] = _labels(record["labels"])
        self.size: int = record["tar_size"]
        self.archive_size: int = record["archive_size"]
        self.entries: int = record["entries"]
        self.imported_at: datetime.datetime = _utc(record["imported_at_ms"])
        self.last_used_at: datetime.datetime = _utc(record["last_used_at_ms"])
        self.origin: Optional[str] = record.get("origin")

    @property
    def version(self) -> Optional[str]:
        """The ``version`` label, if any."""
        return self.labels.get("version")

    def to_dict(self) -> Dict[str, Any]:
        """The record as a plain dict (dates as ``datetime``)."""
        return {
            "id": self.id,
            "name": self.name,
            "labels": dict(self.labels),
            "size": self.size,
            "archive_size": self.archive_size,
            "entries": self.entries,
            "imported_at": self.imported_at,
            "last_used_at": self.last_used_at,
            "origin": self.origin,
        }

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Image) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __repr__(self) -> str:
        version = f":{self.version}" if self.version else ""
        return f"<Image {self.name}{version} {_short(self.id)} {_size(self.size)}>"

    def _row(self) -> str:
        labels = ", ".join(f"{k}={v}" for k, v in self.labels.items())
        cells = (
            self.name,
            labels,
            _short(self.id),
            _size(self.size),
            self.imported_at.strftime("%Y-%m-%d %H:%M:%S UTC"),
        )
        return "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>"

    @classmethod
    def _header(cls) -> str:
        return "<tr>" + "".join(f"<th>{c}</th>" for c in cls._COLUMNS) + "</tr>"

    def _repr_html_(self) -> str:
        return f"<table>{self._header()}{self._row()}</table>"


class ImageList(List[Image]):
    """A list of images, shown as a table in Jupyter."""

    def __repr__(self) -> str:
        return f"ImageList({list.__repr__(self)})"

    def _repr_html_(self) -> str:
        rows = "".join(image._row() for image in self)
        return f"<table>{Image._header()}{rows}</table><p>{len(self)} image(s)</p>"


@dataclasses.dataclass(frozen=True)
class EventHandler:
    """A command run at an app's ``pre-start`` or ``post-stop`` (``name``)."""

    name: str
    exec: Tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Isolator:
    """An isolator of an app: its ``name`` (``resource/cpu``...) and ``value`` (its JSON)."""

    name: str
    value: Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class MountPoint:
    """A place in the app's rootfs where a volume is mounted."""

    name: str
    path: str
    read_only: bool = False


@dataclasses.dataclass(frozen=True)
class Port:
    """A port the app listens on (``count`` ports from ``port``)."""

    name: str
    port: int
    protocol: str
    count: int = 1
    socket_activated: bool = False


@dataclasses.dataclass(frozen=True)
class App:
    """The app of a manifest: what to run (``exec``), as whom, in which environment."""

    exec: Tuple[str, ...]
    user: str
    group: str
    supplementary_gids: Tuple[int, ...] = ()
    event_handlers: Tuple[EventHandler, ...] = ()
    working_directory: Optional[str] = None
    environment: Dict[str, str] = dataclasses.field(default_factory=dict)
    isolators: Tuple[Isolator, ...] = ()
    mount_points: Tuple[MountPoint, ...] = ()
    ports: Tuple[Port, ...] = ()

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> "App":
        """The app of the manifest JSON ``data["app"]``."""
        return cls(
            exec=tuple(data.get("exec") or ()),
            user=str(data.get("user", "")),
            group=str(data.get("group", "")),
            supplementary_gids=tuple(
                data.get("supplementaryGIDs") or data.get("supplementaryGids") or ()
            ),
            event_handlers=tuple(
                EventHandler(h["name"], tuple(h.get("exec") or ()))
                for h in data.get("eventHandlers") or ()
            ),
            working_directory=data.get("workingDirectory"),
            environment=_labels(data.get("environment") or []),
            isolators=tuple(
                Isolator(i["name"], dict(i.get("value") or {})) for i in data.get("isolators") or ()
            ),
            mount_points=tuple(
                MountPoint(m["name"], m["path"], bool(m.get("readOnly", False)))
                for m in data.get("mountPoints") or ()
            ),
            ports=tuple(
                Port(
                    p["name"],
                    int(p["port"]),
                    p.get("protocol", ""),
                    int(p.get("count", 1)),
                    bool(p.get("socketActivated", False)),
                )
                for p in data.get("ports") or ()
            ),
        )


@dataclasses.dataclass(frozen=True)
class Dependency:
    """An image a manifest depends on: by name (and labels), optionally pinned by ID."""

    image_name: str
    image_id: Optional[str] = None
    labels: Dict[str, str] = dataclasses.field(default_factory=dict)
    size: Optional[int] = None

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> "Dependency":
        """The dependency of the manifest JSON ``data`` (one of ``dependencies``)."""
        return cls(
            data["imageName"],
            data.get("imageID"),
            _labels(data.get("labels") or []),
            data.get("size"),
        )


class Manifest:
    """An image manifest: typed attributes over its JSON; ``raw`` is the bytes as stored.
    Equal (and hashed) by image ID when known, else by its bytes."""

    def __init__(self, raw: bytes, image_id: Optional[str] = None) -> None:
        self.raw = bytes(raw)
        self.image_id = image_id
        data: Dict[str, Any] = json.loads(self.raw)
        self._data = data
        self.name: str = data["name"]
        self.ac_version: str = data.get("acVersion", "")
        self.labels: Dict[str, str] = _labels(data.get("labels") or [])
        app = data.get("app")
        self.app: Optional[App] = None if app is None else App.parse(app)
        self.dependencies: Tuple[Dependency, ...] = tuple(
            Dependency.parse(d) for d in data.get("dependencies") or ()
        )
        self.annotations: Dict[str, str] = _labels(data.get("annotations") or [])
        self.path_whitelist: List[str] = list(data.get("pathWhitelist") or [])

    def to_dict(self) -> Dict[str, Any]:
        """The manifest's JSON as a dict."""
        return json.loads(self.raw)  # type: ignore[no-any-return]

    def _key(self) -> object:
        return self.image_id if self.image_id is not None else self.raw

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Manifest) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        labels = ", ".join(f"{k}={v}" for k, v in self.labels.items())
        return f"<Manifest {self.name} [{labels}]>"

    def _repr_html_(self) -> str:
        rows = [("name", self.name)] + [(f"label {k}", v) for k, v in self.labels.items()]
        if self.app is not None:
            rows.append(("exec", " ".join(self.app.exec)))
        for dep in self.dependencies:
            rows.append(("dependency", dep.image_name))
        body = "".join(
            f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows
        )
        return f"<table>{body}</table>"
