"""Executes the example notebook top to bottom (nbclient) and checks its outputs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nbformat
from nbclient import NotebookClient


def text_of(cell: Any, mime: str = "text/plain") -> str:
    """Everything a cell printed or displayed as ``mime``."""
    parts = []
    for output in cell.get("outputs", []):
        if output.get("output_type") == "stream":
            parts.append(output.get("text", ""))
        elif mime in output.get("data", {}):
            parts.append(output["data"][mime])
    return "".join(parts)


def main(path: str) -> int:
    notebook_path = Path(path).resolve()
    notebook = nbformat.read(notebook_path, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(
        notebook,
        timeout=300,
        kernel_name="python3",
        resources={"metadata": {"path": str(notebook_path.parent)}},
    )
    client.execute()
    cells = {c["metadata"]["tags"][0]: c for c in notebook.cells if c["cell_type"] == "code"}
    checks = {
        "build": "sha512-" in text_of(cells["build"])
        and "Manifest example.com/hello" in text_of(cells["build"]),
        "serve": "example.com/hello signed: True" in text_of(cells["serve"]),
        "fetch": "verified by 776119d1545adfa86e5737c10c40b7823f7f8ec9" in text_of(cells["fetch"])
        and "Fetched(" in text_of(cells["fetch"])
        and "<caption>Fetched</caption>" in text_of(cells["fetch"], "text/html"),
        "list": "<table>" in text_of(cells["list"], "text/html")
        and "example.com/hello" in text_of(cells["list"], "text/html"),
        "render": "hello from acikit" in text_of(cells["render"])
        and "same image: True" in text_of(cells["render"]),
        "cleanup": "done" in text_of(cells["cleanup"]),
    }
    for name, ok in checks.items():
        print(f"notebook cell {name}: {'ok' if ok else 'FAILED'}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
