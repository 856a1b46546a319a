//! Building an image archive from an image layout (`manifest` + `rootfs/`), reproducibly.
//!
//! [`Builder::build`] validates the layout (the manifest with
//! [`ImageManifest::parse`](crate::schema::ImageManifest::parse)), walks it without following
//! symlinks, writes a POSIX pax tar with our own writer (`tar_writer`) through the chosen
//! compression into a temporary file beside `OUT` (see [`crate::output`] for the output-path
//! policy), reads the result back with [`archive::inspect_file`](crate::archive::inspect_file)
//! (so our own reader accepts it and gives the image ID, checked against the SHA-512 computed
//! while writing), and only then renames it to `OUT`. On any error or cancellation no output
//! is left behind. A device, a FIFO or a writer ([`Builder::build_to_writer`]) is written as a
//! stream, read back from a copy as it goes.
//!
//! Reproducibility rules (see `docs/ARCHITECTURE.md`, "Build and sign"):
//! - `manifest` first, then `rootfs` and everything below it, sorted bytewise by path (so a
//!   directory comes before its contents);
//! - kept: type, permission bits with setuid/setgid/sticky, numeric owner and group, mtime
//!   (with nanoseconds), xattrs, symlink targets, device numbers, hardlinks (the first path in
//!   sorted order is stored, later ones link to it), holes of sparse files;
//! - normalised: owner *names* are empty, atime and ctime are not stored, extension headers
//!   have fixed names and times; with [`Builder::mtime_clamp`] every mtime newer than the
//!   clamp is set to it (`SOURCE_DATE_EPOCH` style; [`source_date_epoch`] reads the
//!   variable, which the CLI uses when `--mtime` is not given);
//! - gzip output has no file name, mtime 0 and a fixed level; zstd uses a fixed level on one
//!   thread.

mod epoch;
pub(crate) mod tar_writer;
mod walk;

pub use epoch::{SOURCE_DATE_EPOCH, parse_source_date_epoch, source_date_epoch};

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha512};

use crate::archive::Limits;
use crate::blocking::{blocking_named, blocking_value_named};
use crate::output::{CountedOutput, OutputFile, OutputOptions};
use crate::progress::{CancelToken, Observer, Phase};
use crate::schema::{ImageId, ImageManifest};
use crate::{Error, ErrorKind, Result};
use tar_writer::{Kind, Member, TarWriter};
use walk::{Node, NodeKind};

/// The compression of a built archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BuildCompression {
    /// The plain tar.
    None,
    /// Deterministic gzip: no file name, mtime 0, level 6.
    #[default]
    Gzip,
    /// zstd, level 3, single-threaded.
    Zstd,
}

impl BuildCompression {
    /// Every choice.
    pub const ALL: [BuildCompression; 3] = [
        BuildCompression::None,
        BuildCompression::Gzip,
        BuildCompression::Zstd,
    ];

    /// The name of the choice (`"none"`, `"gzip"`, `"zstd"`), as [`FromStr`](std::str::FromStr) reads it.
    pub fn as_str(self) -> &'static str {
        match self {
            BuildCompression::None => "none",
            BuildCompression::Gzip => "gzip",
            BuildCompression::Zstd => "zstd",
        }
    }
}

impl std::fmt::Display for BuildCompression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for BuildCompression {
    type Err = Error;

    /// Reads `"none"`, `"gzip"` or `"zstd"`; anything else is `invalid_argument`.
    ///
    /// ```
    /// assert_eq!("zstd".parse::<acikit::BuildCompression>().unwrap(), acikit::BuildCompression::Zstd);
    /// assert!("lz4".parse::<acikit::BuildCompression>().is_err());
    /// ```
    fn from_str(s: &str) -> Result<BuildCompression> {
        BuildCompression::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                Error::new(
                    ErrorKind::InvalidArgument,
                    format!("unknown build compression {s:?} (expected none, gzip or zstd)"),
                )
            })
    }
}

/// What [`Builder::build`] wrote.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Built {
    /// The archive written.
    pub path: PathBuf,
    /// The image ID: `sha512-` of the uncompressed tar.
    pub image_id: ImageId,
    /// Size of the archive file (compressed).
    pub size: u64,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
    /// Number of tar members (manifest, rootfs and everything below it).
    pub entries: u64,
    /// Regular files among them (hardlinks not counted).
    pub regular_files: u64,
    /// Sparse files among them.
    pub sparse_files: u64,
    /// Hardlink members.
    pub hardlinks: u64,
    /// The compression used.
    pub compression: BuildCompression,
}

