//! The native addon of the `acikit` npm package (napi-rs).
//!
//! A thin layer over the `acikit` core: every call hands a core future to napi's tokio
//! runtime and returns a Promise. The JS wrapper (`index.js`) turns the native pieces into
//! the package's API: `AcikitError` classes from the encoded errors ([`error`]), an
//! `AbortSignal` mapped to a [`observer::CancelHandle`], Node streams over
//! [`reader::NativeReader`], `Date`s and label maps from the records ([`records`]).

pub mod error;
pub mod functions;
pub mod net;
pub mod observer;
pub mod reader;
pub mod records;
pub mod server;
pub mod store;
