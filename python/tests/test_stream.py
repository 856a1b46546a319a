"""``open()`` streams a 200 MB image with flat memory (measured in a fresh process)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import acikit

from conftest import write_layout

READER = """
import json, resource, sys
import acikit
store = acikit.Store(sys.argv[1], read_only=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
total = 0
with store.open(sys.argv[2]) as reader:
    while chunk := reader.read(1 << 20):
        total += len(chunk)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"total": total, "before_kib": before, "peak_kib": peak}))
"""


def test_open_streams_200_mb_with_flat_memory(tmp_path: Path) -> None:
    layout = write_layout(tmp_path, "example.com/large", "1.0.0", payload=200 << 20)
    aci = tmp_path / "large.aci"
    acikit.build(layout, aci, compression="none")
    store_dir = tmp_path / "store"
    with acikit.Store(store_dir) as store:
        imported = store.import_file(aci)
    aci.unlink()
    (layout / "rootfs" / "payload").unlink()
    result = subprocess.run(
        [sys.executable, "-c", READER, str(store_dir), imported.image_id],
        check=True,
        capture_output=True,
        text=True,
    )
    measured = json.loads(result.stdout)
    assert measured["total"] == imported.tar_size > 200 << 20
    grown_mib = (measured["peak_kib"] - measured["before_kib"]) / 1024
    # Reading 200 MB grows the process by a few chunks at most (the baseline is the
    # interpreter and the native module; bench/python.sh measures the release build's peak).
    assert grown_mib < 40, measured
