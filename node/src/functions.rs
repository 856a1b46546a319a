//! The module-level calls: validating an archive, discovery, building and signing.

use acikit::net::HttpClient;
use acikit::{BuildCompression, Builder, ImageName, Label, Limits};
use napi_derive::napi;

use crate::error::napi_result;
use crate::net::NetArgs;
use crate::observer::{CancelHandle, ProgressEvent, observer};
use crate::records::{BuildRecord, DiscoverRecord, InspectRecord, LabelRecord, SignRecord};
use napi::Status;
use napi::threadsafe_function::ThreadsafeFunction;

/// Validates the archive at `path` (any compression) in one pass: its image ID and
/// manifest, or the typed error of the first problem.
#[napi]
pub async fn inspect(
    path: String,
    cancel: Option<&CancelHandle>,
    on_progress: Option<ThreadsafeFunction<ProgressEvent, (), ProgressEvent, Status, false>>,
) -> napi::Result<InspectRecord> {
    let observer = observer(cancel, on_progress);
    let inspection = acikit::inspect_file(path, Limits::default(), observer).await;
    Ok(napi_result(inspection)?.into())
}

/// Meta discovery of `name` (`NAME[:VERSION]` and labels): image, signature and key URLs.
#[napi]
pub async fn discover(
    name: String,
    labels: Option<Vec<LabelRecord>>,
    net: Option<NetArgs>,
    cancel: Option<&CancelHandle>,
    on_progress: Option<ThreadsafeFunction<ProgressEvent, (), ProgressEvent, Status, false>>,
) -> napi::Result<DiscoverRecord> {
    let observer = observer(cancel, on_progress);
    let labels: Vec<Label> = labels
        .unwrap_or_default()
        .into_iter()
        .map(Into::into)
        .collect();
    let image = napi_result(ImageName::parse(&name, &labels))?;
    let client = napi_result(
        net.unwrap_or_default()
            .to_options()
            .and_then(HttpClient::new),
    )?;
    let options = acikit::discovery::DiscoveryOptions::default();
    let found = acikit::discovery::discover(&client, &image, &options, observer).await;
    Ok(napi_result(found)?.into())
}

/// Builds the image layout `dir` (`manifest` + `rootfs/`) into the archive `out`.
#[napi]
pub async fn build(
    dir: String,
    out: String,
    compression: Option<String>,
    mtime: Option<i64>,
    cancel: Option<&CancelHandle>,
    on_progress: Option<ThreadsafeFunction<ProgressEvent, (), ProgressEvent, Status, false>>,
) -> napi::Result<BuildRecord> {
    let observer = observer(cancel, on_progress);
    let compression: BuildCompression = match compression {
        Some(name) => napi_result(name.parse())?,
        None => BuildCompression::default(),
    };
    let builder = Builder::new().compression(compression).mtime_clamp(mtime);
    let built = builder.build(dir, out, observer).await;
    Ok(napi_result(built)?.into())
}

/// A detached, ascii-armored signature of the file at `path` by the armored secret `key`.
#[napi]
pub async fn sign(
    path: String,
    key: String,
    passphrase: Option<String>,
    cancel: Option<&CancelHandle>,
    on_progress: Option<ThreadsafeFunction<ProgressEvent, (), ProgressEvent, Status, false>>,
) -> napi::Result<SignRecord> {
    let observer = observer(cancel, on_progress);
    let signed = acikit::trust::sign_file(path, key.into_bytes(), passphrase, observer).await;
    Ok(napi_result(signed)?.into())
}

/// What a push reports.
#[napi(object)]
pub struct PushRecord {
    /// The image ID.
    pub id: String,
    /// The image name.
    pub name: String,
    /// Whether the server had the image already.
    pub already_present: bool,
    /// Whether a signature went with it.
    pub signed: bool,
    /// Whether the server checked the signature against its trusted keys.
    pub signature_checked: bool,
}

/// Pushes the archive at `path` (with its armored detached `signature`, if any) to the
/// image repository at `url`, authorized by `token`.
#[napi]
pub async fn push(
    url: String,
    path: String,
    signature: Option<String>,
    token: String,
    net: Option<NetArgs>,
    cancel: Option<&CancelHandle>,
    on_progress: Option<ThreadsafeFunction<ProgressEvent, (), ProgressEvent, Status, false>>,
) -> napi::Result<PushRecord> {
    let observer = observer(cancel, on_progress);
    let client = napi_result(
        net.unwrap_or_default()
            .to_options()
            .and_then(HttpClient::new),
    )?;
    let signature = signature.map(String::into_bytes);
    let pushed = acikit::serve::push_file(
        &client,
        &url,
        std::path::Path::new(&path),
        signature.as_deref(),
        &token,
        observer,
    )
    .await;
    let pushed = napi_result(pushed)?;
    Ok(PushRecord {
        id: pushed.image_id.to_string(),
        name: pushed.name,
        already_present: pushed.already_present,
        signed: pushed.signed,
        signature_checked: pushed.signature_checked,
    })
}
