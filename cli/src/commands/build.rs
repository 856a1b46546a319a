//! `acikit build DIR OUT` (an image layout to a reproducible image archive) and
//! `acikit sign FILE --key SECRETKEY` (an ascii-armored detached signature).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use acikit::Error;
use acikit::build::{BuildCompression, Builder};
use acikit::output::{OutputFile, OutputOptions};

use super::interrupt::Interrupt;
use super::progress;
use super::store::{CompressionArg, fail};
use crate::report::print_json;

/// The output-path policy of `build` and `sign`: nothing is written inside the store.
fn output_options(store_dir: &Path) -> OutputOptions {
    let mut options = OutputOptions::default();
    options.protected = vec![store_dir.to_path_buf()];
    options.sync = false;
    options
}

/// `acikit build DIR OUT [--compression C] [--mtime SECONDS]`; OUT `-` is stdout (the
/// report then goes to stderr). Without `--mtime`, a set `SOURCE_DATE_EPOCH` is the clamp
/// (an invalid value fails before anything is written); `--mtime` wins over it.
pub async fn build(
    store_dir: &Path,
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
    let mtime = match mtime {
        Some(secs) => Some(secs),
        None => match acikit::build::source_date_epoch() {
            Ok(secs) => secs,
            Err(err) => return fail(&err),
        },
    };
    let to_stdout = out == Path::new("-");
    let (observer, bar) = progress::observer("building");
    let builder = Builder::new().compression(compression).mtime_clamp(mtime);
    let interrupt = Interrupt::cancels(&observer.cancel, "build");
    let result = if to_stdout {
        match crate::stdout::binary_stdout() {
            Ok(stdout) => builder.build_to_writer(dir, stdout, observer).await,
            Err(err) => Err(err),
        }
    } else {
        builder
            .build_with(dir, out, output_options(store_dir), observer)
            .await
    };
    drop(interrupt);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    match result {
        Ok(built) if to_stdout => {
            if json {
                errln!(
                    "{}",
                    serde_json::to_string_pretty(&built).expect("reports serialize")
                );
            } else {
                errln!(
                    "-: {} ({} entries, {} bytes)",
                    built.image_id,
                    built.entries,
                    built.size
                );
            }
            ExitCode::SUCCESS
        }
        Err(err) if to_stdout => crate::stdout::stream_failed(&err),
        Ok(built) => {
            if json {
                print_json(&built);
            } else {
                outln!(
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

/// `acikit sign FILE --key SECRETKEY [--passphrase-file F] [-o OUT]`; OUT `-` is stdout
/// (the report then goes to stderr).
pub async fn sign(
    store_dir: &Path,
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
    let to_stdout = out == Path::new("-");
    let options = output_options(store_dir);
    if !to_stdout && let Err(err) = acikit::output::check_output_path(&out, &options) {
        return fail(&err);
    }
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
    let signed = acikit::trust::sign_file(
        file,
        key_bytes,
        passphrase,
        acikit::progress::Observer::default(),
    )
    .await;
    let signed = match signed {
        Ok(signed) => signed,
        Err(err) => return fail(&err),
    };
    if to_stdout {
        crate::stdout::write_bytes(&signed.armored);
    } else {
        // Off the runtime: opening a FIFO waits for its reader.
        let (path, bytes) = (out.clone(), signed.armored.clone());
        let written = tokio::task::spawn_blocking(move || write_output(&path, &options, &bytes))
            .await
            .unwrap_or_else(|e| {
                Err(Error::new(
                    acikit::ErrorKind::Internal,
                    format!("a background task failed: {e}"),
                ))
            });
        if let Err(err) = written {
            return fail(&err);
        }
    }
    #[derive(serde::Serialize)]
    struct Report<'a> {
        signature: String,
        #[serde(flatten)]
        signed: &'a acikit::trust::Signed,
    }
    let report = Report {
        signature: out.display().to_string(),
        signed: &signed,
    };
    let text = format!(
        "{}: signed by {} ({})",
        out.display(),
        signed.signing_key,
        signed.hash_algorithm
    );
    match (to_stdout, json) {
        (true, true) => errln!(
            "{}",
            serde_json::to_string_pretty(&report).expect("reports serialize")
        ),
        (true, false) => errln!("{text}"),
        (false, true) => print_json(&report),
        (false, false) => outln!("{text}"),
    }
    ExitCode::SUCCESS
}

/// Writes `bytes` to `out` under the output-path policy.
fn write_output(out: &Path, options: &OutputOptions, bytes: &[u8]) -> acikit::Result<()> {
    use std::io::Write as _;
    let mut file = OutputFile::create(out, options)?;
    file.write_all(bytes)
        .map_err(|e| Error::io(format!("writing {}", out.display()), e))?;
    file.commit()
}
