//! `serve`: an HTTP(S) image repository over the store; `push`: an ACI (and its signature)
//! into such a server's store.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use acikit::serve::{ServeOptions, Server, TlsFiles, push_file};
use acikit::{Error, ErrorKind};
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::net::NetArgs;
use super::store::fail;

/// What `acikit serve` was asked (its command-line flags).
#[derive(clap::Args)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// TLS certificate chain (PEM); without it the server speaks plain HTTP.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The bearer token pushes must carry (without one, pushes are refused).
    #[arg(long, value_name = "TOKEN")]
    pub push_token: Option<String>,
    /// A file holding the push token (first line), kept out of the process list.
    #[arg(long, value_name = "FILE")]
    pub push_token_file: Option<PathBuf>,
    /// Only accept pushes signed by a key the store trusts for the image's name.
    #[arg(long)]
    pub require_signature: bool,
    /// The base URL in the discovery templates (default: the request's own host).
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// A host name answered for in discovery (repeatable; default: any).
    #[arg(long = "host", value_name = "NAME")]
    pub hosts: Vec<String>,
    /// A plain file served at /files/NAME (repeatable).
    #[arg(long = "serve-file", value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// After SIGINT or SIGTERM, how long requests in flight may take to finish before
    /// their connections are closed (a second signal closes them at once).
    #[arg(long, value_name = "SECONDS", default_value = "10", value_parser = parse_seconds)]
    pub shutdown_grace: Duration,
    /// Machine-readable output (JSON).
    #[arg(long)]
    pub json: bool,
}

/// `acikit serve --listen ADDR [--tls-cert C --tls-key K] [--push-token T | --push-token-file F]`
pub async fn serve(store_dir: &Path, args: ServeArgs) -> ExitCode {
    let tls = match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => Some(TlsFiles::new(cert, key)),
        (None, None) => None,
        _ => {
            return fail(&Error::new(
                ErrorKind::InvalidArgument,
                "--tls-cert and --tls-key go together",
            ));
        }
    };
    let push_token = match (args.push_token, args.push_token_file) {
        (Some(_), Some(_)) => {
            return fail(&Error::new(
                ErrorKind::InvalidArgument,
                "give --push-token or --push-token-file, not both",
            ));
        }
        (Some(token), None) => Some(token),
        (None, Some(file)) => match std::fs::read_to_string(&file) {
            Ok(text) => match text.lines().next().map(str::trim) {
                Some(token) if !token.is_empty() => Some(token.to_string()),
                _ => {
                    return fail(&Error::new(
                        ErrorKind::InvalidArgument,
                        format!("{}: no token in it", file.display()),
                    ));
                }
            },
            Err(e) => return fail(&Error::io(format!("reading {}", file.display()), e)),
        },
        (None, None) => None,
    };
    // Before anything listens: a signal from then on stops the server cleanly.
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(err) => return fail(&err),
    };
    let store = match super::store::open_store(store_dir).await {
        Ok(store) => store,
        Err(err) => return fail(&err),
    };
    let tls_on = tls.is_some();
    let mut options = ServeOptions::new(args.listen);
    options.tls = tls;
    options.push_token = push_token;
    options.require_signature = args.require_signature;
    options.public_url = args.public_url;
    options.hosts = args.hosts;
    options.files = args.files;
    let mut running = match Server::new(store.clone(), options).start().await {
        Ok(running) => running,
        Err(err) => {
            store.close().await;
            return fail(&err);
        }
    };
    let addr = running.local_addr();
    let scheme = if tls_on { "https" } else { "http" };
    if args.json {
        // One line, so a script can read it before the server ends.
        outln!(
            "{}",
            serde_json::json!({
                "listening": addr.to_string(),
                "url": format!("{scheme}://{addr}"),
            })
        );
    } else {
        outln!("serving {} on {scheme}://{addr}", store_dir.display());
    }
    crate::stdout::finish();
    // Until SIGINT or SIGTERM: then no new connection is accepted, and requests in flight
    // (downloads, pushes) have the grace period to finish; a second signal ends them at
    // once. Either way nothing is left half-done in the store: an import cut short leaves
    // only its staging folder, removed at the next open.
    let served = tokio::select! {
        served = running.wait() => served,
        name = signals.next() => {
            errln!(
                "acikit serve: {name}: stopping; requests in flight have {}s to finish",
                args.shutdown_grace.as_secs_f64()
            );
            running.shutdown(args.shutdown_grace);
            tokio::select! {
                served = running.wait() => served,
                name = signals.next() => {
                    errln!("acikit serve: {name} again: closing every connection now");
                    running.shutdown_now();
                    running.wait().await
                }
            }
        }
    };
    store.close().await;
    match served {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => fail(&err),
    }
}

/// A number of seconds (fractions allowed), for `--shutdown-grace`.
pub fn parse_seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .ok_or_else(|| format!("{text:?} is not a number of seconds"))
}

/// SIGINT and SIGTERM, caught (their default action would kill the process at once).
struct Signals {
    interrupt: Signal,
    terminate: Signal,
}

impl Signals {
    fn new() -> acikit::Result<Signals> {
        let catch = |kind: SignalKind| {
            signal(kind).map_err(|e| Error::io("installing the signal handlers", e))
        };
        Ok(Signals {
            interrupt: catch(SignalKind::interrupt())?,
            terminate: catch(SignalKind::terminate())?,
        })
    }

    /// The name of the next signal.
    async fn next(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
        }
    }
}

/// `acikit push FILE [--signature F] --to URL --token T`
pub async fn push(
    store_dir: &Path,
    file: &Path,
    signature: Option<&Path>,
    to: &str,
    token: &str,
    net: &NetArgs,
    json: bool,
) -> ExitCode {
    let signature = match signature {
        Some(path) => match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(e) => return fail(&Error::io(format!("reading {}", path.display()), e)),
        },
        None => None,
    };
    let client = match net
        .net_options(store_dir)
        .and_then(acikit::net::HttpClient::new)
    {
        Ok(client) => client,
        Err(err) => return fail(&err),
    };
    let (observer, bar) = super::progress::observer("pushing");
    let interrupt = super::interrupt::Interrupt::cancels(&observer.cancel, "push");
    let result = push_file(&client, to, file, signature.as_deref(), token, observer).await;
    drop(interrupt);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(pushed) if json => {
            crate::report::print_json(&pushed);
            ExitCode::SUCCESS
        }
        Ok(pushed) => {
            outln!(
                "{} {} ({}{}, served as {})",
                pushed.image_id,
                pushed.name,
                if pushed.already_present {
                    "already there"
                } else {
                    "pushed"
                },
                match (pushed.signed, &pushed.verified_by) {
                    (false, _) => String::new(),
                    (true, Some(key)) => format!(", signed, verified with key {key}"),
                    (true, None) =>
                        ", signed, unchecked: the server does not know the key".to_string(),
                },
                pushed.form.as_str()
            );
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}
