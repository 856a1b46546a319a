"""Build an image layout, check it and import it with the async API (``acikit.aio``),
reading the typed results.

Usage: python aio_build.py LAYOUT_DIR STORE   (LAYOUT_DIR: a ``manifest`` and ``rootfs/``)
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile

import acikit
import acikit.aio


def describe(built: acikit.Built, inspection: acikit.Inspection, imported: acikit.Imported) -> str:
    """One line per result, from their typed attributes."""
    manifest = inspection.manifest
    version = manifest.labels.get("version", "")
    return "\n".join(
        [
            f"built {built.path}: {built.size} bytes ({built.compression}),"
            f" {built.entries} entries",
            f"valid: {manifest.name} {version} {inspection.image_id[:19]}",
            f"imported: {'already there' if imported.already_present else 'new'},"
            f" {imported.new_objects} new objects",
        ]
    )


async def main(layout: str, store_dir: str) -> str:
    with tempfile.TemporaryDirectory() as work:
        out = os.path.join(work, "image.aci")
        built = await acikit.aio.build(layout, out, compression="zstd")
        inspection = await acikit.aio.validate(out)
        async with await acikit.aio.AsyncStore.connect(store_dir) as store:
            imported = await store.import_file(out)
            stats: acikit.StoreStats = await store.stats()
        return describe(built, inspection, imported) + f"\nstore: {stats.images} image(s)"


if __name__ == "__main__":
    try:
        print(asyncio.run(main(sys.argv[1], sys.argv[2])))
    except acikit.AcikitError as err:
        sys.exit(f"{err.code}: {err}")
