#!/usr/bin/env node
'use strict';
// Builds the native addon from source with cargo and puts it at `acikit.node` (the npm
// `install` step). In the repository it builds the workspace's `acikit-node` crate; in a
// packed tarball, the Rust sources `prepack` put under `rust/` (with the Cargo.lock).
//
// Environment: ACIKIT_NODE_PROFILE (cargo profile, default `release`; the tests use `dev`),
// CARGO_TARGET_DIR (honoured), ACIKIT_NODE_SKIP_BUILD=1 (do nothing), CARGO (the cargo to run).

const { spawnSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');

function fail(message) {
  console.error(`acikit: ${message}`);
  process.exit(1);
}

if (process.env.ACIKIT_NODE_SKIP_BUILD) process.exit(0);

const packed = path.join(root, 'rust', 'Cargo.toml');
const manifest = fs.existsSync(packed) ? packed : path.join(root, '..', 'Cargo.toml');
if (!fs.existsSync(manifest)) fail(`no Rust sources to build the addon from (looked for ${manifest})`);
const profile = process.env.ACIKIT_NODE_PROFILE || 'release';
const cargo = process.env.CARGO || 'cargo';

const args = [
  'build',
  '--manifest-path', manifest,
  '-p', 'acikit-node',
  '--lib',
  '--profile', profile,
  '--message-format', 'json-render-diagnostics',
];
console.error(`acikit: building the native addon (cargo ${args.join(' ')})`);
const built = spawnSync(cargo, args, {
  cwd: path.dirname(manifest),
  stdio: ['ignore', 'pipe', 'inherit'],
  maxBuffer: 256 * 1024 * 1024,
  encoding: 'utf8',
});
if (built.error) fail(`cannot run ${cargo} (${built.error.message}); install Rust (https://rustup.rs) to build acikit`);
if (built.status !== 0) fail(`cargo build failed (exit ${built.status})`);

// The cdylib cargo reports for the addon crate.
let library = null;
for (const line of built.stdout.split('\n')) {
  if (!line.startsWith('{')) continue;
  const message = JSON.parse(line);
  if (message.reason !== 'compiler-artifact' || message.target?.name !== 'acikit_node') continue;
  library = message.filenames.find((f) => /\.(so|dylib|dll)$/.test(f)) ?? library;
}
if (!library) fail('cargo built no acikit_node library');

const dest = path.join(root, 'acikit.node');
const staged = `${dest}.${process.pid}.tmp`;
fs.copyFileSync(library, staged);
fs.renameSync(staged, dest);
console.error(`acikit: ${path.relative(process.cwd(), dest) || dest} built (${profile})`);
