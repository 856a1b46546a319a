// Credentials: `authConfig` (a JSON file), else the store's own config/auth.json, sent to
// a real local HTTP server that records the Authorization header of every request.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import { join } from 'node:path';
import { test } from 'node:test';

import { AcikitError, Store, discover } from '../index.mjs';
import { tempDir } from './helpers.mjs';

/** A server answering 404 to everything, recording each request's Authorization header. */
async function recorder(t) {
  const seen = [];
  const server = createServer((req, res) => {
    seen.push(req.headers.authorization ?? 'none');
    res.writeHead(404).end();
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => new Promise((resolve) => server.close(resolve)));
  return { seen, port: server.address().port };
}

const rejected = (err) => err instanceof AcikitError;

test('discover and fetch send the credentials of the auth config', async (t) => {
  const dir = await tempDir(t);
  const { seen, port } = await recorder(t);
  const net = { insecure: 'http', port, resolve: { 'registry.example': `127.0.0.1:${port}` } };

  // Without credentials, none are sent.
  await assert.rejects(discover('registry.example/app', net), rejected);
  assert.ok(seen.length > 0 && seen.every((h) => h === 'none'), `${seen}`);

  const bearer = join(dir, 'auth.json');
  await writeFile(bearer, JSON.stringify({ 'registry.example': { type: 'bearer', token: 's3cret' } }));
  seen.length = 0;
  await assert.rejects(discover('registry.example/app', { ...net, authConfig: bearer }), rejected);
  assert.ok(seen.length > 0 && seen.every((h) => h === 'Bearer s3cret'), `${seen}`);

  // A store's fetch reads the store's own config/auth.json when no file is named.
  const storeDir = join(dir, 'store');
  const store = await Store.open(storeDir);
  t.after(() => store.close());
  await mkdir(join(storeDir, 'config'), { recursive: true });
  const storeAuth = join(storeDir, 'config/auth.json');
  await writeFile(storeAuth, JSON.stringify({ 'registry.example': { type: 'basic', user: 'alice', password: 'pw' } }));
  seen.length = 0;
  await assert.rejects(store.fetch('registry.example/app', net), rejected);
  const basic = `Basic ${Buffer.from('alice:pw').toString('base64')}`;
  assert.ok(seen.length > 0 && seen.every((h) => h === basic), `${seen}`);

  // A file named in the options wins over the store's.
  seen.length = 0;
  await assert.rejects(store.fetch('registry.example/app', { ...net, authConfig: bearer }), rejected);
  assert.ok(seen.length > 0 && seen.every((h) => h === 'Bearer s3cret'), `${seen}`);

  // A named file that is missing, or a store file that is not JSON, fails before anything is sent.
  seen.length = 0;
  await assert.rejects(store.fetch('registry.example/app', { ...net, authConfig: join(dir, 'none.json') }), (err) => err.code === 'not_found');
  await writeFile(storeAuth, 'not json');
  await assert.rejects(store.fetch('registry.example/app', net), (err) => err.code === 'invalid_argument');
  assert.deepEqual(seen, []);
});
