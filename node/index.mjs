// The ESM entry point: the same module as `require('acikit')`.
import acikit from './index.js';

export const {
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
} = acikit;
export default acikit;
