//! `acikit build DIR OUT` (an image layout to a reproducible image archive) and
//! `acikit sign FILE --key SECRETKEY` (an ascii-armored detached signature).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use acikit::Error;
use acikit::build::{BuildCompression, Builder};

use super::progress;
use super::store::{CompressionArg, fail};
use crate::report::print_json;

/// `acikit build DIR OUT [--compression C] [--mtime SECONDS]`
pub async fn build(
    dir: &Path,
    out: &Path,
    compression: CompressionArg,
    mtime: Option<i64>,
    json: bool,
) -> ExitCode {
    let compression = match compression {
        CompressionArg::None => BuildCompression::None,
        CompressionArg::Gzip => BuildCompression::Gzip,
        CompressionArg::Zstd => BuildCompression::Zstd,
    };
    let (observer, bar) = progress::observer("building");
    let result = Builder::new()
        .compression(compression)
        .mtime_clamp(mtime)
        .observer(observer)
        .build(dir, out)
        .await;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(built) => {
            if json {
                print_json(&built);
            } else {
                println!(
                    "{}: {} ({} entries, {} bytes)",
                    out.display(),
                    built.image_id,
                    built.entries,
                    built.size
                );
            }
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}

/// `acikit sign FILE --key SECRETKEY [--passphrase-file F] [-o OUT]`
pub async fn sign(
    file: &Path,
    key: &Path,
    passphrase_file: Option<&Path>,
    out: Option<&Path>,
    json: bool,
) -> ExitCode {
    let out: PathBuf = match out {
        Some(out) => out.to_path_buf(),
        None => {
            let mut name = file.as_os_str().to_os_string();
            name.push(".asc");
            PathBuf::from(name)
        }
    };
    let key_bytes = match std::fs::read(key) {
        Ok(bytes) => bytes,
        Err(e) => return fail(&Error::io(format!("reading {}", key.display()), e)),
    };
    let passphrase = match passphrase_file {
        None => None,
        Some(path) => match std::fs::read_to_string(path) {
            // The first line, as gpg --passphrase-file reads it.
            Ok(text) => Some(text.lines().next().unwrap_or_default().to_string()),
            Err(e) => return fail(&Error::io(format!("reading {}", path.display()), e)),
        },
    };
    let data = match std::fs::File::open(file) {
        Ok(f) => f,
        Err(e) => return fail(&Error::io(format!("opening {}", file.display()), e)),
    };
    let signed = tokio::task::spawn_blocking(move || {
        acikit::trust::sign_detached_with_info(
            &key_bytes,
            passphrase.as_deref(),
            std::io::BufReader::with_capacity(1 << 20, data),
        )
    })
    .await
    .unwrap_or_else(|e| {
        Err(Error::new(
            acikit::ErrorKind::Io,
            format!("a background task failed: {e}"),
        ))
    });
    let signed = match signed {
        Ok(signed) => signed,
        Err(err) => return fail(&err),
    };
    if let Err(e) = write_atomically(&out, &signed.armored) {
        return fail(&Error::io(format!("writing {}", out.display()), e));
    }
    if json {
        #[derive(serde::Serialize)]
        struct Report<'a> {
            signature: String,
            #[serde(flatten)]
            signed: &'a acikit::trust::Signed,
        }
        print_json(&Report {
            signature: out.display().to_string(),
            signed: &signed,
        });
    } else {
        println!(
            "{}: signed by {} ({})",
            out.display(),
            signed.signing_key,
            signed.hash_algorithm
        );
    }
    ExitCode::SUCCESS
}

fn write_atomically(out: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".tmp-{}", std::process::id()));
    let temp = out.with_file_name(name);
    let result = std::fs::write(&temp, bytes).and_then(|()| std::fs::rename(&temp, out));
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}
