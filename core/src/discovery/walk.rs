//! The parent-path walk: which discovery URLs are fetched, in which order, and when the
//! walk stops.
//!
//! For `example.com/project/app` the levels are `example.com/project/app`,
//! `example.com/project`, `example.com`. Each level's URL is
//! `https://LEVEL?ac-discovery=1` (on [`NetOptions::port`](crate::net::NetOptions::port)
//! when set); with the `http` insecure option, `http://` is tried next when HTTPS fails
//! or answers other than 2xx, as the reference does.
//!
//! A level that answers 4xx, 5xx, fails to connect, redirects too often, or holds no
//! usable tag is noted and the walk goes up: like the reference, a broken level never
//! hides its parent. What the caller must decide on stops the walk at once: a refused
//! insecure step ([`ErrorKind::InsecureRefused`]) and cancellation.
//!
//! Image endpoints come from the first (deepest) level whose tags render at least one
//! endpoint; public keys from the first level that lists any, which may be another level.
//! The walk ends when both are found (or the root is reached).

use std::collections::BTreeMap;

use reqwest::header::{self, HeaderMap, HeaderValue};
use url::Url;

use super::meta::{self, MetaKind, MetaTag};
use super::template;
use super::{AciEndpoint, Discovered};
use crate::net::HttpClient;
use crate::progress::{Observer, Phase};
use crate::{Error, ErrorKind, Result};

/// Largest discovery document read; the rest is ignored (meta tags belong in `<head>`).
pub const MAX_DOCUMENT: usize = 1 << 20;

/// The names tried, deepest first: `a/b/c`, `a/b`, `a`.
pub fn levels(name: &str) -> Vec<String> {
    let parts: Vec<&str> = name.split('/').collect();
    (1..=parts.len())
        .rev()
        .map(|n| parts[..n].join("/"))
        .collect()
}

/// `SCHEME://LEVEL?ac-discovery=1`, on `port` when given.
pub fn discovery_url(level: &str, scheme: &str, port: Option<u16>) -> Result<Url> {
    let mut url = Url::parse(&format!("{scheme}://{level}")).map_err(|e| {
        Error::new(
            ErrorKind::InvalidValue,
            format!("{level:?} does not make a discovery URL: {e}"),
        )
    })?;
    if let Some(port) = port {
        url.set_port(Some(port)).map_err(|()| {
            Error::new(
                ErrorKind::InvalidValue,
                format!("cannot set port {port} on {url}"),
            )
        })?;
    }
    url.set_query(Some("ac-discovery=1"));
    Ok(url)
}

/// Walks the levels of `name`, rendering templates with `vars` (name and labels).
pub(super) async fn walk(
    client: &HttpClient,
    name: &str,
    vars: &BTreeMap<String, String>,
    want_pubkeys: bool,
    observer: &Observer,
) -> Result<Discovered> {
    let mut endpoints: Option<Vec<AciEndpoint>> = None;
    let mut pubkeys: Option<Vec<String>> = None;
    let mut tried = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let levels = levels(name);
    let total = levels.len() as u64;
    observer.report(Phase::Discover, 0, Some(total));
    for (walked, level) in (1..).zip(levels) {
        if endpoints.is_some() && (pubkeys.is_some() || !want_pubkeys) {
            // The levels above are not needed: they count as done.
            observer.report(Phase::Discover, total, Some(total));
            break;
        }
        let fetched = fetch_level(client, &level, observer, &mut tried, &mut notes).await?;
        observer.report(Phase::Discover, walked, Some(total));
        let Some((url, tags)) = fetched else {
            continue;
        };
        let matching: Vec<&MetaTag> = tags
            .iter()
            .filter(|t| name.starts_with(&t.prefix))
            .collect();
        if endpoints.is_none() {
            let found = render_endpoints(&matching, vars, &url, &mut notes);
            if !found.is_empty() {
                endpoints = Some(found);
            }
        }
        if pubkeys.is_none() {
            let mut found: Vec<String> = Vec::new();
            for tag in matching.iter().filter(|t| t.kind == MetaKind::Pubkeys) {
                if !found.contains(&tag.url) {
                    found.push(tag.url.clone());
                }
            }
            if !found.is_empty() {
                pubkeys = Some(found);
            }
        }
        if matching.is_empty() {
            notes.push(format!(
                "{url}: no ac-discovery meta tag with a prefix of {name:?}"
            ));
        }
    }
    match endpoints {
        Some(aci_endpoints) => Ok(Discovered {
            name: name.to_string(),
            labels: vars
                .iter()
                .filter(|(k, _)| k.as_str() != "name")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            aci_endpoints,
            pubkeys: pubkeys.unwrap_or_default(),
            tried,
        }),
        None => Err(Error::new(
            ErrorKind::DiscoveryFailed,
            format!(
                "no image endpoint found for {name:?}; tried: {}",
                if notes.is_empty() {
                    tried.join(", ")
                } else {
                    notes.join("; ")
                }
            ),
        )),
    }
}

