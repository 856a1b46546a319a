// Each store operation against a real store folder and real archives.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { readFile, readdir, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { test } from 'node:test';

import { NotFoundError, InputError, Store, imageId, validate } from '../index.mjs';
import { fingerprint, makeImage, publicKey, tempDir } from './helpers.mjs';

test('import, list, get, find, stats', async (t) => {
  const dir = await tempDir(t);
  const { path, id } = await makeImage(dir);
  const store = await Store.open(join(dir, 'store'));
  t.after(() => store.close());
  assert.equal(store.path, join(dir, 'store'));
  assert.equal(store.readOnly, false);

  const imported = await store.importFile(path);
  assert.equal(imported.id, id);
  assert.equal(imported.name, 'example.com/hello');
  assert.equal(imported.alreadyPresent, false);
  assert.equal((await store.importFile(path)).alreadyPresent, true);

  const images = await store.list();
  assert.equal(images.length, 1);
  const [image] = images;
  assert.equal(image.id, id);
  assert.equal(image.labels.version, '1.0.0');
  assert.equal(image.labels.os, 'linux');
  assert.equal(image.size, (await stat(path)).size);
  assert.equal(image.origin, path);
  assert.ok(image.importedAt instanceof Date);
  assert.ok(Math.abs(image.importedAt.getTime() - Date.now()) < 60_000);
  assert.ok(image.lastUsedAt instanceof Date);

  assert.equal((await store.get('example.com/hello:1.0.0')).id, id);
  assert.equal((await store.get(id.slice(0, 20))).id, id);
  assert.equal((await store.get('example.com/hello', { os: 'linux' })).id, id);
  assert.deepEqual((await store.find('example.com/hello')).map((i) => i.id), [id]);
  assert.deepEqual(await store.find('example.com/other'), []);

  const stats = await store.stats();
  assert.equal(stats.images, 1);
  assert.equal(stats.index, 'sqlite');
  assert.equal(stats.logicalBytes, image.size);
});

test('export to a file and to a Writable gives the same bytes, any compression', async (t) => {
  const dir = await tempDir(t);
  const { path, id } = await makeImage(dir, { bigBytes: 300_000 });
  const store = await Store.open(join(dir, 'store'));
  t.after(() => store.close());
  await store.importFile(path);

  const toFile = await store.export(id, join(dir, 'out.aci'));
  assert.equal(toFile.id, id);
  assert.deepEqual(await readFile(join(dir, 'out.aci')), await readFile(path));

  const toStream = await store.export(id, createWriteStream(join(dir, 'stream.aci')));
  assert.equal(toStream.id, id);
  assert.equal(toStream.written, (await stat(path)).size);
  assert.deepEqual(await readFile(join(dir, 'stream.aci')), await readFile(path));

  const gz = await store.export(id, createWriteStream(join(dir, 'out.aci.gz')), { compression: 'gzip' });
  assert.equal(gz.written, (await stat(join(dir, 'out.aci.gz'))).size);
  assert.equal(await imageId(join(dir, 'out.aci.gz')), id);
  assert.equal((await validate(join(dir, 'out.aci.gz'))).compression, 'gzip');

  await assert.rejects(store.export(id, join(dir, 'x.aci'), { compression: 'lz4' }), (err) => {
    assert.ok(err instanceof InputError);
    assert.equal(err.code, 'invalid_argument');
    return true;
  });
});

test('openRead piped through stream.pipeline into a hash gives the image ID', async (t) => {
  const dir = await tempDir(t);
  const { path, id } = await makeImage(dir, { bigBytes: 1_000_000, compression: 'zstd' });
  const store = await Store.open(join(dir, 'store'));
  t.after(() => store.close());
  await store.importFile(path);

  const hash = createHash('sha512');
  await pipeline(store.openRead('example.com/hello'), hash);
  assert.equal(`sha512-${hash.digest('hex')}`, id);

  // Async iteration works too.
  let bytes = 0;
  for await (const chunk of store.openRead(id)) bytes += chunk.length;
  assert.equal(bytes, (await store.get(id)).size);

  // Stopping early (break, destroy) ends the read; the next one is whole again.
  for await (const chunk of store.openRead(id)) {
    assert.ok(chunk.length > 0);
    break;
  }
  const destroyed = store.openRead(id);
  destroyed.once('data', () => destroyed.destroy());
  await new Promise((resolve) => destroyed.once('close', resolve));
  const again = createHash('sha512');
  await pipeline(store.openRead(id), again);
  assert.equal(`sha512-${again.digest('hex')}`, id);

  // A missing image is the stream's error.
  await assert.rejects(pipeline(store.openRead('example.com/missing'), createHash('sha512')), NotFoundError);
});

