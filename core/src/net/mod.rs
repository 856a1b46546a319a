//! The HTTP(S) client shared by discovery and fetch: TLS roots, insecure options, per-host authentication and redirects.
