// A typed usage of the package, checked by `tsc --noEmit --strict` (never run).
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';

import acikit, { AcikitError, CancelledError, Store, build, imageId, serve, sign, validate } from 'acikit';
import type { Fetched, GcReport, Image, ImageOriginal, OriginalCompaction, OriginalForm, OriginalInfo, ProgressEvent, Run } from 'acikit';

export async function usage(): Promise<void> {
  const controller = new AbortController();
  const onProgress = (e: ProgressEvent): void => {
    const fraction: number | null = e.total === null ? null : e.done / e.total;
    void fraction;
  };
  const built = await build('layout', 'hello.aci', { compression: 'gzip', onProgress, signal: controller.signal });
  const id: string = await imageId(built.path);
  const inspection = await validate('hello.aci');
  const name: string = inspection.manifest.name;

  const store = await Store.open('store', { readOnly: false });
  const imported = await store.importFile('hello.aci', { signal: controller.signal, onProgress });
  const images: Image[] = await store.list();
  const first: Date = images[0].importedAt;
  const version: string | undefined = images[0].labels.version;
  await store.get(id, { os: 'linux' });

  const hash = createHash('sha512');
  await pipeline(store.openRead(imported.id), hash);
  await store.export(id, createWriteStream('out.aci.zst'), { compression: 'zstd' });
  const written: number = (await store.export(id, 'out.aci')).written;

  await store.importFile('gnu.aci.gz', { original: true, onProgress });
  const original: OriginalInfo | null = await store.original(id);
  const form: OriginalForm | undefined = original?.form;
  const reason: string | null | undefined = original?.reason;
  const pending: boolean | undefined = original?.pending;
  const compaction: OriginalCompaction = await store.compactOriginals({ signal: controller.signal, onProgress });
  const compacted: number = compaction.compacted + compaction.kept + compaction.bytesFreed;
  const gc: GcReport = await store.gc();
  const freed: number = gc.originalsCompacted + gc.originalsKept + gc.originalBytesFreed;
  const perImage: ImageOriginal[] = (await store.stats()).originalImages;
  const firstForm: OriginalForm | undefined = perImage[0]?.original.form;
  await store.export(id, 'original.aci', { compression: 'original' });

  const run: Run = await store.render(id, 'rootfs', { strategy: 'copy' });
  await run.release();

  const signed = await sign('hello.aci', '-----BEGIN PGP PRIVATE KEY BLOCK-----');
  await store.trust.add(signed.armored, { prefix: 'example.com' });
  const server = await serve(store, { pushToken: 'token' });
  const fetched: Fetched = await store.fetch('example.com/hello:1.0.0', { insecure: ['http'], port: 80, authConfig: 'auth.json' });
  const fingerprint: string | undefined = fetched.signature?.fingerprint;
  await server.close();

  try {
    await store.remove(id);
  } catch (err) {
    if (err instanceof CancelledError) console.log(err.name, err.code);
    else if (err instanceof AcikitError) console.log(err.code, err.category, err.retryable, err.problems.length);
  }
  await store.close();
  void [name, first, version, written, fingerprint, acikit.Store, form, reason, pending, compacted, freed, firstForm];
}
