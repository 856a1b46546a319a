// Original-byte recording (`importFile(path, { original: true })`), `original()`,
// `compactOriginals()` and `gc()` compacting, on an archive written by GNU gzip.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';

import { NotFoundError, Store, build, validate } from '../index.mjs';
import { makeImage, tempDir } from './helpers.mjs';

/** An image archive compressed by the `gzip` CLI (`-9`), which our exports never write. */
async function gnuGzipImage(dir) {
  await makeImage(dir, { name: 'example.com/original', file: 'first.tar' });
  const layout = join(dir, 'layout-first.tar');
  const lines = [];
  for (let n = 0; n < 40000; n++) lines.push(`line ${n}: ${(n * 7919) % 104729} of the original archive\n`);
  await writeFile(join(layout, 'rootfs/etc/lines'), lines.join(''));
  const tar = join(dir, 'original.tar');
  const { id } = await build(layout, tar, { compression: 'none' });
  const path = join(dir, 'original.aci');
  await writeFile(path, execFileSync('gzip', ['-9', '-c', tar], { maxBuffer: 1 << 28 }));
  assert.equal((await validate(path)).compression, 'gzip');
  return { path, tar, id, bytes: await readFile(path) };
}

async function exportedOriginal(store, id, dest) {
  await store.export(id, dest, { compression: 'original' });
  return readFile(dest);
}

test('a GNU gzip original is kept pending, then compacted, and exported byte for byte', async (t) => {
  const dir = await tempDir(t);
  const { path, id, bytes } = await gnuGzipImage(dir);
  const store = await Store.open(join(dir, 'store'));
  t.after(() => store.close());

  assert.equal((await store.importFile(path, { original: true })).id, id);
  const kept = await store.original(id);
  assert.equal(kept.form, 'kept');
  assert.equal(kept.pending, true);
  assert.equal(kept.compression, 'gzip');
  assert.equal(kept.size, bytes.length);
  assert.equal(kept.keptBytes, bytes.length);
  assert.equal(kept.sha256, createHash('sha256').update(bytes).digest('hex'));
  assert.equal(kept.reason, null);
  assert.deepEqual(await exportedOriginal(store, id, join(dir, 'before.aci')), bytes);
  let stats = await store.stats();
  assert.equal(stats.originalRecords, 1);
  assert.equal(stats.originalCompressedBytes, bytes.length);
  assert.equal(stats.originalKeptBytes, bytes.length);
  assert.deepEqual(stats.originalImages, [{ id, original: kept }]);

  const events = [];
  const done = await store.compactOriginals({ onProgress: (e) => events.push(e) });
  assert.equal(done.compacted, 1);
  assert.equal(done.kept, 0);
  assert.ok(done.bytesFreed > 0);
  assert.ok(events.length > 0 && events.every((e) => e.phase === 'original'));
  assert.equal(events.at(-1).total, bytes.length);

  const compact = await store.original(id);
  assert.equal(compact.form, 'gzip');
  assert.equal(compact.pending, false);
  assert.equal(compact.size, bytes.length);
  assert.equal(compact.sha256, kept.sha256);
  assert.ok(compact.keptBytes > 0 && compact.keptBytes < bytes.length / 10, `${compact.keptBytes}`);
  assert.deepEqual(await exportedOriginal(store, id, join(dir, 'after.aci')), bytes);
  stats = await store.stats();
  assert.equal(stats.originalRecords, 1);
  assert.equal(stats.originalCompressedBytes, bytes.length);
  assert.equal(stats.originalKeptBytes, compact.keptBytes);
  assert.deepEqual(stats.originalImages, [{ id, original: compact }]);
  assert.deepEqual(await store.compactOriginals(), { compacted: 0, kept: 0, bytesFreed: 0 });
});

test('no original without the option; a tar original is form none', async (t) => {
  const dir = await tempDir(t);
  const { path, tar, id } = await gnuGzipImage(dir);
  const store = await Store.open(join(dir, 'store'));
  t.after(() => store.close());

  await assert.rejects(store.importFile(path, { original: 'yes' }), TypeError);
  assert.deepEqual(await store.list(), []);
  await store.importFile(path);
  assert.equal(await store.original(id), null);
  await assert.rejects(store.export(id, join(dir, 'x.aci'), { compression: 'original' }), NotFoundError);
  await store.remove(id);

  await store.importFile(tar, { original: true });
  const info = await store.original(id);
  assert.equal(info.form, 'none');
  assert.equal(info.pending, false);
  assert.equal(info.keptBytes, 0);
  await assert.rejects(store.original(`sha512-${'0'.repeat(32)}`), NotFoundError);
});

test('gc compacts a pending original', async (t) => {
  const dir = await tempDir(t);
  const { path, id } = await gnuGzipImage(dir);
  const store = await Store.open(join(dir, 'store'));
  t.after(() => store.close());

  await store.importFile(path, { original: true });
  const report = await store.gc();
  assert.equal(report.originalsCompacted, 1);
  assert.equal(report.originalsKept, 0);
  assert.ok(report.originalBytesFreed > 0);
  const info = await store.original(id);
  assert.equal(info.form, 'gzip');
  assert.equal(info.pending, false);
  assert.equal((await store.gc()).originalsCompacted, 0);
});

test('an aborted compaction leaves the original pending', async (t) => {
  const dir = await tempDir(t);
  const { path, id, bytes } = await gnuGzipImage(dir);
  const store = await Store.open(join(dir, 'store'));
  t.after(() => store.close());
  await store.importFile(path, { original: true });

  // Aborted before the call: the core sees the cancellation before compacting anything.
  // (Progress events reach JS asynchronously, so an abort from `onProgress` may come after
  // a 200 KB compaction is done; the sync Python suite cancels one from its first event.)
  const controller = new AbortController();
  controller.abort(new Error('stop'));
  await assert.rejects(store.compactOriginals({ signal: controller.signal }), (err) => {
    assert.equal(err.name, 'AbortError');
    assert.equal(err.code, 'cancelled');
    return true;
  });
  const info = await store.original(id);
  assert.equal(info.form, 'kept');
  assert.equal(info.pending, true);
  assert.deepEqual(await exportedOriginal(store, id, join(dir, 'x.aci')), bytes);
  assert.equal((await store.compactOriginals()).compacted, 1);
});
