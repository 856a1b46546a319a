#!/usr/bin/env node
// Writes `native.d.ts` (the addon's declarations) from the type definitions napi-derive
// left in NAPI_TYPE_DEF_TMP_FOLDER during a `cargo build`, as `napi build --dts` does, but
// without the napi CLI's own cargo call (which builds under a `--target` folder of its own
// instead of reusing the workspace's). `--check` fails if the committed file differs.
//
//   node scripts/typedef.mjs TYPEDEF_FOLDER [--check]
import { readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { generateTypeDef } from '@napi-rs/cli';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const [typeDefDir] = process.argv.slice(2).filter((a) => !a.startsWith('--'));
if (!typeDefDir) {
  console.error('usage: node scripts/typedef.mjs TYPEDEF_FOLDER [--check]');
  process.exit(2);
}
const { dts } = await generateTypeDef({ typeDefDir, cwd: root });
const dest = join(root, 'native.d.ts');
if (process.argv.includes('--check')) {
  const committed = await readFile(dest, 'utf8').catch(() => '');
  if (committed !== dts) {
    await writeFile(`${dest}.new`, dts);
    console.error(`native.d.ts is out of date: the build generates ${dest}.new; commit it as native.d.ts`);
    process.exit(1);
  }
  console.error('native.d.ts is up to date');
} else {
  await writeFile(dest, dts);
  console.error(`wrote ${dest}`);
}
