//! The `file` transport: images and signatures from the local file system
//! (`file:///path/to/image.aci`), with resume by seeking.

use std::io::SeekFrom;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use tokio::io::AsyncSeekExt;

use super::transport::{Body, CacheInfo, Transport, TransportRequest, TransportResponse};
use crate::progress::Observer;
use crate::{Error, ErrorKind, Result};

/// Bytes per chunk read from a file.
const CHUNK: usize = 256 * 1024;

/// Reads `file://` URLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileTransport;

impl Transport for FileTransport {
    fn handles(&self, scheme: &str) -> bool {
        scheme == "file"
    }

    fn open<'a>(
        &'a self,
        request: TransportRequest,
        _observer: &'a Observer,
    ) -> BoxFuture<'a, Result<TransportResponse>> {
        async move {
            let url = &request.url;
            let path = url.to_file_path().map_err(|()| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("{url} is not a local file URL"),
                )
            })?;
            let mut file = tokio::fs::File::open(&path)
                .await
                .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
            let total = file
                .metadata()
                .await
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?
                .len();
            if request.offset > 0 {
                file.seek(SeekFrom::Start(request.offset))
                    .await
                    .map_err(|e| Error::io(format!("seeking in {}", path.display()), e))?;
            }
            let shown = path.display().to_string();
            let stream = tokio_util::io::ReaderStream::with_capacity(file, CHUNK)
                .map(move |chunk| chunk.map_err(|e| Error::io(format!("reading {shown}"), e)));
            Ok(TransportResponse::Body(Body {
                stream: Box::pin(stream),
                offset: request.offset,
                total: Some(total),
                cache: CacheInfo::default(),
            }))
        }
        .boxed()
    }
}