/// Builds image archives from image layouts; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct Builder {
    compression: BuildCompression,
    mtime_clamp: Option<i64>,
    limits: Limits,
}

impl Builder {
    /// A builder with gzip compression, no mtime clamp, default limits.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// The output compression.
    pub fn compression(mut self, compression: BuildCompression) -> Builder {
        self.compression = compression;
        self
    }

    /// Sets every mtime newer than `secs` (seconds since the epoch) to `secs`; older ones
    /// are kept (the clamp of GNU tar's `--clamp-mtime` and dpkg). The builder never reads
    /// the environment: pass [`source_date_epoch`]`()?` to honour `SOURCE_DATE_EPOCH`.
    pub fn mtime_clamp(mut self, secs: Option<i64>) -> Builder {
        self.mtime_clamp = secs;
        self
    }

    /// The limits the built archive is checked against when read back (default:
    /// [`Limits::default`]); the manifest size limit also applies before building.
    pub fn limits(mut self, limits: Limits) -> Builder {
        self.limits = limits;
        self
    }

    /// Builds the image layout at `dir` into the archive `out`. The future owns what it needs
    /// (`'static + Send`); the file work runs on blocking threads. Progress is
    /// [`Phase::Build`] (content bytes written of the total); cancelling `observer` stops
    /// the build with [`ErrorKind::Cancelled`] and leaves no output.
    ///
    /// `out` follows the output-path policy of [`crate::output`]: a regular file (or a new
    /// name) is written to a temporary file beside it, read back, synced and renamed over it
    /// (on any error or cancellation the temporary file is removed and an old file keeps its
    /// content); a character device or FIFO is written in place, the read-back running on a
    /// copy of the stream as it is written; a folder, a block device, a socket, a dangling
    /// symlink and `-` are refused with [`ErrorKind::InvalidArgument`].
    ///
    /// Errors: [`ErrorKind::MissingManifest`], [`ErrorKind::MissingRootfs`],
    /// [`ErrorKind::WrongTopLevelType`], [`ErrorKind::ManifestTooLarge`],
    /// [`ErrorKind::InvalidManifest`] for a bad layout; [`ErrorKind::UnsupportedEntryType`] for
    /// a socket in the rootfs; [`ErrorKind::Cancelled`]; I/O errors; and any error of reading
    /// the result back (e.g. [`ErrorKind::LimitExceeded`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("build");
    /// use acikit::{Builder, BuildCompression, Observer, inspect_file};
    ///
    /// // An image layout: a manifest and a rootfs folder.
    /// let layout = dir.join("layout");
    /// std::fs::create_dir_all(layout.join("rootfs/etc")).unwrap();
    /// std::fs::write(layout.join("rootfs/etc/hello"), "hello\n").unwrap();
    /// std::fs::write(
    ///     layout.join("manifest"),
    ///     r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/hello"}"#,
    /// )
    /// .unwrap();
    ///
    /// let out = dir.join("hello.aci");
    /// let built = Builder::new()
    ///     .compression(BuildCompression::Zstd)
    ///     .mtime_clamp(Some(0))
    ///     .build(&layout, &out, Observer::default())
    ///     .await?;
    /// assert_eq!(built.regular_files, 2); // the manifest and etc/hello
    /// let inspected = inspect_file(&out, Default::default(), Observer::default()).await?;
    /// assert_eq!(inspected.image_id, built.image_id);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn build(
        &self,
        dir: impl AsRef<Path>,
        out: impl AsRef<Path>,
        observer: Observer,
    ) -> impl Future<Output = Result<Built>> + Send + 'static {
        self.build_with(dir, out, OutputOptions::default(), observer)
    }

    /// [`Builder::build`] with the output policy's options (e.g. folders protected from
    /// writes, such as the image store).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("build-with");
    /// use acikit::output::OutputOptions;
    /// use acikit::{Builder, ErrorKind, Observer};
    ///
    /// # let layout = acikit::testing::example_aci(&dir, "example.com/hello").await?.with_file_name("layout");
    /// // Refuse to write into a protected folder, such as a store.
    /// std::fs::create_dir_all(dir.join("store")).unwrap();
    /// let mut options = OutputOptions::default();
    /// options.protected = vec![dir.join("store")];
    /// let inside = dir.join("store/hello.aci");
    /// let err = Builder::new()
    ///     .build_with(&layout, &inside, options.clone(), Observer::default())
    ///     .await
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    /// let built = Builder::new()
    ///     .build_with(&layout, dir.join("hello.aci"), options, Observer::default())
    ///     .await?;
    /// assert!(built.size > 0);
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn build_with(
        &self,
        dir: impl AsRef<Path>,
        out: impl AsRef<Path>,
        options: OutputOptions,
        observer: Observer,
    ) -> impl Future<Output = Result<Built>> + Send + 'static {
        let builder = self.clone();
        let dir = dir.as_ref().to_path_buf();
        let out = out.as_ref().to_path_buf();
        async move {
            let options = OutputOptions {
                sync: true,
                ..options
            };
            let output = {
                let out = out.clone();
                blocking_named("the build task", move || OutputFile::create(&out, &options)).await?
            };
            if output.kind().is_replaced() {
                builder.run(dir, output, observer).await
            } else {
                builder.run_stream(dir, output, out, observer).await
            }
        }
    }

    /// Builds the image layout at `dir` into any writer (stdout, a pipe, a socket), reading
    /// the archive back from a copy of the stream as it is written. On failure part of the
    /// archive may have been written; the error says why. [`Built::path`] is `-`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("build-to-writer");
    /// use acikit::{Builder, BuildCompression, Observer};
    ///
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let layout = aci.with_file_name("layout");
    /// // Any `Write + Send + 'static`: stdout, a pipe, a socket; here a file.
    /// let out = std::fs::File::create(dir.join("streamed.aci")).unwrap();
    /// let built = Builder::new()
    ///     .compression(BuildCompression::None)
    ///     .build_to_writer(&layout, out, Observer::default())
    ///     .await?;
    /// assert_eq!(built.path, std::path::PathBuf::from("-"));
    /// // The same layout gives the same bytes (`aci` was built from it the same way).
    /// assert_eq!(std::fs::read(dir.join("streamed.aci")).unwrap(), std::fs::read(&aci).unwrap());
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn build_to_writer(
        &self,
        dir: impl AsRef<Path>,
        out: impl Write + Send + 'static,
        observer: Observer,
    ) -> impl Future<Output = Result<Built>> + Send + 'static {
        let builder = self.clone();
        let dir = dir.as_ref().to_path_buf();
        async move {
            builder
                .run_stream(dir, out, PathBuf::from("-"), observer)
                .await
        }
    }

    async fn run(self, dir: PathBuf, mut output: OutputFile, observer: Observer) -> Result<Built> {
        // Dropping this future cancels the blocking writer; dropping the output removes its
        // temporary file.
        let token = observer.cancel.child_token();
        let _cancel_on_drop = token.clone().drop_guard();
        let temp = output
            .temp_path()
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let writing = {
            let builder = self.clone();
            let token = token.clone();
            let observer = observer.clone();
            blocking_value_named("the build task", move || {
                let name = output.path().display().to_string();
                let written = builder.write_archive(&dir, &mut output, &name, &token, &observer);
                (written, output)
            })
        };
        let (written, output) = writing.await?;
        let written = written?;
        observer.check()?;
        let inspection =
            crate::archive::inspect_file(&temp, self.limits, Observer::default()).await?;
        check_read_back(&inspection, &written)?;
        observer.check()?;
        let out = output.path().to_path_buf();
        blocking_named("the build task", move || output.commit()).await?;
        Ok(self.built(out, written))
    }

    /// Builds into a stream: the archive goes to `out` and, through a pipe, to our reader,
    /// which checks it as [`Builder::run`] checks a file.
    async fn run_stream(
        self,
        dir: PathBuf,
        out: impl Write + Send + 'static,
        path: PathBuf,
        observer: Observer,
    ) -> Result<Built> {
        let token = observer.cancel.child_token();
        let _cancel_on_drop = token.clone().drop_guard();
        let (pipe_reader, pipe_writer) =
            std::io::pipe().map_err(|e| Error::io("creating a pipe", e))?;
        let reading = {
            let limits = self.limits;
            tokio::spawn(async move {
                crate::archive::inspect(pipe_reader, limits, Observer::default()).await
            })
        };
        let writing = {
            let builder = self.clone();
            let token = token.clone();
            let name = path.display().to_string();
            blocking_value_named("the build task", move || {
                let mut tee = Tee {
                    out,
                    copy: Some(pipe_writer),
                };
                let written = builder.write_archive(&dir, &mut tee, &name, &token, &observer);
                // Closing the pipe ends the reader's stream.
                tee.copy = None;
                written
            })
        };
        let written = writing.await?;
        let inspection = reading
            .await
            .map_err(|e| crate::error::join_error_of("the build task", e));
        let written = written?;
        let inspection = inspection??;
        check_read_back(&inspection, &written)?;
        Ok(self.built(path, written))
    }

    fn built(&self, path: PathBuf, written: Written) -> Built {
        Built {
            path,
            image_id: ImageId::from_sha512(&written.sha512),
            size: written.size,
            tar_size: written.tar_size,
            entries: written.entries,
            regular_files: written.regular_files,
            sparse_files: written.sparse_files,
            hardlinks: written.hardlinks,
            compression: self.compression,
        }
    }

    /// The blocking part: validate, walk, write the archive into `out` (`name` names it in
    /// errors).
    fn write_archive(
        &self,
        dir: &Path,
        out: &mut impl Write,
        name: &str,
        cancel: &CancelToken,
        observer: &Observer,
    ) -> Result<Written> {
        let check = || -> Result<()> {
            if cancel.is_cancelled() {
                return Err(Error::new(
                    ErrorKind::Cancelled,
                    "the operation was cancelled",
                ));
            }
            Ok(())
        };
        let (manifest_node, manifest_bytes, rootfs_node) = self.check_layout(dir)?;
        let mut nodes = vec![rootfs_node];
        walk::walk_tree(&dir.join("rootfs"), b"rootfs", &mut nodes, &check)?;
        nodes.sort_by(|a, b| a.archive_path.cmp(&b.archive_path));
        let total: u64 = nodes
            .iter()
            .filter(|n| n.kind == NodeKind::Regular)
            .map(|n| n.size)
            .sum();

        let counted = CountedOutput::new(out, name);
        let writing = |e| Error::io(format!("writing {name}"), e);
        let mut state = WriteState {
            observer,
            check: &check,
            done: 0,
            reported: 0,
            total,
            clamp: self.mtime_clamp,
            buf: vec![0u8; 256 << 10],
            written: Written::default(),
        };
        let counted = match self.compression {
            BuildCompression::None => {
                state.write_tar(counted, &manifest_node, &manifest_bytes, &nodes)?
            }
            BuildCompression::Gzip => {
                let gz = flate2::GzBuilder::new()
                    .mtime(0)
                    .write(counted, flate2::Compression::new(6));
                let gz = state.write_tar(gz, &manifest_node, &manifest_bytes, &nodes)?;
                gz.finish().map_err(writing)?
            }
            BuildCompression::Zstd => {
                let zst =
                    zstd::Encoder::new(counted, 3).map_err(|e| Error::io("starting zstd", e))?;
                let zst = state.write_tar(zst, &manifest_node, &manifest_bytes, &nodes)?;
                zst.finish().map_err(writing)?
            }
        };
        let size = counted.finish()?;
        check()?;
        observer.report(Phase::Build, total, Some(total));
        Ok(Written {
            size,
            ..state.written
        })
    }

    /// Checks the layout: `manifest` a regular file holding a valid manifest, `rootfs` a
    /// directory. Returns their nodes and the manifest's bytes.
    fn check_layout(&self, dir: &Path) -> Result<(Node, Vec<u8>, Node)> {
        let fd = walk::open_dir(dir)?;
        let manifest = match walk::node(
            fd.as_fd(),
            OsStr::new("manifest"),
            dir.join("manifest"),
            b"manifest".to_vec(),
        ) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::new(
                    ErrorKind::MissingManifest,
                    format!("{} holds no manifest file", dir.display()),
                ));
            }
            other => other?,
        };
        if manifest.kind != NodeKind::Regular {
            return Err(Error::new(
                ErrorKind::WrongTopLevelType,
                format!("{} is not a regular file", dir.join("manifest").display()),
            )
            .with_entry(b"manifest"));
        }
        if manifest.size > self.limits.max_manifest_size {
            return Err(Error::new(
                ErrorKind::ManifestTooLarge,
                format!(
                    "the manifest is {} bytes, more than the limit of {}",
                    manifest.size, self.limits.max_manifest_size
                ),
            )
            .with_entry(b"manifest"));
        }
        let mut bytes = Vec::with_capacity(manifest.size as usize);
        walk::open_regular(&manifest)?
            .take(manifest.size + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("reading {}", manifest.fs_path.display()), e))?;
        if bytes.len() as u64 != manifest.size {
            return Err(walk::changed(&manifest));
        }
        ImageManifest::parse(&bytes).map_err(|e| {
            if e.kind() == ErrorKind::InvalidManifest {
                e
            } else {
                Error::new(ErrorKind::InvalidManifest, e.to_string())
            }
        })?;
        let rootfs = match walk::node(
            fd.as_fd(),
            OsStr::new("rootfs"),
            dir.join("rootfs"),
            b"rootfs".to_vec(),
        ) {
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(Error::new(
                    ErrorKind::MissingRootfs,
                    format!("{} holds no rootfs folder", dir.display()),
                ));
            }
            other => other?,
        };
        if rootfs.kind != NodeKind::Directory {
            return Err(Error::new(
                ErrorKind::WrongTopLevelType,
                format!(
                    "{} is not a directory (a symlink is not followed)",
                    dir.join("rootfs").display()
                ),
            )
            .with_entry(b"rootfs"));
        }
        Ok((manifest, bytes, rootfs))
    }
}

