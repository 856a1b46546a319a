// Fixtures for the tests: temporary folders and real image archives built by `build`.
import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { build } from '../index.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));

/** The throw-away example key pair (public on purpose). */
export const secretKey = await readFile(join(here, 'fixtures/example-key.asc'), 'utf8');
export const publicKey = await readFile(join(here, 'fixtures/example-key.pub.asc'), 'utf8');
export const fingerprint = '776119d1545adfa86e5737c10c40b7823f7f8ec9';

/** The appc arch label of this machine. */
export const arch = { x64: 'amd64', arm64: 'aarch64' }[process.arch] ?? process.arch;

/** A new temporary folder, removed by `t.after`. */
export async function tempDir(t) {
  const dir = await mkdtemp(join(tmpdir(), 'acikit-node-test-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * Builds an image `name` (version `version`) into `dir/<file>`: a manifest and a rootfs
 * with `etc/hello`, plus `bigBytes` random (incompressible) bytes in `data/big`.
 */
export async function makeImage(dir, { name = 'example.com/hello', version = '1.0.0', bigBytes = 0, file = 'image.aci', compression = 'none' } = {}) {
  const layout = join(dir, `layout-${file}`);
  await mkdir(join(layout, 'rootfs/etc'), { recursive: true });
  const manifest = {
    acKind: 'ImageManifest',
    acVersion: '0.8.11',
    name,
    labels: [
      { name: 'version', value: version },
      { name: 'os', value: 'linux' },
      { name: 'arch', value: arch },
    ],
  };
  await writeFile(join(layout, 'manifest'), JSON.stringify(manifest));
  await writeFile(join(layout, 'rootfs/etc/hello'), `hello ${version}\n`);
  if (bigBytes > 0) {
    await mkdir(join(layout, 'rootfs/data'));
    // Several files, so that imports report progress many times.
    const parts = 8;
    for (let i = 0; i < parts; i++) {
      await writeFile(join(layout, `rootfs/data/big${i}`), randomBytes(Math.ceil(bigBytes / parts)));
    }
  }
  const out = join(dir, file);
  const built = await build(layout, out, { compression });
  return { path: out, id: built.id, built };
}
