// The quickstart example runs to its end.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { test } from 'node:test';

test('examples/node/quickstart.mjs runs', async () => {
  const script = fileURLToPath(new URL('../../examples/node/quickstart.mjs', import.meta.url));
  const { stdout } = await promisify(execFile)(process.execPath, [script]);
  assert.match(stdout, /signed by 776119d1545adfa86e5737c10c40b7823f7f8ec9/);
  assert.match(stdout, /same image: true/);
});
