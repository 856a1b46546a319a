'use strict';
// The `acikit` package: a thin JS layer over the native addon (`acikit.node`, built from
// the Rust sources by `scripts/install.js`). It maps the addon's encoded errors to
// `AcikitError` classes, `AbortSignal`s to cancel handles, chunk readers to Node streams,
// and records to plain objects with `Date`s and label maps. No logic of its own: what an
// image, a store or a signature is stays in the core.

const path = require('node:path');
const { Readable } = require('node:stream');
const { pipeline } = require('node:stream/promises');

/** The native addon, or a clear error saying how to build it. */
function loadNative() {
  const file = process.env.ACIKIT_NODE_ADDON || path.join(__dirname, 'acikit.node');
  try {
    return require(file);
  } catch (err) {
    const hint = new Error(
      `the acikit native addon could not be loaded from ${file} (${err.message}); ` +
        'build it with `npm rebuild acikit` (needs cargo, see the README)',
    );
    hint.cause = err;
    throw hint;
  }
}

const native = loadNative();

// ---------------------------------------------------------------------------------------
// Errors

/** What starts the message of an error the addon encoded (see `node/src/error.rs`). */
const MARKER = '\u0001acikit-error:';

/** Every error of the core: `code` (the core's `ErrorKind`), `category`, `retryable`. */
class AcikitError extends Error {
  constructor(fields, options) {
    super(fields.message, options);
    this.name = 'AcikitError';
    /** The stable code of the core's error kind, e.g. `not_found`. */
    this.code = fields.code;
    /** The group of the code, e.g. `not_found`, `invalid_image`, `trust`. */
    this.category = fields.category;
    /** Whether trying again may succeed (network, database). */
    this.retryable = fields.retryable;
    /** The archive entry the error concerns, if any. */
    this.entry = fields.entry ?? null;
    /** For `invalid_manifest`: each problem's JSON path, code and message. */
    this.problems = fields.problems ?? [];
  }
}

/** Defines the error class of one category. */
function category(name, errorName = name) {
  const cls = class extends AcikitError {
    constructor(fields, options) {
      super(fields, options);
      this.name = errorName;
    }
  };
  Object.defineProperty(cls, 'name', { value: name });
  return cls;
}

const InputError = category('InputError');
const InvalidImageError = category('InvalidImageError');
const NotFoundError = category('NotFoundError');
const ConflictError = category('ConflictError');
const IntegrityError = category('IntegrityError');
const TrustError = category('TrustError');
const NetworkError = category('NetworkError');
const IoError = category('IoError');
const PrivilegeError = category('PrivilegeError');
const UnsupportedError = category('UnsupportedError');
/** A cancelled call: `name === 'AbortError'` (as `fetch` and timers reject), `code === 'cancelled'`. */
const CancelledError = category('CancelledError', 'AbortError');
const InternalError = category('InternalError');

/** The class of each `ErrorCategory::as_str()`. */
const CLASSES = {
  input: InputError,
  invalid_image: InvalidImageError,
  not_found: NotFoundError,
  conflict: ConflictError,
  integrity: IntegrityError,
  trust: TrustError,
  network: NetworkError,
  io: IoError,
  privilege: PrivilegeError,
  unsupported: UnsupportedError,
  cancelled: CancelledError,
  internal: InternalError,
};

/** The `AcikitError` an addon error encodes (others are returned as they are). */
function mapError(err, signal) {
  if (!(err instanceof Error) || !err.message.startsWith(MARKER)) return err;
  const fields = JSON.parse(err.message.slice(MARKER.length));
  const Class = CLASSES[fields.category] ?? AcikitError;
  const cause = fields.code === 'cancelled' && signal?.aborted ? signal.reason : undefined;
  return new Class(fields, cause === undefined ? undefined : { cause });
}

// ---------------------------------------------------------------------------------------
// Long calls: `{ signal?, onProgress? }`

/** Checks the options every long call takes. */
function callOptions(options) {
  if (options === undefined || options === null) return {};
  if (typeof options !== 'object') throw new TypeError('options must be an object');
  const { signal, onProgress } = options;
  if (signal !== undefined && !(signal instanceof AbortSignal)) {
    throw new TypeError('options.signal must be an AbortSignal');
  }
  if (onProgress !== undefined && typeof onProgress !== 'function') {
    throw new TypeError('options.onProgress must be a function');
  }
  return options;
}

/**
 * Runs `start(cancelHandle, onProgress)` (a native call) with `options.signal` cancelling
 * it and `options.onProgress` receiving `{ phase, done, total }` events.
 */
