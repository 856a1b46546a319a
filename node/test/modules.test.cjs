// CommonJS and ESM entry points load the same module.
const assert = require('node:assert/strict');
const { test } = require('node:test');

test('require and import give the same classes and calls', async () => {
  const cjs = require('acikit');
  const esm = await import('acikit');
  assert.equal(typeof cjs.Store.open, 'function');
  assert.equal(esm.Store, cjs.Store);
  assert.equal(esm.AcikitError, cjs.AcikitError);
  assert.equal(esm.default, cjs);
  for (const name of ['validate', 'imageId', 'readManifest', 'discover', 'build', 'sign', 'serve', 'push']) {
    assert.equal(typeof cjs[name], 'function', name);
    assert.equal(esm[name], cjs[name], name);
  }
});
