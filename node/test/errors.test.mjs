// Error codes and classes: the core's kinds through `err.code`, one class per category.
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';

import * as acikit from '../index.mjs';
import { AcikitError, InvalidImageError, NotFoundError, InputError, Store, build, imageId, readManifest, validate } from '../index.mjs';
import { makeImage, tempDir } from './helpers.mjs';

test('validate, imageId and readManifest of a valid archive', async (t) => {
  const dir = await tempDir(t);
  const { path, id } = await makeImage(dir, { compression: 'gzip' });
  const found = await validate(path);
  assert.equal(found.id, id);
  assert.equal(found.name, 'example.com/hello');
  assert.equal(found.compression, 'gzip');
  assert.equal(await imageId(path), id);
  const manifest = await readManifest(path);
  assert.equal(manifest.name, 'example.com/hello');
  assert.equal(manifest.labels[0].value, '1.0.0');
});

test('invalid archives reject with InvalidImageError and the core code', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'empty.aci'), '');
  await writeFile(join(dir, 'text.aci'), 'x'.repeat(2048));
  await assert.rejects(validate(join(dir, 'empty.aci')), (err) => {
    assert.ok(err instanceof InvalidImageError);
    assert.ok(err instanceof AcikitError);
    assert.ok(err instanceof Error);
    assert.equal(err.name, 'InvalidImageError');
    assert.equal(err.code, 'empty_archive');
    assert.equal(err.category, 'invalid_image');
    assert.equal(err.retryable, false);
    return true;
  });
  await assert.rejects(imageId(join(dir, 'text.aci')), { code: 'not_a_tar', category: 'invalid_image' });
  await assert.rejects(validate(join(dir, 'missing.aci')), (err) => err instanceof NotFoundError && err.code === 'not_found');
});

test('an invalid manifest lists its problems with their JSON paths', async (t) => {
  const dir = await tempDir(t);
  const layout = join(dir, 'layout');
  await mkdir(join(layout, 'rootfs'), { recursive: true });
  await writeFile(join(layout, 'manifest'), JSON.stringify({ acKind: 'ImageManifest', acVersion: '0.8.11', name: 'Not A Name!' }));
  await assert.rejects(build(layout, join(dir, 'bad.aci')), (err) => {
    assert.equal(err.code, 'invalid_manifest');
    assert.ok(err instanceof InvalidImageError);
    assert.ok(err.problems.length >= 1);
    assert.equal(err.problems[0].path, '$.name');
    assert.equal(typeof err.problems[0].message, 'string');
    return true;
  });
});

test('store errors: not_found, invalid_value, read_only_store', async (t) => {
  const dir = await tempDir(t);
  const { path } = await makeImage(dir);
  const store = await Store.open(join(dir, 'store'));
  await assert.rejects(store.get('example.com/nothing'), (err) => err instanceof NotFoundError && err.code === 'not_found' && /example.com\/nothing/.test(err.message));
  await assert.rejects(store.get('Bad Name'), (err) => err instanceof InputError && err.code === 'invalid_value');
  await store.close();

  const readOnly = await Store.open(join(dir, 'store'), { readOnly: true });
  assert.equal(readOnly.readOnly, true);
  await assert.rejects(readOnly.importFile(path), (err) => err.code === 'read_only_store' && err.category === 'privilege' && err instanceof acikit.PrivilegeError);
  await readOnly.close();
  await assert.rejects(Store.open(join(dir, 'nowhere'), { readOnly: true }), NotFoundError);
});

test('every error class is exported and named', () => {
  for (const name of ['InputError', 'InvalidImageError', 'NotFoundError', 'ConflictError', 'IntegrityError', 'TrustError', 'NetworkError', 'IoError', 'PrivilegeError', 'UnsupportedError', 'CancelledError', 'InternalError']) {
    assert.equal(typeof acikit[name], 'function', name);
    assert.equal(acikit[name].name, name);
    assert.ok(acikit[name].prototype instanceof AcikitError, name);
  }
});

test('the database option reaches the core: an unreachable PostgreSQL is a retryable database error', async (t) => {
  const dir = await tempDir(t);
  await assert.rejects(Store.open(join(dir, 'store'), { database: 'postgres://nobody:secret@127.0.0.1:1/none' }), (err) => {
    assert.ok(err instanceof acikit.IoError);
    assert.equal(err.code, 'database');
    assert.equal(err.retryable, true);
    assert.doesNotMatch(err.message, /secret/);
    return true;
  });
});
