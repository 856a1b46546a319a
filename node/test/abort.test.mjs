// Cancellation through AbortSignal, progress events, and a loop that never blocks.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { join } from 'node:path';
import { test } from 'node:test';

import { AcikitError, CancelledError, Store, push, serve, sign } from '../index.mjs';
import { makeImage, publicKey, secretKey, tempDir } from './helpers.mjs';

/** Files left under the store folder's `objects` and `tmp` (staging): none after a cancelled first import. */
async function objectFiles(store) {
  const found = [];
  for (const folder of ['objects', 'tmp']) {
    const files = await readdir(join(store.path, folder), { recursive: true, withFileTypes: true }).catch(() => []);
    found.push(...files.filter((f) => f.isFile()).map((f) => join(f.parentPath ?? f.path, f.name)));
  }
  return found;
}

/** Checks `err` is the cancellation error of an aborted call. */
function isAbort(err) {
  assert.equal(err.name, 'AbortError');
  assert.equal(err.code, 'cancelled');
  assert.equal(err.category, 'cancelled');
  assert.ok(err instanceof CancelledError);
  assert.ok(err instanceof AcikitError);
  return true;
}

test('aborting mid-import rejects with AbortError and leaves nothing in the store', async (t) => {
  const dir = await tempDir(t);
  const { path } = await makeImage(dir, { bigBytes: 16_000_000 });
  const store = await Store.open(join(dir, 'store'));
  t.after(() => store.close());
  const controller = new AbortController();
  const events = [];
  await assert.rejects(
    store.importFile(path, {
      signal: controller.signal,
      onProgress: (e) => {
        events.push(e);
        if (e.phase === 'import' && e.done > 0) controller.abort(new Error('stop'));
      },
    }),
    (err) => isAbort(err) && err.cause?.message === 'stop',
  );
  assert.ok(events.length > 0, 'the import reported progress before the abort');
  assert.deepEqual(await store.list(), []);
  assert.deepEqual(await objectFiles(store), []);
  assert.equal((await store.stats()).images, 0);
  assert.equal((await store.fsck()).clean, true);
  // The same import without the signal works.
  assert.equal((await store.importFile(path)).alreadyPresent, false);
});

test('aborting an export into a Writable rejects with AbortError', async (t) => {
  const dir = await tempDir(t);
  const { path, id } = await makeImage(dir, { bigBytes: 16_000_000 });
  const store = await Store.open(join(dir, 'store'));
  t.after(() => store.close());
  await store.importFile(path);
  const controller = new AbortController();
  let received = 0;
  const sink = new Writable({
    write(chunk, _encoding, callback) {
      received += chunk.length;
      setTimeout(callback, 1); // a slow consumer
    },
  });
  await assert.rejects(
    store.export(id, sink, {
      signal: controller.signal,
      onProgress: (e) => {
        if (e.done > 0) controller.abort();
      },
    }),
    isAbort,
  );
  assert.ok(received < (await store.get(id)).size, `${received} bytes reached the sink`);
  // The store is untouched: the image still reads back whole.
  const hash = createHash('sha512');
  await pipeline(store.openRead(id), hash);
  assert.equal(`sha512-${hash.digest('hex')}`, id);
});

test('an already aborted signal rejects before anything is done', async (t) => {
  const dir = await tempDir(t);
  const { path } = await makeImage(dir);
  const store = await Store.open(join(dir, 'store'));
  t.after(() => store.close());
  await assert.rejects(store.importFile(path, { signal: AbortSignal.abort() }), isAbort);
  assert.deepEqual(await store.list(), []);
  await assert.rejects(store.importFile(path, { signal: 'nope' }), TypeError);
});

test('progress events: phases by the core names, done increasing up to total', async (t) => {
  const dir = await tempDir(t);
  const { path, id } = await makeImage(dir, { bigBytes: 8_000_000 });
  const store = await Store.open(join(dir, 'store'));
  t.after(() => store.close());
  const events = [];
  await store.importFile(path, { onProgress: (e) => events.push(e) });
  const imports = events.filter((e) => e.phase === 'import');
  assert.ok(imports.length >= 2, `several import events (${JSON.stringify(events)})`);
  for (const e of events) {
    assert.deepEqual(Object.keys(e).sort(), ['done', 'phase', 'total']);
    assert.ok(['import', 'commit'].includes(e.phase), e.phase);
    assert.ok(e.total === null || e.done <= e.total);
  }
  for (let i = 1; i < imports.length; i++) assert.ok(imports[i].done >= imports[i - 1].done);

  const exported = [];
  await store.export(id, join(dir, 'out.aci'), { onProgress: (e) => exported.push(e) });
  assert.ok(exported.length >= 1);
  const last = exported.at(-1);
  assert.equal(last.phase, 'export');
  assert.equal(last.done, last.total);
});

test('a timer keeps firing during a long import (the loop never blocks)', async (t) => {
  const dir = await tempDir(t);
  const { path } = await makeImage(dir, { bigBytes: 48_000_000 });
  const store = await Store.open(join(dir, 'store'));
  t.after(() => store.close());
  let last = performance.now();
  let worstGap = 0;
  let ticks = 0;
  const timer = setInterval(() => {
    const now = performance.now();
    worstGap = Math.max(worstGap, now - last);
    last = now;
    ticks++;
  }, 5);
  const started = performance.now();
  try {
    await store.importFile(path);
  } finally {
    clearInterval(timer);
  }
  const took = performance.now() - started;
  assert.ok(took > 100, `the import took long enough to tell (${took} ms)`);
  assert.ok(ticks >= took / 5 / 4, `${ticks} ticks in ${took} ms`);
  assert.ok(worstGap < 250, `the longest gap between ticks was ${worstGap} ms`);
});

test('aborting mid-fetch rejects with AbortError and leaves nothing in the store', async (t) => {
  const dir = await tempDir(t);
  const { path } = await makeImage(dir, { bigBytes: 16_000_000 });
  const signed = await sign(path, secretKey);
  const repository = await Store.open(join(dir, 'repository'));
  t.after(() => repository.close());
  const server = await serve(repository, { pushToken: 'token' });
  t.after(() => server.close());
  await push(server.url, path, { signature: signed.armored, token: 'token', insecure: 'http' });

  const store = await Store.open(join(dir, 'store'));
  t.after(() => store.close());
  await store.trust.add(publicKey, { prefix: 'example.com' });
  const { host, port } = new URL(server.url);
  const net = { insecure: 'http', port: Number(port), resolve: { 'example.com': host } };
  const controller = new AbortController();
  const phases = new Set();
  await assert.rejects(
    store.fetch('example.com/hello:1.0.0', {
      ...net,
      signal: controller.signal,
      onProgress: (e) => {
        phases.add(e.phase);
        if (e.phase === 'download' && e.done > 0) controller.abort();
      },
    }),
    isAbort,
  );
  assert.ok(phases.has('download'));
  assert.deepEqual(await store.list(), []);
  assert.deepEqual(await objectFiles(store), []);

  // Without the abort, the same fetch works and verifies the signature.
  const fetched = await store.fetch('example.com/hello:1.0.0', net);
  assert.equal(fetched.outcome, 'downloaded');
  assert.equal(fetched.signature.fingerprint, signed.fingerprint);
});