async function longCall(options, start) {
  const { signal, onProgress } = callOptions(options);
  const handle = new native.CancelHandle();
  const abort = () => handle.cancel();
  if (signal?.aborted) handle.cancel();
  else signal?.addEventListener('abort', abort, { once: true });
  // `total` is null when unknown (the addon leaves it out).
  const progress = onProgress && ((e) => onProgress({ phase: e.phase, done: e.done, total: e.total ?? null }));
  try {
    return await start(handle, progress);
  } catch (err) {
    throw mapError(err, signal);
  } finally {
    signal?.removeEventListener('abort', abort);
  }
}

/** Runs a short native call, mapping its error. */
async function shortCall(promise) {
  try {
    return await promise;
  } catch (err) {
    throw mapError(err);
  }
}

// ---------------------------------------------------------------------------------------
// Records

/** `{ name: value }` to the addon's `[{ name, value }]`. */
function labelList(labels) {
  if (labels === undefined || labels === null) return undefined;
  if (typeof labels !== 'object') throw new TypeError('labels must be an object of strings');
  return Object.entries(labels).map(([name, value]) => ({ name, value: String(value) }));
}

/** The addon's `[{ name, value }]` to `{ name: value }`, in manifest order. */
function labelMap(list) {
  return Object.fromEntries(list.map((l) => [l.name, l.value]));
}

/** An image record with `Date`s and a label map. */
function image(r) {
  return {
    id: r.id,
    name: r.name,
    labels: labelMap(r.labels),
    size: r.size,
    archiveSize: r.archiveSize,
    entries: r.entries,
    importedAt: new Date(r.importedAt),
    lastUsedAt: new Date(r.lastUsedAt),
    origin: r.origin ?? null,
  };
}

/** An original record whose `reason` is `null` when there is none. */
function originalInfo(r) {
  return { ...r, reason: r.reason ?? null };
}

/** A fetch record with its dependencies. */
function fetched(r) {
  return {
    id: r.id,
    name: r.name,
    url: r.url ?? null,
    outcome: r.outcome,
    signature: r.signature
      ? { ...r.signature, createdAt: new Date(r.signature.createdAt * 1000) }
      : null,
    keysAdded: r.keysAdded,
    dependencies: r.dependencies.map(fetched),
  };
}

/** A trusted key with `Date`s. */
function trustedKey(k) {
  return {
    fingerprint: k.fingerprint,
    keyId: k.keyId,
    userIds: k.userIds,
    algorithm: k.algorithm,
    createdAt: new Date(k.createdAt * 1000),
    expiresAt: k.expiresAt == null ? null : new Date(k.expiresAt * 1000),
    prefix: k.prefix ?? null,
  };
}

/** The network options of fetch and discover, as the addon takes them. */
function netArgs(options) {
  const { insecure, port, resolve, authConfig } = options;
  return {
    insecure: Array.isArray(insecure) ? insecure.join(',') : insecure,
    port,
    resolve: resolve && Object.entries(resolve).map(([host, address]) => ({ host, address })),
    authConfig,
  };
}

const asyncDispose = Symbol.asyncDispose ?? Symbol.for('nodejs.asyncDispose');

// ---------------------------------------------------------------------------------------
// Streams

const kOutcome = Symbol('outcome');

/**
 * A `Readable` over a native chunk reader that `open()` gives; the reader's `outcome()`
 * is checked at the end (an export's failure is the stream's error).
 */
function readerStream(open, signal) {
  let reader = null;
  let closed = false;
  const stream = new Readable({
    highWaterMark: 1024 * 1024,
    read() {
      (async () => {
        reader ??= await open();
        if (closed) return reader.close();
        const chunk = await reader.next();
        if (chunk !== null) return this.push(chunk);
        stream[kOutcome] = await reader.outcome();
        this.push(null);
      })().catch((err) => this.destroy(mapError(err, signal)));
    },
    destroy(err, callback) {
      closed = true;
      reader?.close();
      callback(err);
    },
  });
  if (signal) {
    const abort = () =>
      stream.destroy(
        new CancelledError(
          {
            code: 'cancelled',
            category: 'cancelled',
            retryable: false,
            message: 'the operation was cancelled',
          },
          { cause: signal.reason },
        ),
      );
    if (signal.aborted) queueMicrotask(abort);
    else signal.addEventListener('abort', abort, { once: true });
    stream.once('close', () => signal.removeEventListener('abort', abort));
  }
  return stream;
}

// ---------------------------------------------------------------------------------------
// The store

/** The `release()` and `Symbol.asyncDispose` of a rendered run. */
function run(store, record) {
  let released = false;
  const release = async () => {
    if (released) return;
    await store.release(record.target);
    released = true;
  };
  return { ...record, release, [asyncDispose]: release };
}