/// Fetches one level (HTTPS, then HTTP when allowed). `None` when no document was
/// read (the reasons go to `notes`); errors only for what must stop the walk.
async fn fetch_level(
    client: &HttpClient,
    level: &str,
    observer: &Observer,
    tried: &mut Vec<String>,
    notes: &mut Vec<String>,
) -> Result<Option<(Url, Vec<MetaTag>)>> {
    let options = client.options();
    let schemes: &[&str] = if options.insecure.http {
        &["https", "http"]
    } else {
        &["https"]
    };
    for scheme in schemes {
        let url = discovery_url(level, scheme, options.port)?;
        tried.push(url.to_string());
        let mut headers = HeaderMap::new();
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html, application/xhtml+xml;q=0.9, */*;q=0.1"),
        );
        let response = match client.get(url.clone(), headers, observer).await {
            Ok(response) => response,
            Err(e) if stops_walk(e.kind()) => return Err(e),
            Err(e) => {
                notes.push(note(&url, &e));
                continue;
            }
        };
        if !response.status.is_success() {
            notes.push(format!("{url}: HTTP {}", response.status));
            continue;
        }
        let final_url = response.url.clone();
        match response.bytes_limited(MAX_DOCUMENT).await {
            Ok((body, _truncated)) => {
                let html = String::from_utf8_lossy(&body);
                return Ok(Some((final_url, meta::extract(&html))));
            }
            Err(e) if stops_walk(e.kind()) => return Err(e),
            Err(e) => notes.push(note(&url, &e)),
        }
    }
    Ok(None)
}

/// `URL: what went wrong`, without naming the URL twice.
fn note(url: &Url, err: &Error) -> String {
    if err.message().contains(url.as_str()) {
        err.message().to_string()
    } else {
        format!("{url}: {}", err.message())
    }
}

fn stops_walk(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Cancelled | ErrorKind::InsecureRefused | ErrorKind::InvalidArgument
    )
}

/// The endpoints of the matching `ac-discovery` tags, in order, without repeats; a
/// template that cannot be rendered is noted.
fn render_endpoints(
    tags: &[&MetaTag],
    vars: &BTreeMap<String, String>,
    url: &Url,
    notes: &mut Vec<String>,
) -> Vec<AciEndpoint> {
    let mut out: Vec<AciEndpoint> = Vec::new();
    for tag in tags.iter().filter(|t| t.kind == MetaKind::Discovery) {
        match template::render(&tag.url, vars) {
            Some(r) => {
                let endpoint = AciEndpoint {
                    aci: r.aci,
                    asc: r.asc,
                };
                if !out.contains(&endpoint) {
                    out.push(endpoint);
                }
            }
            None => {
                let names = template::variables(&tag.url);
                let missing: Vec<&str> = names
                    .iter()
                    .copied()
                    .filter(|v| *v != "ext" && !vars.contains_key(*v))
                    .collect();
                let why = if missing.is_empty() {
                    "has no {ext}".to_string()
                } else {
                    format!("needs label(s) {}", missing.join(", "))
                };
                notes.push(format!("{url}: template {} dropped: {why}", tag.url));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_go_up_to_the_host() {
        assert_eq!(
            levels("example.com/project/sub"),
            vec![
                "example.com/project/sub",
                "example.com/project",
                "example.com"
            ]
        );
        assert_eq!(levels("example.com"), vec!["example.com"]);
    }

    #[test]
    fn urls_carry_port_and_query() {
        assert_eq!(
            discovery_url("example.com/app", "https", None)
                .unwrap()
                .as_str(),
            "https://example.com/app?ac-discovery=1"
        );
        assert_eq!(
            discovery_url("localhost/acme/app", "http", Some(8443))
                .unwrap()
                .as_str(),
            "http://localhost:8443/acme/app?ac-discovery=1"
        );
        assert_eq!(
            discovery_url("example.com", "https", Some(443))
                .unwrap()
                .as_str(),
            "https://example.com/?ac-discovery=1"
        );
    }
}
