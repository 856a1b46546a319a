//! The HTTP(S) client shared by discovery and fetch: TLS roots, insecure options, per-host authentication and redirects.
//!
//! - `options`: [`NetOptions`] (extra CAs, [`InsecureOptions`], discovery port, timeouts,
//!   user agent, host overrides);
//! - `auth`: [`AuthConfig`], per-host basic and bearer credentials from a JSON file;
//! - `client`: [`HttpClient`], one connection pool and a checked, bounded redirect loop;
//!   [`Response`] streams its body.
//!
//! TLS is rustls with the aws-lc-rs provider (the only one in the build), verifying with
//! the platform's roots plus any extra CA given.

mod auth;
mod client;
mod options;

pub use auth::{AuthConfig, Credential};
pub use client::{ByteStream, HttpClient, Response};
pub use options::{CaCert, InsecureOptions, NetOptions, USER_AGENT};