/** An image store: `Store.open(path?, { database?, readOnly? })`. */
class Store {
  #native;

  /** Use `Store.open`. */
  constructor(handle) {
    if (!(handle instanceof native.NativeStore)) {
      throw new TypeError('use Store.open(path) to open a store');
    }
    this.#native = handle;
    /** The trusted keys: `add(key, { prefix })`, `list()`, `remove(fingerprint)`. */
    this.trust = Object.freeze({
      add: async (key, { prefix } = {}) =>
        trustedKey(await shortCall(handle.trustAdd(key, prefix))),
      list: async () => (await shortCall(handle.trustList())).map(trustedKey),
      remove: async (fingerprint) =>
        (await shortCall(handle.trustRemove(fingerprint))).map(trustedKey),
    });
  }

  /** Opens (creating if needed) the store at `path` (default `$ACIKIT_STORE`, else the user's data folder). */
  static async open(path, options = {}) {
    const { database, readOnly } = options;
    return new Store(await shortCall(native.openStore(path, { database, readOnly })));
  }

  /** The store folder. */
  get path() {
    return this.#native.dir;
  }

  /** Whether every write is refused (`read_only_store`). */
  get readOnly() {
    return this.#native.readOnly;
  }

  /** The native store (for `serve`). */
  get [Symbol.for('acikit.native')]() {
    return this.#native;
  }

  /**
   * Imports the archive at `path` (any compression). `{ original: true }` records the
   * archive's exact bytes for `export(.., { compression: 'original' })`: a compressed one is
   * kept whole (`pending`) until `compactOriginals()` or `gc()`.
   */
  async importFile(path, options = {}) {
    const original = options?.original;
    if (original !== undefined && typeof original !== 'boolean') {
      throw new TypeError('options.original must be a boolean');
    }
    const args = { original };
    return longCall(options, (cancel, progress) =>
      this.#native.importFile(path, args, cancel, progress),
    ).then((r) => ({ ...r }));
  }

  /** Fetches `image` (`NAME[:VERSION]` by discovery, or a URL) with its signature verified. */
  async fetch(image, options = {}) {
    const args = {
      labels: labelList(options.labels),
      signature: options.signature,
      trustDiscoveredKeys: options.trustDiscoveredKeys,
      maxSize: options.maxSize,
      dependencies: options.dependencies,
      net: netArgs(options),
    };
    const r = await longCall(options, (cancel, progress) =>
      this.#native.fetch(image, args, cancel, progress),
    );
    return fetched(r);
  }

  /** Writes the image's archive to `dest`, a file path or a `Writable`. */
  async export(image, dest, options = {}) {
    const { compression } = options;
    if (typeof dest === 'string') {
      return longCall(options, (cancel, progress) =>
        this.#native.export(image, dest, compression, cancel, progress),
      );
    }
    if (!dest || typeof dest.write !== 'function') {
      throw new TypeError('dest must be a path or a Writable');
    }
    const reader = await longCall(options, (cancel, progress) =>
      this.#native.exportStream(image, compression, cancel, progress),
    );
    const stream = readerStream(async () => reader, options.signal);
    await pipeline(stream, dest);
    return stream[kOutcome];
  }

