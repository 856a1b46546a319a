#!/usr/bin/env node
'use strict';
// `prepack`: puts the Rust sources the addon is built from into `rust/` so that the tarball
// builds on its own: a workspace of the core and the addon crate, with the repository's
// Cargo.lock (the same versions as the repository's build). `--clean` (postpack) removes it.

const fs = require('node:fs');
const path = require('node:path');

const node = path.resolve(__dirname, '..');
const repo = path.resolve(node, '..');
const out = path.join(node, 'rust');

fs.rmSync(out, { recursive: true, force: true });
if (process.argv.includes('--clean')) process.exit(0);

/** Copies `from` (a file or a folder) to `to`. */
function copy(from, to) {
  fs.cpSync(from, to, { recursive: true });
}

// The workspace: the repository's root manifest with only the two members it needs.
const workspace = fs.readFileSync(path.join(repo, 'Cargo.toml'), 'utf8');
const members = /^members = \[.*\]$/m;
if (!members.test(workspace)) throw new Error('the root Cargo.toml has no one-line members list');
fs.mkdirSync(out, { recursive: true });
fs.writeFileSync(path.join(out, 'Cargo.toml'), workspace.replace(members, 'members = ["core", "node"]'));
copy(path.join(repo, 'Cargo.lock'), path.join(out, 'Cargo.lock'));

// The core: its manifest, build script, migrations and sources (not its tests), and the
// examples its manifest names.
for (const item of ['Cargo.toml', 'build.rs', 'migrations', 'src']) {
  copy(path.join(repo, 'core', item), path.join(out, 'core', item));
}
for (const file of fs.readdirSync(path.join(repo, 'examples'))) {
  if (file.endsWith('.rs')) copy(path.join(repo, 'examples', file), path.join(out, 'examples', file));
}

// The addon crate.
for (const item of ['Cargo.toml', 'build.rs', 'src']) {
  copy(path.join(node, item), path.join(out, 'node', item));
}
console.error(`acikit: Rust sources for the tarball in ${path.relative(process.cwd(), out) || out}`);
