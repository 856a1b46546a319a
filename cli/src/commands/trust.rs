//! The trust commands: `trust add`, `trust list`, `trust rm` over the store's trusted keys.

use std::path::Path;
use std::process::ExitCode;

use acikit::trust::{TrustScope, TrustStore, TrustedKey};
use acikit::{Error, Store};

use super::store::{fail, open};
use crate::report;

async fn trust_store(dir: &Path) -> Result<TrustStore, ExitCode> {
    let store: Store = open(dir).await?;
    store.trust().map_err(|e| fail(&e))
}

/// The trusted keys, to change them: refused at once on a read-only store.
async fn trust_store_to_change(dir: &Path) -> Result<TrustStore, ExitCode> {
    let store: Store = open(dir).await?;
    store.trust_to_change().map_err(|e| fail(&e))
}

/// Runs a blocking trust-store call off the async runtime.
async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> acikit::Result<T> + Send + 'static,
) -> acikit::Result<T> {
    tokio::task::spawn_blocking(call).await.unwrap_or_else(|e| {
        Err(Error::new(
            acikit::ErrorKind::Internal,
            format!("a background task failed: {e}"),
        ))
    })
}

/// `YYYY-MM-DD` in UTC of seconds since the epoch.
fn date(secs: u64) -> String {
    acikit::clock::format_utc_date(i64::try_from(secs).unwrap_or(i64::MAX / 2))
}

fn scope_text(scope: &TrustScope) -> String {
    match scope {
        TrustScope::Root => "root".to_string(),
        TrustScope::Prefix(prefix) => prefix.clone(),
    }
}

/// `acikit trust add (--prefix P | --root) KEYFILE`
pub async fn add(
    dir: &Path,
    prefix: Option<&str>,
    root: bool,
    keyfile: &Path,
    json: bool,
) -> ExitCode {
    let scope = match (prefix, root) {
        (Some(prefix), false) => match TrustScope::prefix(prefix) {
            Ok(scope) => scope,
            Err(err) => return fail(&err),
        },
        (None, true) => TrustScope::Root,
        _ => {
            return fail(&Error::new(
                acikit::ErrorKind::InvalidArgument,
                "give exactly one of --prefix PREFIX or --root",
            ));
        }
    };
    let bytes = match std::fs::read(keyfile) {
        Ok(bytes) => bytes,
        Err(e) => return fail(&Error::io(format!("reading {}", keyfile.display()), e)),
    };
    let trust = match trust_store_to_change(dir).await {
        Ok(trust) => trust,
        Err(code) => return code,
    };
    match blocking(move || trust.add(&bytes, scope)).await {
        Ok(key) => {
            if json {
                report::print_json(&key);
            } else {
                outln!("trusted {} for {}", key.fingerprint, key.scope);
                for uid in &key.user_ids {
                    outln!("  user ID: {uid}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

/// `acikit trust list`
pub async fn list(dir: &Path, json: bool) -> ExitCode {
    let trust = match trust_store(dir).await {
        Ok(trust) => trust,
        Err(code) => return code,
    };
    let keys: Vec<TrustedKey> = match blocking(move || trust.list()).await {
        Ok(keys) => keys,
        Err(err) => return fail(&err),
    };
    if json {
        report::print_json(&keys);
        return ExitCode::SUCCESS;
    }
    outln!(
        "{:<40} {:<24} {:<10} {:<10} {:<10}  USER IDS",
        "FINGERPRINT",
        "SCOPE",
        "ALGORITHM",
        "CREATED",
        "EXPIRES"
    );
    for key in &keys {
        outln!(
            "{:<40} {:<24} {:<10} {:<10} {:<10}  {}",
            key.fingerprint,
            scope_text(&key.scope),
            key.algorithm,
            date(key.created_at),
            key.expires_at.map_or_else(|| "never".to_string(), date),
            key.user_ids.join(", ")
        );
    }
    ExitCode::SUCCESS
}

/// `acikit trust rm FINGERPRINT`
pub async fn rm(dir: &Path, fingerprint: &str, json: bool) -> ExitCode {
    let trust = match trust_store_to_change(dir).await {
        Ok(trust) => trust,
        Err(code) => return code,
    };
    let fingerprint = fingerprint.to_string();
    match blocking(move || trust.remove(&fingerprint)).await {
        Ok(removed) => {
            if json {
                report::print_json(&serde_json::json!({ "removed": removed }));
            } else {
                for key in &removed {
                    outln!("removed {}, trusted for {}", key.fingerprint, key.scope);
                }
            }
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn dates_are_utc_civil_dates() {
        assert_eq!(super::date(0), "1970-01-01");
        assert_eq!(super::date(1_577_836_800 + 86_399), "2020-01-01");
    }
}
