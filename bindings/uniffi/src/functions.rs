//! The module-level functions: archives (validate, image ID, manifest), discovery, build
//! and sign.

use std::collections::HashMap;
use std::sync::Arc;

use acikit::{Limits, inspect_file};

use crate::error::AcikitError;
use crate::net::{NetOptions, client};
use crate::progress::{CancelHandle, ProgressListener, observer};
use crate::records::{Built, Discovered, Inspection, Manifest, Signed, label_list};
use crate::runtime::spawn;

/// Validates the image archive at `path` (any compression) in one streaming pass: its
/// layout, every entry and the manifest. Fails with the error of the first problem.
#[uniffi::export(default(progress = None, cancel = None))]
pub async fn validate(
    path: String,
    progress: Option<Arc<dyn ProgressListener>>,
    cancel: Option<Arc<CancelHandle>>,
) -> Result<Inspection, AcikitError> {
    let call = observer(progress, cancel);
    let observer = call.observer.clone();
    let inspection = spawn(inspect_file(path, Limits::default(), observer)).await;
    call.finish().await;
    Ok(inspection?.into())
}

/// The image ID (`sha512-...`) of the archive at `path`, validating it.
#[uniffi::export(default(progress = None, cancel = None))]
pub async fn image_id(
    path: String,
    progress: Option<Arc<dyn ProgressListener>>,
    cancel: Option<Arc<CancelHandle>>,
) -> Result<String, AcikitError> {
    Ok(validate(path, progress, cancel).await?.id)
}

/// The manifest of the archive at `path`, validating it.
#[uniffi::export(default(progress = None, cancel = None))]
pub async fn read_manifest(
    path: String,
    progress: Option<Arc<dyn ProgressListener>>,
    cancel: Option<Arc<CancelHandle>>,
) -> Result<Manifest, AcikitError> {
    Ok(validate(path, progress, cancel).await?.manifest)
}

/// The image URLs, signature URLs and keys appc meta discovery finds for `name`
/// (`NAME[:VERSION]`) and `labels`; `progress` gets `discover` events (levels of the name
/// walked of its levels).
#[uniffi::export(default(net = None, pubkeys = true, progress = None, cancel = None, labels))]
pub async fn discover(
    name: String,
    labels: HashMap<String, String>,
    net: Option<NetOptions>,
    pubkeys: bool,
    progress: Option<Arc<dyn ProgressListener>>,
    cancel: Option<Arc<CancelHandle>>,
) -> Result<Discovered, AcikitError> {
    let call = observer(progress, cancel);
    let observer = call.observer.clone();
    let discovered = spawn(async move {
        let image = acikit::ImageName::parse(&name, &label_list(labels))?;
        let client = client(net.unwrap_or_default())?;
        let options = acikit::discovery::DiscoveryOptions::default().pubkeys(pubkeys);
        acikit::discovery::discover(&client, &image, &options, observer).await
    })
    .await;
    call.finish().await;
    Ok(discovered?.into())
}

/// Builds the image layout in the folder `layout` (`manifest` and `rootfs/`) into a
/// reproducible archive at `out` (`compression`: `BuildCompression::as_str()` names,
/// `gzip` by default).
#[uniffi::export(default(compression = "gzip", progress = None, cancel = None))]
pub async fn build(
    layout: String,
    out: String,
    compression: String,
    progress: Option<Arc<dyn ProgressListener>>,
    cancel: Option<Arc<CancelHandle>>,
) -> Result<Built, AcikitError> {
    let compression: acikit::BuildCompression = compression.parse()?;
    let call = observer(progress, cancel);
    let observer = call.observer.clone();
    let built = spawn(async move {
        acikit::Builder::new()
            .compression(compression)
            .build(layout, out, observer)
            .await
    })
    .await;
    call.finish().await;
    Ok(built?.into())
}

/// A detached signature of the file at `path` by the ascii-armored secret key
/// `secret_key` (writing it, usually to `PATH.asc`, is the caller's choice).
#[uniffi::export(default(passphrase = None, progress = None, cancel = None))]
pub async fn sign(
    path: String,
    secret_key: String,
    passphrase: Option<String>,
    progress: Option<Arc<dyn ProgressListener>>,
    cancel: Option<Arc<CancelHandle>>,
) -> Result<Signed, AcikitError> {
    let call = observer(progress, cancel);
    let observer = call.observer.clone();
    let signed = spawn(acikit::trust::sign_file(
        path,
        secret_key.into_bytes(),
        passphrase,
        observer,
    ))
    .await;
    call.finish().await;
    Ok(signed?.into())
}
