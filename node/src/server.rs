//! `serve`: an HTTP image repository over a store, stopped with `close()`.

use std::time::Duration;

use acikit::{ErrorKind, ServeOptions, Server};
use napi_derive::napi;
use tokio::sync::Mutex;

use crate::error::{napi_result, to_napi};
use crate::store::NativeStore;

/// How to serve.
#[napi(object)]
#[derive(Default)]
pub struct ServeArgs {
    /// `IP:PORT` to listen on (default `127.0.0.1:0`: a free port).
    pub listen: Option<String>,
    /// The bearer token pushes need (pushes off without one).
    pub push_token: Option<String>,
    /// Refuse pushes without a trusted signature.
    pub require_signature: Option<bool>,
    /// The URL clients reach the server at, if not `http://LISTEN`.
    pub public_url: Option<String>,
    /// Host names discovery answers for (any without).
    pub hosts: Option<Vec<String>>,
}

/// A running image repository.
#[napi]
pub struct NativeServer {
    url: String,
    running: Mutex<Option<acikit::RunningServer>>,
}

/// Starts serving `store`.
#[napi]
pub async fn serve(store: &NativeStore, args: Option<ServeArgs>) -> napi::Result<NativeServer> {
    let args = args.unwrap_or_default();
    let listen = args.listen.as_deref().unwrap_or("127.0.0.1:0");
    let listen = listen.parse().map_err(|e| {
        to_napi(acikit::Error::new(
            ErrorKind::InvalidArgument,
            format!("bad listen address {listen:?}: {e}"),
        ))
    })?;
    let mut options = ServeOptions::new(listen);
    options.push_token = args.push_token;
    options.require_signature = args.require_signature.unwrap_or(false);
    options.public_url = args.public_url;
    options.hosts = args.hosts.unwrap_or_default();
    let running = napi_result(Server::new(store.inner().clone(), options).start().await)?;
    Ok(NativeServer {
        url: format!("http://{}", running.local_addr()),
        running: Mutex::new(Some(running)),
    })
}

#[napi]
impl NativeServer {
    /// The base URL (`http://IP:PORT`).
    #[napi(getter)]
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Stops serving, letting requests in flight finish for up to `grace_ms`.
    #[napi]
    pub async fn close(&self, grace_ms: Option<u32>) -> napi::Result<()> {
        let Some(running) = self.running.lock().await.take() else {
            return Ok(());
        };
        let grace = Duration::from_millis(u64::from(grace_ms.unwrap_or(0)));
        napi_result(running.stop(grace).await)
    }
}
