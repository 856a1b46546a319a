// Type declarations of the `acikit` package (index.js / index.mjs), written by hand over
// the addon's generated ones (native.d.ts): records with `Date`s and label maps, the
// `{ signal, onProgress }` options, Node streams and the error classes.
import type { Readable, Writable } from 'node:stream';

import type {
  BuildRecord,
  CompactionRecord,
  ExportRecord,
  FsckRecord,
  GcRecord,
  ImportRecord,
  KeyAddedRecord,
  OriginalRecord,
  PushRecord,
  RenderRecord,
  SignRecord,
  StatsRecord,
} from './native';

/** Phases of progress, as the core names them (`Phase::as_str`). */
export type Phase =
  | 'import'
  | 'commit'
  | 'export'
  | 'fsck'
  | 'download'
  | 'gc'
  | 'build'
  | 'checkout'
  | 'render'
  | 'inspect'
  | 'sign'
  | 'push'
  | 'discover'
  | 'original';

/** One progress event of a long call. */
export interface ProgressEvent {
  phase: Phase;
  /** Units done (bytes or entries, as the phase counts). */
  done: number;
  /** Units in all, or null when unknown. */
  total: number | null;
}

/** What every long call accepts. */
export interface CallOptions {
  /** Aborting rejects the call with an `AbortError` (`code === 'cancelled'`), leaving nothing behind. */
  signal?: AbortSignal;
  /** Called on the JS thread with progress events (thinned to a few per second). */
  onProgress?: (event: ProgressEvent) => void;
}

/** Labels as a map, in manifest order. */
export type Labels = Record<string, string>;

/** Network options of fetch, discover and push. */
export interface NetOptions {
  /** What may be insecure: `http`, `tls`, `image` (no signature check), `all`. */
  insecure?: string | string[];
  /** The port of discovery and image URLs without one. */
  port?: number;
  /** Host names answered with fixed `IP:PORT` addresses (as curl's `--resolve`). */
  resolve?: Record<string, string>;
  /**
   * A JSON file of per-host credentials (`{"host": {"type": "basic", "user", "password"}}`
   * or `{"type": "bearer", "token"}`). Without one, a store's `fetch` reads the store's
   * `config/auth.json` if it exists; `discover` and `push` send none (a push's upload
   * carries its token).
   */
  authConfig?: string;
}

/** One stored image. */
export interface Image {
  id: string;
  name: string;
  labels: Labels;
  /** Size of the canonical tar. */
  size: number;
  /** Size of the archive as imported. */
  archiveSize: number;
  entries: number;
  importedAt: Date;
  lastUsedAt: Date;
  origin: string | null;
}

export type Imported = ImportRecord;
export type Exported = ExportRecord;
export type GcReport = GcRecord;
export type OriginalCompaction = CompactionRecord;
/** How the store re-creates an image's original archive (`OriginalForm::as_str`). */
export type OriginalForm = 'none' | 'gzip' | 'recompress' | 'gzip_export' | 'kept';
/** What the store keeps to give back an image's original archive (`original()`). */
export interface OriginalInfo extends Omit<OriginalRecord, 'form' | 'reason'> {
  form: OriginalForm;
  /** For `kept`: why nothing else re-creates it (null otherwise). */
  reason: string | null;
}
export type FsckReport = FsckRecord;
/** One image's original record, as `stats()` reports it. */
export interface ImageOriginal {
  /** The image. */
  id: string;
  /** What the store keeps to re-create its original. */
  original: OriginalInfo;
}
/** Sizes of a store, with each image's original record (`originalImages`). */
export interface StoreStats extends Omit<StatsRecord, 'originalImages'> {
  originalImages: ImageOriginal[];
}
export type Built = BuildRecord;
export type Signed = SignRecord;
export type Pushed = PushRecord;

/** A verified signature. */
export interface Signature {
  fingerprint: string;
  signingKey: string;
  userIds: string[];
  scope: string;
  hashAlgorithm: string;
  createdAt: Date;
}

/** One fetched image and its dependencies. */
export interface Fetched {
  id: string;
  name: string;
  url: string | null;
  outcome: 'downloaded' | 'already_present' | 'not_modified' | 'cached';
  signature: Signature | null;
  keysAdded: KeyAddedRecord[];
  dependencies: Fetched[];
}

/** A trusted key. */
export interface TrustedKey {
  fingerprint: string;
  keyId: string;
  userIds: string[];
  algorithm: string;
  createdAt: Date;
  expiresAt: Date | null;
  /** The name prefix it is trusted for; null for every name. */
  prefix: string | null;
}

