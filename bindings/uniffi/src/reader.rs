//! `ImageReader`: an image's canonical tar, read chunk by chunk.

use std::sync::Arc;

use tokio::sync::Mutex;

use crate::error::AcikitError;
use crate::runtime::spawn;

/// The canonical tar of a stored image, regenerated as it is read (`Store.openRead`).
/// Each `read` gives the next chunk, null at the end; the end comes only once the bytes
/// hashed to the image ID (else `read` fails with `corrupt_store`). Closing it (in Kotlin
/// `close()` or `use { }`) stops the regeneration.
#[derive(uniffi::Object)]
pub struct ImageReader {
    inner: Arc<Mutex<Option<acikit::store::ExportReader>>>,
}

impl ImageReader {
    /// Wraps the core's reader.
    pub(crate) fn new(reader: acikit::store::ExportReader) -> Self {
        ImageReader {
            inner: Arc::new(Mutex::new(Some(reader))),
        }
    }
}

#[uniffi::export]
impl ImageReader {
    /// The next chunk of the tar, or null at its (verified) end or once closed.
    pub async fn read(&self) -> Result<Option<Vec<u8>>, AcikitError> {
        let inner = self.inner.clone();
        spawn(async move {
            let mut guard = inner.lock().await;
            let Some(reader) = guard.as_mut() else {
                return Ok(None);
            };
            match reader.next_chunk().await {
                Ok(Some(chunk)) => Ok(Some(chunk.to_vec())),
                Ok(None) => {
                    *guard = None;
                    Ok(None)
                }
                Err(err) => {
                    *guard = None;
                    Err(acikit::Error::from(err))
                }
            }
        })
        .await
    }
}