  /** The image's canonical tar as a `Readable` (verified against the image ID at its end). */
  openRead(image, options = {}) {
    const { signal } = callOptions(options);
    return readerStream(() => shortCall(this.#native.openRead(image)), signal);
  }

  /** Renders a clean root filesystem of the image at `target`; `release()` it when done. */
  async render(image, target, options = {}) {
    const args = {
      strategy: options.strategy,
      skipUnprivileged: options.skipUnprivileged,
      allowUnprotectedHardlink: options.allowUnprotectedHardlink,
    };
    const r = await longCall(options, (cancel, progress) =>
      this.#native.render(image, target, args, cancel, progress),
    );
    return run(this, r);
  }

  /** Releases (removes) the run rendered at `target`. */
  async release(target) {
    await shortCall(this.#native.release(target));
  }

  /** Every image, by name then newest first. */
  async list() {
    return (await shortCall(this.#native.list())).map(image);
  }

  /** Every image `image` (an ID prefix, or a name with `labels`) matches, newest first. */
  async find(image_, labels) {
    return (await shortCall(this.#native.find(image_, labelList(labels)))).map(image);
  }

  /** The image `image` names (the newest import of a name); `not_found` if none. */
  async get(image_, labels) {
    return image(await shortCall(this.#native.get(image_, labelList(labels))));
  }

  /** Removes the one image `image` names; returns its ID. */
  async remove(image_) {
    return shortCall(this.#native.remove(image_));
  }

  /** Removes what no image uses any more. */
  async gc(options) {
    return longCall(options, (cancel, progress) => this.#native.gc(cancel, progress));
  }

  /**
   * Turns the originals kept whole by `importFile(.., { original: true })` into their
   * compact forms, each proved by re-creating the archive; aborting leaves them as they were.
   */
  async compactOriginals(options) {
    return longCall(options, (cancel, progress) =>
      this.#native.compactOriginals(cancel, progress),
    );
  }

  /** What the store keeps to give back the image's original archive (`null`: nothing). */
  async original(image_) {
    const r = await shortCall(this.#native.original(image_));
    return r ? originalInfo(r) : null;
  }

  /** Checks every object and image (`{ repair: true }` drops what is damaged). */
  async fsck(options = {}) {
    return longCall(options, (cancel, progress) =>
      this.#native.fsck(options.repair, cancel, progress),
    );
  }

  /** Sizes and the de-duplication ratio. */
  async stats() {
    const s = await shortCall(this.#native.stats());
    return {
      ...s,
      originalImages: s.originalImages.map((i) => ({ id: i.id, original: originalInfo(i.original) })),
    };
  }

  /** Closes the index: the store cannot be used afterwards. */
  async close() {
    await shortCall(this.#native.close());
  }

  [asyncDispose]() {
    return this.close();
  }
}

// ---------------------------------------------------------------------------------------
// Module-level calls

/** Validates the archive at `path`: its image ID, name and manifest, or a typed error. */
async function validate(path, options) {
  const r = await longCall(options, (cancel, progress) => native.inspect(path, cancel, progress));
  return { ...r, manifest: JSON.parse(r.manifest) };
}

/** The image ID of the (valid) archive at `path`. */
async function imageId(path, options) {
  return (await validate(path, options)).id;
}

/** The manifest of the (valid) archive at `path`, parsed. */
async function readManifest(path, options) {
  return (await validate(path, options)).manifest;
}

/** Meta discovery of `name` (`NAME[:VERSION]`, `labels`): image, signature and key URLs. */
async function discover(name, options = {}) {
  const r = await longCall(options, (cancel, progress) =>
    native.discover(name, labelList(options.labels), netArgs(options), cancel, progress),
  );
  return { ...r, labels: labelMap(r.labels) };
}

/** Builds the image layout `dir` (`manifest` + `rootfs/`) into the archive `out`. */
async function build(dir, out, options = {}) {
  return longCall(options, (cancel, progress) =>
    native.build(dir, out, options.compression, options.mtime, cancel, progress),
  );
}

/** A detached ascii-armored signature of the file at `path` by the armored secret `key`. */
async function sign(path, key, options = {}) {
  const text = Buffer.isBuffer(key) ? key.toString('utf8') : key;
  return longCall(options, (cancel, progress) =>
    native.sign(path, text, options.passphrase, cancel, progress),
  );
}

/** Pushes the archive at `path` (and its armored `signature`) to the repository at `url`. */
async function push(url, path, options = {}) {
  const { signature, token } = options;
  if (typeof token !== 'string') throw new TypeError('options.token must be a string');
  const text = Buffer.isBuffer(signature) ? signature.toString('utf8') : signature;
  return longCall(options, (cancel, progress) =>
    native.push(url, path, text, token, netArgs(options), cancel, progress),
  );
}

/** A running image repository: `url`, `close()`. */
class Server {
  #native;

  constructor(handle) {
    this.#native = handle;
  }

  /** The base URL, `http://IP:PORT`. */
  get url() {
    return this.#native.url;
  }

  /** Stops serving (requests in flight get `graceMs`, default 0). */
  async close({ graceMs } = {}) {
    await shortCall(this.#native.close(graceMs));
  }

  [asyncDispose]() {
    return this.close();
  }
}

/** Serves `store` as an image repository (discovery, images, signatures, keys, pushes). */
async function serve(store, options = {}) {
  if (!(store instanceof Store)) throw new TypeError('store must be a Store');
  const args = {
    listen: options.listen,
    pushToken: options.pushToken,
    requireSignature: options.requireSignature,
    publicUrl: options.publicUrl,
    hosts: options.hosts,
  };
  return new Server(await shortCall(native.serve(store[Symbol.for('acikit.native')], args)));
}

module.exports = {
  Store,
  Server,
  validate,
  imageId,
  readManifest,
  discover,
  build,
  sign,
  serve,
  push,
  AcikitError,
  InputError,
  InvalidImageError,
  NotFoundError,
  ConflictError,
  IntegrityError,
  TrustError,
  NetworkError,
  IoError,
  PrivilegeError,
  UnsupportedError,
  CancelledError,
  InternalError,
};