/// Whether the archive read back is the one written.
fn check_read_back(inspection: &crate::archive::Inspection, written: &Written) -> Result<()> {
    let image_id = ImageId::from_sha512(&written.sha512);
    if inspection.image_id != image_id
        || inspection.entries != written.entries
        || inspection.uncompressed_size != written.tar_size
    {
        return Err(Error::new(
            ErrorKind::Io,
            format!(
                "the archive read back ({}, {} entries, {} bytes) is not the one written \
                 ({image_id}, {} entries, {} bytes)",
                inspection.image_id,
                inspection.entries,
                inspection.uncompressed_size,
                written.entries,
                written.tar_size
            ),
        ));
    }
    Ok(())
}

/// Writes to the output and to a copy (the pipe our reader checks); a copy that fails
/// (its reader stopped at an error it will report) is dropped, the output goes on.
struct Tee<W> {
    out: W,
    copy: Option<std::io::PipeWriter>,
}

impl<W: Write> Write for Tee<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.out.write(buf)?;
        if let Some(copy) = &mut self.copy
            && copy.write_all(&buf[..n]).is_err()
        {
            self.copy = None;
        }
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[derive(Debug, Default)]
struct Written {
    sha512: Vec<u8>,
    size: u64,
    tar_size: u64,
    entries: u64,
    regular_files: u64,
    sparse_files: u64,
    hardlinks: u64,
}