test('remove, gc and fsck', async (t) => {
  const dir = await tempDir(t);
  // The first has files of its own (large enough to be objects).
  const first = await makeImage(dir, { version: '1.0.0', file: 'a.aci', bigBytes: 1 << 20 });
  const second = await makeImage(dir, { version: '2.0.0', file: 'b.aci' });
  const store = await Store.open(join(dir, 'store'));
  t.after(() => store.close());
  await store.importFile(first.path);
  await store.importFile(second.path);

  // A name both match is refused: rm must not guess.
  await assert.rejects(store.remove('example.com/hello'), (err) => err.code === 'ambiguous_image' && err instanceof InputError);
  const objectsBefore = (await store.stats()).objects;
  assert.equal(await store.remove('example.com/hello:1.0.0'), first.id);
  const objectsAfter = (await store.stats()).objects;
  assert.ok(objectsAfter <= objectsBefore - 8, `${objectsBefore} -> ${objectsAfter}`);
  assert.deepEqual((await store.list()).map((i) => i.id), [second.id]);
  await assert.rejects(store.remove(first.id), NotFoundError);

  const gc = await store.gc();
  // Every count the core's report has, as a number.
  const fields = [
    'objectsRemoved', 'bytesRemoved', 'recipesRemoved', 'stagingRemoved', 'rendersRemoved', 'checkoutsRemoved',
    'pushFilesRemoved', 'deadRunsRemoved', 'originalsCompacted', 'originalsKept', 'originalBytesFreed',
  ];
  assert.deepEqual(Object.keys(gc).sort(), [...fields].sort());
  for (const field of fields) {
    assert.equal(typeof gc[field], 'number', field);
  }
  // remove took the removed image's own objects with it: gc finds nothing left over.
  assert.deepEqual(Object.values(gc), fields.map(() => 0), JSON.stringify(gc));
  // What the image left needs is still there: it exports to its ID.
  const hash = createHash('sha512');
  await pipeline(store.openRead(second.id), hash);
  assert.equal(`sha512-${hash.digest('hex')}`, second.id);

  const fsck = await store.fsck();
  assert.equal(fsck.clean, true);
  assert.equal(fsck.imagesChecked, 1);
  assert.deepEqual(fsck.problems, []);
});

test('trust add, list, remove', async (t) => {
  const dir = await tempDir(t);
  const store = await Store.open(join(dir, 'store'));
  t.after(() => store.close());
  const key = await store.trust.add(publicKey, { prefix: 'example.com' });
  assert.equal(key.fingerprint, fingerprint);
  assert.equal(key.prefix, 'example.com');
  assert.ok(key.createdAt instanceof Date);
  const root = await store.trust.add(Buffer.from(publicKey));
  assert.equal(root.prefix, null);
  assert.equal((await store.trust.list()).length, 2);
  const removed = await store.trust.remove(fingerprint);
  assert.equal(removed.length, 2);
  assert.deepEqual(await store.trust.list(), []);
  await assert.rejects(store.trust.add('not a key'), (err) => err.code === 'bad_openpgp' && err.category === 'trust');
});

test('render a run, read it, release it (and Symbol.asyncDispose)', async (t) => {
  const dir = await tempDir(t);
  const { path, id } = await makeImage(dir);
  const store = await Store.open(join(dir, 'store'));
  t.after(() => store.close());
  await store.importFile(path);

  const events = [];
  const run = await store.render('example.com/hello', join(dir, 'run'), {
    strategy: 'copy',
    onProgress: (e) => events.push(e),
  });
  assert.equal(run.id, id);
  assert.equal(run.strategy, 'copy');
  assert.deepEqual(run.layers, [id]);
  assert.equal(await readFile(join(dir, 'run/etc/hello'), 'utf8'), 'hello 1.0.0\n');
  assert.ok(events.length > 0);
  await run[Symbol.asyncDispose]();
  await assert.rejects(stat(join(dir, 'run')), { code: 'ENOENT' });
  await run.release(); // twice is harmless

  await assert.rejects(store.render(id, join(dir, 'run2'), { strategy: 'teleport' }), InputError);
  assert.deepEqual(await readdir(dir).then((names) => names.includes('run2')), false);
});
