//! [`NetArgs`]: the network options of every command that talks HTTPS (`discover`, and
//! `fetch` later through `#[command(flatten)]`).

use std::path::{Path, PathBuf};

use acikit::net::{AuthConfig, CaCert, InsecureOptions, NetOptions};
use clap::Args;

/// Network options: extra trusted CAs, discovery port, insecure steps, credentials.
#[derive(Args, Clone, Debug)]
pub struct NetArgs {
    /// An extra trusted CA certificate (PEM file), added to the system's roots. Repeatable.
    #[arg(long = "ca-cert", value_name = "FILE")]
    pub ca_certs: Vec<PathBuf>,
    /// The port discovery connects to (default: 443, or 80 for plain HTTP).
    #[arg(long, value_name = "N")]
    pub port: Option<u16>,
    /// Insecure steps to allow, spelled out: a comma-separated list of `http` (plain
    /// HTTP), `tls` (no certificate checks), `image` (no signature check), or `none`.
    #[arg(long, value_name = "LIST", default_value = "none", value_parser = parse_insecure)]
    pub insecure_options: InsecureOptions,
    /// Per-host credentials, JSON (default: STORE/config/auth.json when it exists).
    #[arg(long, value_name = "FILE")]
    pub auth_config: Option<PathBuf>,
}

fn parse_insecure(text: &str) -> Result<InsecureOptions, String> {
    InsecureOptions::parse(text).map_err(|e| e.message().to_string())
}

impl NetArgs {
    /// The core's options: the CA files, port, insecure options and the credentials file
    /// (given, or `store_dir/config/auth.json` if present).
    pub fn net_options(&self, store_dir: &Path) -> acikit::Result<NetOptions> {
        let auth = match &self.auth_config {
            Some(path) => AuthConfig::load(path)?,
            None => AuthConfig::load_if_present(&acikit::store::auth_config_path(store_dir))?,
        };
        let mut options = NetOptions::default();
        options.ca_certs = self.ca_certs.iter().cloned().map(CaCert::Path).collect();
        options.insecure = self.insecure_options;
        options.port = self.port;
        options.auth = auth;
        Ok(options)
    }
}