/// Hashes (SHA-512: the image ID) what passes through to the compressor.
struct Hashing<W> {
    inner: W,
    hasher: Sha512,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

struct WriteState<'a> {
    observer: &'a Observer,
    check: &'a dyn Fn() -> Result<()>,
    done: u64,
    reported: u64,
    total: u64,
    clamp: Option<i64>,
    buf: Vec<u8>,
    written: Written,
}

fn io_err(e: std::io::Error) -> Error {
    Error::io("writing the archive", e)
}

impl WriteState<'_> {
    fn mtime(&self, (secs, nanos): (i64, u32)) -> (i64, u32) {
        match self.clamp {
            Some(c) if secs > c || (secs == c && nanos > 0) => (c, 0),
            _ => (secs, nanos),
        }
    }

    fn progress(&mut self, n: u64) {
        self.done += n;
        if self.done - self.reported >= 1 << 20 {
            self.observer
                .report(Phase::Build, self.done, Some(self.total));
            self.reported = self.done;
        }
    }

    /// Writes the whole tar into `out` (the compressor) and gives `out` back.
    fn write_tar<W: Write>(
        &mut self,
        out: W,
        manifest: &Node,
        manifest_bytes: &[u8],
        nodes: &[Node],
    ) -> Result<W> {
        let mut tar = TarWriter::new(Hashing {
            inner: out,
            hasher: Sha512::new(),
        });
        // The manifest: the bytes validated above, never a hardlink.
        tar.header(&Member {
            path: b"manifest",
            kind: Kind::Regular,
            mode: manifest.mode,
            uid: manifest.uid,
            gid: manifest.gid,
            mtime: self.mtime(manifest.mtime),
            size: manifest_bytes.len() as u64,
            xattrs: &manifest.xattrs,
            sparse_real_size: None,
        })
        .map_err(io_err)?;
        tar.write_all(manifest_bytes).map_err(io_err)?;
        tar.pad().map_err(io_err)?;
        self.written.entries = 1;
        self.written.regular_files = 1;
        let mut first_links: HashMap<(u64, u64), &[u8]> = HashMap::new();
        for node in nodes {
            (self.check)()?;
            self.written.entries += 1;
            let kind = match &node.kind {
                NodeKind::Directory => Kind::Directory,
                NodeKind::Regular => Kind::Regular,
                NodeKind::Symlink(t) => Kind::Symlink(t.clone()),
                NodeKind::Char(a, b) => Kind::Char(*a, *b),
                NodeKind::Block(a, b) => Kind::Block(*a, *b),
                NodeKind::Fifo => Kind::Fifo,
            };
            let mut member = Member {
                path: &node.archive_path,
                kind,
                mode: node.mode,
                uid: node.uid,
                gid: node.gid,
                mtime: self.mtime(node.mtime),
                size: 0,
                xattrs: &node.xattrs,
                sparse_real_size: None,
            };
            if node.kind != NodeKind::Directory && node.nlink > 1 {
                if let Some(first) = first_links.get(&(node.dev, node.ino)) {
                    member.kind = Kind::Hardlink(first.to_vec());
                    tar.header(&member).map_err(io_err)?;
                    self.written.hardlinks += 1;
                    continue;
                }
                first_links.insert((node.dev, node.ino), &node.archive_path);
            }
            if node.kind != NodeKind::Regular {
                tar.header(&member).map_err(io_err)?;
                continue;
            }
            self.written.regular_files += 1;
            let mut file = walk::open_regular(node)?;
            let segments = if node.blocks * 512 < node.size {
                walk::data_segments(&file, node.size)?
            } else {
                None
            };
            match segments {
                None => {
                    member.size = node.size;
                    tar.header(&member).map_err(io_err)?;
                    let mut buf = std::mem::take(&mut self.buf);
                    let result = walk::copy_exact(
                        &mut file,
                        node.size,
                        &mut buf,
                        |chunk| {
                            tar.write_all(chunk).map_err(io_err)?;
                            self.progress(chunk.len() as u64);
                            (self.check)()
                        },
                        node,
                    );
                    self.buf = buf;
                    result?;
                }
                Some(segments) => {
                    self.written.sparse_files += 1;
                    let map = tar_writer::sparse_map(&segments);
                    let data: u64 = segments.iter().map(|s| s.1).sum();
                    member.size = map.len() as u64 + data;
                    member.sparse_real_size = Some(node.size);
                    tar.header(&member).map_err(io_err)?;
                    tar.write_all(&map).map_err(io_err)?;
                    let mut buf = std::mem::take(&mut self.buf);
                    let mut result = Ok(());
                    for &(offset, length) in &segments {
                        if length == 0 {
                            continue;
                        }
                        if let Err(e) = file.seek(SeekFrom::Start(offset)) {
                            result =
                                Err(Error::io(format!("reading {}", node.fs_path.display()), e));
                            break;
                        }
                        result = walk::copy_exact(
                            &mut file,
                            length,
                            &mut buf,
                            |chunk| {
                                tar.write_all(chunk).map_err(io_err)?;
                                self.progress(chunk.len() as u64);
                                (self.check)()
                            },
                            node,
                        );
                        if result.is_err() {
                            break;
                        }
                    }
                    self.buf = buf;
                    result?;
                    self.progress(node.size - data);
                }
            }
            tar.pad().map_err(io_err)?;
        }
        self.written.tar_size = tar.position() + 2 * tar_writer::BLOCK as u64;
        let hashing = tar.finish().map_err(io_err)?;
        self.written.sha512 = hashing.hasher.finalize().to_vec();
        Ok(hashing.inner)
    }
}
