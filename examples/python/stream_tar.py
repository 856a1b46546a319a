"""List the files of an image in a store without a temporary file, sync and async.

Usage: python stream_tar.py STORE IMAGE   (IMAGE: an ID, an ID prefix or NAME[:VERSION])
"""

from __future__ import annotations

import asyncio
import sys
import tarfile

import acikit


def list_files(store_dir: str, image: str) -> list[str]:
    """The member names of the image's canonical tar, streamed through ``Store.open``."""
    with acikit.Store(store_dir, read_only=True) as store:
        with store.open(image) as reader, tarfile.open(fileobj=reader, mode="r|") as tar:
            return [member.name for member in tar]


async def tar_size(store_dir: str, image: str) -> int:
    """The size of the canonical tar, counted while streaming it with ``AsyncStore``."""
    store = await acikit.AsyncStore.connect(store_dir, read_only=True)
    total = 0
    async with await store.open(image) as reader:
        while chunk := await reader.read(1 << 20):
            total += len(chunk)
    await store.close()
    return total


if __name__ == "__main__":
    try:
        names = list_files(sys.argv[1], sys.argv[2])
    except acikit.NotFound as err:
        sys.exit(f"{err.code}: {err}")
    print("\n".join(names))
    print(asyncio.run(tar_size(sys.argv[1], sys.argv[2])), "bytes")
