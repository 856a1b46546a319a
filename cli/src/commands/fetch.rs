//! `fetch`: get an image by name (meta discovery), URL or `file://` path into the store,
//! signature verified, with its dependencies.

use std::path::Path;
use std::process::ExitCode;

use acikit::Label;
use acikit::fetch::{FetchOptions, FetchOutcome, FetchSource, Fetched};

use super::interrupt::Interrupt;
use super::net::NetArgs;
use super::progress;
use super::store::fail;

/// What `acikit fetch` was asked.
pub struct FetchArgs<'a> {
    /// `NAME[:VERSION]`, or an image URL.
    pub image: &'a str,
    /// Labels to discover and check.
    pub labels: &'a [Label],
    /// The signature URL, for a URL fetch whose signature is not at URL + `.asc`.
    pub signature: Option<&'a str>,
    /// Trust the keys discovery lists for the image's name.
    pub trust_discovered_keys: bool,
    /// Most bytes downloaded per image.
    pub max_size: Option<u64>,
    /// Skip dependencies.
    pub no_dependencies: bool,
    /// Network options.
    pub net: &'a NetArgs,
    /// JSON output.
    pub json: bool,
}

/// `acikit fetch NAME[:VERSION]|URL [--label K=V]... [--json]`
pub async fn fetch(store_dir: &Path, args: FetchArgs<'_>) -> ExitCode {
    let mut source = match FetchSource::parse(args.image, args.labels) {
        Ok(source) => source,
        Err(err) => return fail(&err),
    };
    if let (FetchSource::Url { signature, .. }, Some(given)) = (&mut source, args.signature) {
        *signature = Some(given.to_string());
    }
    let net = match args.net.net_options(store_dir) {
        Ok(net) => net,
        Err(err) => return fail(&err),
    };
    let store = match super::store::open_store(store_dir).await {
        Ok(store) => store,
        Err(err) => return fail(&err),
    };
    let (observer, bar) = progress::observer("fetching");
    let defaults = FetchOptions::default();
    let max_size = args.max_size.unwrap_or(defaults.max_size);
    let options = defaults
        .net(net)
        .trust_discovered_keys(args.trust_discovered_keys)
        .max_size(max_size)
        .dependencies(!args.no_dependencies);
    let interrupt = Interrupt::cancels(&observer.cancel, "fetch");
    let result = store.fetch(source, options, observer).await;
    drop(interrupt);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(fetched) if args.json => {
            crate::report::print_json(&fetched);
            ExitCode::SUCCESS
        }
        Ok(fetched) => {
            for key in &fetched.keys_added {
                errln!(
                    "trusted key {} for {} (from {})",
                    key.fingerprint,
                    key.prefix,
                    key.url
                );
            }
            print_tree(&fetched, 0);
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

fn print_tree(fetched: &Fetched, depth: usize) {
    let how = match fetched.outcome {
        FetchOutcome::Downloaded => "downloaded",
        FetchOutcome::AlreadyPresent => "downloaded, already in the store",
        FetchOutcome::NotModified => "not modified",
        FetchOutcome::Cached => "in the store",
        _ => "fetched",
    };
    let signer = fetched
        .signature
        .as_ref()
        .map(|s| format!(", signed by {}", s.fingerprint))
        .unwrap_or_default();
    outln!(
        "{:indent$}{} {} ({how}{signer})",
        "",
        fetched.image_id,
        fetched.name,
        indent = depth * 2
    );
    for dep in &fetched.dependencies {
        print_tree(dep, depth + 1);
    }
}
