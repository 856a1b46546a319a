// acikit for Node, start to end: build an image, sign it, serve it, fetch it by name with
// its signature verified, list, render and export it.
//
//   node examples/node/quickstart.mjs
//
// In a project of your own, import from 'acikit' instead of the repository path.
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { Store, build, imageId, push, serve, sign } from '../../node/index.mjs';

const here = fileURLToPath(new URL('.', import.meta.url));
// A throw-away key pair, public on purpose: never trust it outside this example.
const secretKey = await readFile(join(here, 'example-key.asc'), 'utf8');
const publicKey = await readFile(join(here, 'example-key.pub.asc'), 'utf8');

const dir = await mkdtemp(join(tmpdir(), 'acikit-quickstart-'));
try {
  // 1. Build: an image layout (manifest + rootfs) to a reproducible archive.
  const layout = join(dir, 'layout');
  await mkdir(join(layout, 'rootfs/etc'), { recursive: true });
  const arch = { x64: 'amd64', arm64: 'aarch64' }[process.arch] ?? process.arch;
  const manifest = {
    acKind: 'ImageManifest',
    acVersion: '0.8.11',
    name: 'example.com/hello',
    labels: [
      { name: 'version', value: '1.0.0' },
      { name: 'os', value: 'linux' },
      { name: 'arch', value: arch },
    ],
  };
  await writeFile(join(layout, 'manifest'), JSON.stringify(manifest));
  await writeFile(join(layout, 'rootfs/etc/hello'), 'hello\n');
  const aci = join(dir, 'hello.aci');
  const built = await build(layout, aci, {
    compression: 'gzip',
    onProgress: (e) => process.stdout.write(`\rbuild: ${e.phase} ${e.done}`),
  });
  console.log(`\nbuilt ${built.path}: ${built.id}`);

  // 2. Sign it (a detached, ascii-armored signature).
  const signed = await sign(aci, secretKey);
  console.log(`signed by ${signed.fingerprint}`);

  // 3. Serve a repository that trusts the key for example.com, and push the image to it.
  const repository = await Store.open(join(dir, 'repository'));
  await repository.trust.add(publicKey, { prefix: 'example.com' });
  const server = await serve(repository, { pushToken: 'example-token' });
  await push(server.url, aci, {
    signature: signed.armored,
    token: 'example-token',
    insecure: 'http', // a local server over plain HTTP
  });
  console.log(`serving ${server.url}`);

  // 4. Fetch it by name into another store: discovery, download, signature check.
  const store = await Store.open(join(dir, 'store'));
  await store.trust.add(publicKey, { prefix: 'example.com' });
  const { host, port } = new URL(server.url);
  const fetched = await store.fetch('example.com/hello:1.0.0', {
    insecure: 'http', // a local server over plain HTTP; the signature is still checked
    port: Number(port),
    resolve: { 'example.com': host },
  });
  console.log(`fetched ${fetched.name} ${fetched.id} (${fetched.outcome}), signed by ${fetched.signature.fingerprint}`);

  // 5. List.
  for (const image of await store.list()) {
    console.log(`${image.id.slice(0, 19)} ${image.name} ${JSON.stringify(image.labels)} ${image.size} bytes, imported ${image.importedAt.toISOString()}`);
  }

  // 6. Render a run's root filesystem, read a file from it, release it.
  const run = await store.render('example.com/hello', join(dir, 'run'), { strategy: 'copy' });
  console.log(`rendered ${run.target} with ${run.strategy}: ${(await readFile(join(run.target, 'etc/hello'), 'utf8')).trim()}`);
  await run.release();

  // 7. Export it back (the canonical tar): the same image ID.
  const exported = await store.export('example.com/hello', join(dir, 'exported.aci'));
  console.log(`exported ${exported.written} bytes, same image: ${(await imageId(join(dir, 'exported.aci'))) === built.id}`);

  await server.close();
  await store.close();
  await repository.close();
} finally {
  await rm(dir, { recursive: true, force: true });
}