/** A rendered run: release it (or `await using` it) when done. */
export interface Run extends RenderRecord {
  release(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** What `validate` found. */
export interface Inspection {
  id: string;
  name: string;
  /** The manifest, parsed. */
  manifest: ImageManifest;
  compression: 'none' | 'gzip' | 'bzip2' | 'xz' | 'zstd';
  archiveSize: number;
  size: number;
  entries: number;
}

/** An appc image manifest (the fields most read; the rest as in the spec). */
export interface ImageManifest {
  acKind: 'ImageManifest';
  acVersion: string;
  name: string;
  labels?: { name: string; value: string }[];
  [field: string]: unknown;
}

/** What discovery found. */
export interface Discovered {
  name: string;
  labels: Labels;
  aciEndpoints: { aci: string; asc: string }[];
  pubkeys: string[];
}

export type ExportCompression = 'none' | 'gzip' | 'zstd' | 'original';
export type BuildCompression = 'none' | 'gzip' | 'zstd';
export type Strategy = 'auto' | 'overlay' | 'reflink' | 'hardlink' | 'copy' | 'composefs';

/** An image store. */
export declare class Store {
  private constructor();
  /** Opens (creating if needed) the store at `path` (default `$ACIKIT_STORE`, else the user's data folder). */
  static open(path?: string, options?: { database?: string; readOnly?: boolean }): Promise<Store>;
  /** The store folder. */
  readonly path: string;
  readonly readOnly: boolean;
  /** The trusted keys. */
  readonly trust: {
    add(key: string | Buffer, options?: { prefix?: string }): Promise<TrustedKey>;
    list(): Promise<TrustedKey[]>;
    remove(fingerprint: string): Promise<TrustedKey[]>;
  };
  /** `original: true` records the archive's exact bytes (kept whole, `pending`, until `compactOriginals()` or `gc()`). */
  importFile(path: string, options?: CallOptions & { original?: boolean }): Promise<Imported>;
  fetch(
    image: string,
    options?: CallOptions &
      NetOptions & {
        labels?: Labels;
        signature?: string;
        trustDiscoveredKeys?: boolean;
        maxSize?: number;
        dependencies?: boolean;
      },
  ): Promise<Fetched>;
  export(image: string, dest: string | Writable, options?: CallOptions & { compression?: ExportCompression }): Promise<Exported>;
  /** The canonical tar, verified against the image ID at its end. */
  openRead(image: string, options?: { signal?: AbortSignal }): Readable;
  render(
    image: string,
    target: string,
    options?: CallOptions & { strategy?: Strategy; skipUnprivileged?: boolean; allowUnprotectedHardlink?: boolean },
  ): Promise<Run>;
  release(target: string): Promise<void>;
  list(): Promise<Image[]>;
  find(image: string, labels?: Labels): Promise<Image[]>;
  get(image: string, labels?: Labels): Promise<Image>;
  /** Removes the one image `image` names; resolves to its ID. */
  remove(image: string): Promise<string>;
  gc(options?: CallOptions): Promise<GcReport>;
  /** Turns the pending originals into their compact forms (progress phase `original`). */
  compactOriginals(options?: CallOptions): Promise<OriginalCompaction>;
  /** What the store keeps to give back the image's original archive, or null. */
  original(image: string): Promise<OriginalInfo | null>;
  fsck(options?: CallOptions & { repair?: boolean }): Promise<FsckReport>;
  stats(): Promise<StoreStats>;
  close(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

/** A running image repository. */
export declare class Server {
  private constructor();
  /** The base URL, `http://IP:PORT`. */
  readonly url: string;
  close(options?: { graceMs?: number }): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export declare function validate(path: string, options?: CallOptions): Promise<Inspection>;
export declare function imageId(path: string, options?: CallOptions): Promise<string>;
export declare function readManifest(path: string, options?: CallOptions): Promise<ImageManifest>;
export declare function discover(name: string, options?: CallOptions & NetOptions & { labels?: Labels }): Promise<Discovered>;
export declare function build(
  dir: string,
  out: string,
  options?: CallOptions & { compression?: BuildCompression; mtime?: number },
): Promise<Built>;
export declare function sign(path: string, key: string | Buffer, options?: CallOptions & { passphrase?: string }): Promise<Signed>;
export declare function serve(
  store: Store,
  options?: { listen?: string; pushToken?: string; requireSignature?: boolean; publicUrl?: string; hosts?: string[] },
): Promise<Server>;
export declare function push(
  url: string,
  path: string,
  options: CallOptions & NetOptions & { token: string; signature?: string | Buffer },
): Promise<Pushed>;

/** The error categories (`ErrorCategory::as_str`). */
export type ErrorCategory =
  | 'input'
  | 'invalid_image'
  | 'not_found'
  | 'conflict'
  | 'integrity'
  | 'trust'
  | 'network'
  | 'io'
  | 'privilege'
  | 'unsupported'
  | 'cancelled'
  | 'internal';

/** Every error of the core. */
export declare class AcikitError extends Error {
  /** The core's stable code (`ErrorKind::as_str`), e.g. `not_found`. */
  readonly code: string;
  readonly category: ErrorCategory;
  /** Whether trying again may succeed. */
  readonly retryable: boolean;
  /** The archive entry concerned, if any. */
  readonly entry: string | null;
  /** For `invalid_manifest`: each problem's JSON path, code and message. */
  readonly problems: { path: string; code: string; message: string }[];
}
export declare class InputError extends AcikitError {}
export declare class InvalidImageError extends AcikitError {}
export declare class NotFoundError extends AcikitError {}
export declare class ConflictError extends AcikitError {}
export declare class IntegrityError extends AcikitError {}
export declare class TrustError extends AcikitError {}
export declare class NetworkError extends AcikitError {}
export declare class IoError extends AcikitError {}
export declare class PrivilegeError extends AcikitError {}
export declare class UnsupportedError extends AcikitError {}
/** `name === 'AbortError'`, `code === 'cancelled'`. */
export declare class CancelledError extends AcikitError {}
export declare class InternalError extends AcikitError {}

declare const acikit: {
  Store: typeof Store;
  Server: typeof Server;
  validate: typeof validate;
  imageId: typeof imageId;
  readManifest: typeof readManifest;
  discover: typeof discover;
  build: typeof build;
  sign: typeof sign;
  serve: typeof serve;
  push: typeof push;
  AcikitError: typeof AcikitError;
  InputError: typeof InputError;
  InvalidImageError: typeof InvalidImageError;
  NotFoundError: typeof NotFoundError;
  ConflictError: typeof ConflictError;
  IntegrityError: typeof IntegrityError;
  TrustError: typeof TrustError;
  NetworkError: typeof NetworkError;
  IoError: typeof IoError;
  PrivilegeError: typeof PrivilegeError;
  UnsupportedError: typeof UnsupportedError;
  CancelledError: typeof CancelledError;
  InternalError: typeof InternalError;
};
export default acikit;
