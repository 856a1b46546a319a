#!/usr/bin/env bash
# Every test of the Node package (`acikit` on npm, napi-rs): installs its npm tools under
# node/node_modules, builds the addon in the dev profile into the workspace target dir
# (CARGO_TARGET_DIR is honoured, so `cargo test --workspace`'s dependencies are reused),
# checks the generated native.d.ts is the committed one, type-checks a usage file with
# `tsc --noEmit --strict`, runs `node --test` and the quickstart example, then packs the
# package and installs the tarball (and the folder) into fresh projects, building from
# source there, and runs a smoke test in each. Prints a summary; exits non-zero on failure.
#
#   bash node/test.sh          (from anywhere; needs cargo, node >= 20.17 and npm)
set -uo pipefail

node_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$node_dir/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$repo/target}"
work="$(mktemp -d "${TMPDIR:-/tmp}/acikit-node-test.XXXXXX")"
trap 'rm -rf "$work"' EXIT

results=()
failed=0
started=$SECONDS

# step NAME COMMAND...: runs a step, records its outcome and time.
step() {
  local name="$1" t0=$SECONDS
  shift
  echo "=== node: $name"
  if "$@"; then
    results+=("ok    $name ($((SECONDS - t0))s)")
  else
    results+=("FAIL  $name ($((SECONDS - t0))s)")
    failed=1
  fi
}

tools() {
  cd "$node_dir" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
}

build_addon() {
  rm -rf "$work/typedef" && mkdir -p "$work/typedef"
  cd "$node_dir" &&
    NAPI_TYPE_DEF_TMP_FOLDER="$work/typedef" NAPI_FORCE_BUILD_ACIKIT_NODE="$(date +%s%N)" \
      ACIKIT_NODE_PROFILE=dev node scripts/install.js
}

typedef_check() {
  cd "$node_dir" && node scripts/typedef.mjs "$work/typedef" --check
}

types() {
  cd "$node_dir" && node_modules/.bin/tsc --noEmit --strict -p types/tsconfig.json
}

unit_tests() {
  cd "$node_dir" && node --test --test-reporter=spec test/
}

quickstart() {
  node "$repo/examples/node/quickstart.mjs"
}

# A smoke test in a fresh project (run there): ESM and CJS load, build/import/validate work.
smoke() {
  local project="$1"
  cat >"$project/smoke.mjs" <<'JS'
import { createRequire } from 'node:module';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Store, build, imageId, NotFoundError } from 'acikit';
const cjs = createRequire(import.meta.url)('acikit');
if (cjs.Store !== Store) throw new Error('ESM and CJS differ');
const dir = await mkdtemp(join(tmpdir(), 'acikit-smoke-'));
try {
  await mkdir(join(dir, 'layout/rootfs'), { recursive: true });
  await writeFile(join(dir, 'layout/manifest'), JSON.stringify({ acKind: 'ImageManifest', acVersion: '0.8.11', name: 'example.com/smoke' }));
  const built = await build(join(dir, 'layout'), join(dir, 'smoke.aci'));
  const store = await Store.open(join(dir, 'store'));
  const imported = await store.importFile(join(dir, 'smoke.aci'));
  if (imported.id !== built.id || (await imageId(join(dir, 'smoke.aci'))) !== built.id) throw new Error('IDs differ');
  await store.get('example.com/other').then(() => { throw new Error('found'); }, (e) => { if (!(e instanceof NotFoundError)) throw e; });
  await store.close();
  console.log(`smoke: ${built.id.slice(0, 23)}... imported and found`);
} finally {
  await rm(dir, { recursive: true, force: true });
}
JS
  (cd "$project" && node smoke.mjs)
}

packed_install() {
  local project="$work/packed"
  mkdir -p "$project" &&
    (cd "$node_dir" && npm pack --silent --pack-destination "$work" >"$work/packed-name") &&
    local tarball="$work/$(tail -n 1 "$work/packed-name")" &&
    tar -tzf "$tarball" >"$work/packed-files" &&
    grep -qx 'package/rust/core/src/lib.rs' "$work/packed-files" &&
    grep -qx 'package/rust/Cargo.lock' "$work/packed-files" &&
    ! grep -q 'acikit.node$' "$work/packed-files" &&
    (cd "$project" && npm init -y >/dev/null &&
      ACIKIT_NODE_PROFILE=dev npm install --no-audit --no-fund --foreground-scripts "$tarball") &&
    smoke "$project"
}

folder_install() {
  local project="$work/folder"
  mkdir -p "$project" &&
    (cd "$project" && npm init -y >/dev/null &&
      ACIKIT_NODE_PROFILE=dev npm install --no-audit --no-fund --foreground-scripts "$node_dir") &&
    smoke "$project"
}

step "npm tools (napi CLI, typescript)" tools
step "addon build (dev profile, $CARGO_TARGET_DIR)" build_addon
step "native.d.ts unchanged by the build" typedef_check
step "tsc --noEmit --strict types/usage.ts" types
step "node --test" unit_tests
step "examples/node/quickstart.mjs" quickstart
step "npm pack + install of the tarball in a fresh project" packed_install
step "npm install of the folder in a fresh project" folder_install

echo
echo "=== node: summary ($((SECONDS - started))s)"
printf '  %s\n' "${results[@]}"
if [ "$failed" -ne 0 ]; then
  echo "node: FAILED"
  exit 1
fi
echo "node: all passed"
