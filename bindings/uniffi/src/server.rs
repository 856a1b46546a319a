//! `serve`: an HTTP image repository over a store (discovery, images, signatures, keys,
//! pushes), running on the crate's runtime until stopped.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::error::AcikitError;
use crate::runtime::spawn;
use crate::store::Store;

/// How to serve a store.
#[derive(Debug, Clone, Default, uniffi::Record)]
pub struct ServeOptions {
    /// The bearer token pushes must carry; none refuses pushes.
    #[uniffi(default = None)]
    pub push_token: Option<String>,
    /// Refuse pushes without a signature by a trusted key.
    #[uniffi(default = false)]
    pub require_signature: bool,
    /// The URL clients reach the server at, if not the one they asked.
    #[uniffi(default = None)]
    pub public_url: Option<String>,
}

/// A running image repository; stop it with [`stop`](Self::stop).
#[derive(uniffi::Object)]
pub struct RunningServer {
    addr: std::net::SocketAddr,
    server: Arc<Mutex<Option<acikit::RunningServer>>>,
}

#[uniffi::export]
impl RunningServer {
    /// The address it listens on (`ip:port`).
    pub fn address(&self) -> String {
        self.addr.to_string()
    }

    /// Its base URL (`http://ip:port`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops it: new connections are refused, requests in flight get `grace_ms` to
    /// finish; returns once it has stopped.
    #[uniffi::method(default(grace_ms = 5000))]
    pub async fn stop(&self, grace_ms: u64) -> Result<(), AcikitError> {
        let server = self.server.lock().expect("the server lock").take();
        let Some(mut server) = server else {
            return Ok(());
        };
        spawn(async move {
            server.shutdown(Duration::from_millis(grace_ms));
            server.wait().await
        })
        .await
    }
}

/// Serves `store` over plain HTTP on `listen` (`ip:port`; port 0 picks a free one).
#[uniffi::export(default(listen = "127.0.0.1:0", options = None))]
pub async fn serve(
    store: Arc<Store>,
    listen: String,
    options: Option<ServeOptions>,
) -> Result<Arc<RunningServer>, AcikitError> {
    let store = store.inner().clone();
    let options = options.unwrap_or_default();
    let running = spawn(async move {
        let listen = listen.parse().map_err(|_| {
            acikit::Error::new(
                acikit::ErrorKind::InvalidArgument,
                format!("{listen} is not an address to listen on (ip:port)"),
            )
        })?;
        let mut serve = acikit::ServeOptions::new(listen);
        serve.push_token = options.push_token;
        serve.require_signature = options.require_signature;
        serve.public_url = options.public_url;
        acikit::Server::new(store, serve).start().await
    })
    .await?;
    Ok(Arc::new(RunningServer {
        addr: running.local_addr(),
        server: Arc::new(Mutex::new(Some(running))),
    }))
}

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct Pushed {
    /// The image ID.
    pub id: String,
    /// The image name.
    pub name: String,
    /// The server already had the image.
    pub already_present: bool,
    /// A signature is stored with it.
    pub signed: bool,
    /// The fingerprint of the trusted key the server verified that signature with.
    pub verified_by: Option<String>,
}

/// Pushes the image archive at `path` (and its ascii-armored detached `signature`, if
/// any) to the image repository at `url` (`http[s]://host[:port]`), with its push token.
#[uniffi::export(default(signature = None, net = None, progress = None, cancel = None))]
pub async fn push(
    url: String,
    path: String,
    token: String,
    signature: Option<String>,
    net: Option<crate::net::NetOptions>,
    progress: Option<Arc<dyn crate::progress::ProgressListener>>,
    cancel: Option<Arc<crate::progress::CancelHandle>>,
) -> Result<Pushed, AcikitError> {
    let call = crate::progress::observer(progress, cancel);
    let observer = call.observer.clone();
    let pushed = spawn(async move {
        let client = crate::net::client(net.unwrap_or_default())?;
        let signature = signature.map(String::into_bytes);
        acikit::serve::push_file(
            &client,
            &url,
            std::path::Path::new(&path),
            signature.as_deref(),
            &token,
            observer,
        )
        .await
    })
    .await;
    call.finish().await;
    let pushed = pushed?;
    Ok(Pushed {
        id: pushed.image_id.to_string(),
        name: pushed.name,
        already_present: pushed.already_present,
        signed: pushed.signed,
        verified_by: pushed.verified_by,
    })
}
