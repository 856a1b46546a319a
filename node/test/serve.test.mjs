// serve, push, discover, fetch (signature verified) and sign, over a real local server.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { test } from 'node:test';

import { AcikitError, Store, TrustError, discover, push, serve, sign } from '../index.mjs';
import { fingerprint, makeImage, publicKey, secretKey, tempDir } from './helpers.mjs';

test('sign, push, discover and fetch by name with the signature verified', async (t) => {
  const dir = await tempDir(t);
  const { path, id } = await makeImage(dir);
  const signed = await sign(path, secretKey);
  assert.match(signed.armored, /BEGIN PGP SIGNATURE/);
  assert.equal(signed.fingerprint, fingerprint);

  const repository = await Store.open(join(dir, 'repository'));
  t.after(() => repository.close());
  await repository.trust.add(publicKey, { prefix: 'example.com' });
  const server = await serve(repository, { pushToken: 'token' });
  t.after(() => server.close());
  assert.match(server.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const pushed = await push(server.url, path, { signature: signed.armored, token: 'token', insecure: 'http' });
  assert.equal(pushed.id, id);
  assert.equal(pushed.signed, true);
  await assert.rejects(push(server.url, path, { token: 'wrong', insecure: 'http' }), (err) => err instanceof AcikitError && err.code !== 'insecure_refused');

  const { host, port } = new URL(server.url);
  const net = { insecure: 'http', port: Number(port), resolve: { 'example.com': host } };
  const walked = [];
  const found = await discover('example.com/hello:1.0.0', { ...net, onProgress: (e) => walked.push(e) });
  assert.equal(found.name, 'example.com/hello');
  // Two levels (example.com/hello, example.com): the last event says both are done.
  assert.deepEqual(new Set(walked.map((e) => e.phase)), new Set(['discover']));
  assert.deepEqual(walked.at(-1), { phase: 'discover', done: 2, total: 2 });
  assert.equal(found.labels.version, '1.0.0');
  assert.ok(found.aciEndpoints[0].aci.endsWith('.aci'));

  const store = await Store.open(join(dir, 'store'));
  t.after(() => store.close());
  // No trusted key yet: the signature check refuses.
  await assert.rejects(store.fetch('example.com/hello:1.0.0', net), (err) => err instanceof TrustError && err.code === 'untrusted_key');
  assert.deepEqual(await store.list(), []);
  await store.trust.add(publicKey, { prefix: 'example.com' });
  const events = [];
  const fetched = await store.fetch('example.com/hello:1.0.0', { ...net, onProgress: (e) => events.push(e) });
  assert.equal(fetched.id, id);
  assert.equal(fetched.outcome, 'downloaded');
  assert.equal(fetched.signature.fingerprint, fingerprint);
  assert.ok(fetched.signature.createdAt instanceof Date);
  assert.ok(events.some((e) => e.phase === 'download'));
  assert.deepEqual((await store.list()).map((i) => i.id), [id]);

  // Plain HTTP must be allowed by the caller.
  const refused = { ...net, insecure: undefined };
  await assert.rejects(store.fetch('example.com/hello:1.0.0', refused), (err) => err.code === 'insecure_refused' || err.category === 'network');
});

test('serve closes, and a closed server refuses connections', async (t) => {
  const dir = await tempDir(t);
  const store = await Store.open(join(dir, 'repository'));
  t.after(() => store.close());
  const server = await serve(store);
  const url = server.url;
  await server.close();
  await assert.rejects(fetch(url));
  await server.close();
});
