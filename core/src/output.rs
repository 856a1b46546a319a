//! Where a file the toolkit writes at a caller's path goes: the one output-path policy of
//! `export`, `build` and `sign` (see `docs/ARCHITECTURE.md`, "Output files").
//!
//! [`OutputFile::create`] looks at the path, symlinks followed to their final target, and:
//! - a regular file, or a new name in an existing folder, is written through a temporary
//!   file beside the (final) target and renamed over it by [`OutputFile::commit`]: a reader
//!   sees the old content or the new, never a part; a replaced file keeps its permission
//!   bits (and its owner and group, when we may set them); a symlink stays a link;
//! - a character device (`/dev/null`, `/dev/full`, a terminal) or a FIFO is opened and
//!   written in place, never replaced;
//! - a folder, a block device, a socket, a dangling symlink, and the bare name `-` (which
//!   command lines use for stdout: write to a [`std::io::Write`] instead) are refused with
//!   [`ErrorKind::InvalidArgument`] naming the path;
//! - a path inside a protected folder (the image store, for store commands), after symlinks
//!   and `..` are resolved, is refused the same way.
//!
//! Dropping an [`OutputFile`] that was not committed removes its temporary file: on any
//! failure a replaced file keeps its old content and no new file is left.

use std::fs::{File, Metadata};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::{Error, ErrorKind, Result};

/// How [`OutputFile::create`] treats a path.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct OutputOptions {
    /// Folders nothing may be written into (checked after symlinks and `..` are resolved),
    /// e.g. the image store's folder.
    pub protected: Vec<PathBuf>,
    /// Sync the file's data (and the folder, after the rename) before [`OutputFile::commit`]
    /// returns.
    pub sync: bool,
}

/// What an output path is, once its symlinks are followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OutputKind {
    /// Nothing exists there yet: a new regular file is created (atomically).
    NewFile,
    /// A regular file: replaced atomically.
    RegularFile,
    /// A character device: written in place.
    CharDevice,
    /// A FIFO: written in place (opening it waits for a reader).
    Fifo,
}

impl OutputKind {
    /// Whether the output is written through a temporary file renamed at the end.
    pub fn is_replaced(self) -> bool {
        matches!(self, OutputKind::NewFile | OutputKind::RegularFile)
    }
}

/// An output being written; see the module documentation.
#[derive(Debug)]
pub struct OutputFile {
    given: PathBuf,
    target: PathBuf,
    kind: OutputKind,
    file: File,
    /// The temporary file of a replaced output, until the commit renames it.
    temp: Option<PathBuf>,
    sync: bool,
}

impl OutputFile {
    /// Checks `path` against the policy and opens it for writing: a temporary file beside
    /// the final target for regular files, the node itself for character devices and FIFOs
    /// (opening a FIFO blocks until a reader opens it).
    ///
    /// ```
    /// # let dir = acikit::testing::example_dir("output-create");
    /// use std::io::Write;
    /// use acikit::output::{OutputFile, OutputOptions};
    ///
    /// let path = dir.join("out.txt");
    /// std::fs::write(&path, "old").unwrap();
    /// let mut out = OutputFile::create(&path, &OutputOptions::default())?;
    /// out.write_all(b"new").unwrap();
    /// // Until the commit the old content stays.
    /// assert_eq!(std::fs::read(&path).unwrap(), b"old");
    /// out.commit()?;
    /// assert_eq!(std::fs::read(&path).unwrap(), b"new");
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn create(path: impl AsRef<Path>, options: &OutputOptions) -> Result<OutputFile> {
        let given = path.as_ref().to_path_buf();
        let (target, kind, existing) = resolve(&given, &options.protected)?;
        match kind {
            OutputKind::NewFile | OutputKind::RegularFile => {
                let (temp, file) = create_temp(&given, &target)?;
                let output = OutputFile {
                    given,
                    target,
                    kind,
                    file,
                    temp: Some(temp),
                    sync: options.sync,
                };
                if let Some(existing) = existing {
                    output.keep_attributes(&existing)?;
                }
                Ok(output)
            }
            OutputKind::CharDevice | OutputKind::Fifo => {
                let file = File::options()
                    .write(true)
                    .custom_flags(rustix::fs::OFlags::NOCTTY.bits() as i32)
                    .open(&target)
                    .map_err(|e| Error::io(format!("opening {}", given.display()), e))?;
                let meta = file
                    .metadata()
                    .map_err(|e| Error::io(format!("opening {}", given.display()), e))?;
                if kind_of(&meta) != Some(kind) {
                    return Err(Error::new(
                        ErrorKind::InvalidArgument,
                        format!("{} changed while it was being opened", given.display()),
                    ));
                }
                Ok(OutputFile {
                    given,
                    target,
                    kind,
                    file,
                    temp: None,
                    sync: false,
                })
            }
        }
    }

    /// What the output is.
    pub fn kind(&self) -> OutputKind {
        self.kind
    }

    /// The path as given.
    pub fn path(&self) -> &Path {
        &self.given
    }

    /// The final target, symlinks and `..` resolved.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// The temporary file being written, for a replaced output (e.g. to read it back before
    /// the commit).
    pub fn temp_path(&self) -> Option<&Path> {
        self.temp.as_deref()
    }

    /// Finishes the output: for a replaced file, syncs it if asked and renames the temporary
    /// file over the target; for a device or FIFO, nothing more is needed.
    pub fn commit(mut self) -> Result<()> {
        let context = || format!("writing {}", self.given.display());
        self.file.flush().map_err(|e| Error::io(context(), e))?;
        let Some(temp) = self.temp.clone() else {
            return Ok(());
        };
        if self.sync {
            self.file.sync_all().map_err(|e| Error::io(context(), e))?;
        }
        std::fs::rename(&temp, &self.target).map_err(|e| {
            Error::io(
                format!("renaming the new {} into place", self.given.display()),
                e,
            )
        })?;
        self.temp = None;
        if self.sync
            && let Some(dir) = self.target.parent()
        {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| Error::io(context(), e))?;
        }
        Ok(())
    }

    /// Gives the new file the permission bits (and, when allowed, the owner) of the file it
    /// replaces, as writing into that file would have kept them.
    fn keep_attributes(&self, existing: &Metadata) -> Result<()> {
        let context = || format!("creating {}", self.given.display());
        let own = self.file.metadata().map_err(|e| Error::io(context(), e))?;
        if (own.uid(), own.gid()) != (existing.uid(), existing.gid()) {
            // Only root (or the owner, for the group) may; otherwise the file is ours, as
            // any newly created file would be.
            let _ =
                std::os::unix::fs::fchown(&self.file, Some(existing.uid()), Some(existing.gid()));
        }
        self.file
            .set_permissions(std::fs::Permissions::from_mode(existing.mode() & 0o777))
            .map_err(|e| Error::io(context(), e))
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            let _ = std::fs::remove_file(temp);
        }
    }
}

/// Names the output in its write errors (keeping their kind, e.g. a broken pipe), for the
/// messages of errors that surface far from the writer (in a compressor or tar writer).
pub(crate) struct NamedWriter<'a, W> {
    pub(crate) inner: W,
    pub(crate) what: &'a str,
}

impl<W: Write> Write for NamedWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.inner
            .write(buf)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.what)))
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner
            .flush()
            .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", self.what)))
    }
}

/// The sink of a tar export or build: `out`, buffered, its write errors named `what`, with
/// the bytes written to it counted.
pub(crate) struct CountedOutput<'a, W: Write> {
    inner: std::io::BufWriter<NamedWriter<'a, W>>,
    what: &'a str,
    count: u64,
}

impl<'a, W: Write> CountedOutput<'a, W> {
    pub(crate) fn new(out: W, what: &'a str) -> Self {
        CountedOutput {
            inner: std::io::BufWriter::with_capacity(1 << 20, NamedWriter { inner: out, what }),
            what,
            count: 0,
        }
    }

    /// Flushes everything through to `out`; returns the number of bytes written.
    pub(crate) fn finish(self) -> Result<u64> {
        let writing = |e| Error::io(format!("writing {}", self.what), e);
        self.inner
            .into_inner()
            .map_err(|e| writing(e.into_error()))?
            .flush()
            .map_err(writing)?;
        Ok(self.count)
    }
}

impl<W: Write> Write for CountedOutput<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Checks `path` against the policy without opening it: what it is and its final target.
///
/// ```
/// use acikit::output::{OutputKind, OutputOptions, check_output_path};
///
/// let options = OutputOptions::default();
/// let dir = std::env::temp_dir();
/// let new = dir.join(format!("acikit-doc-output-{}", std::process::id()));
/// assert_eq!(check_output_path(&new, &options)?, OutputKind::NewFile);
/// assert_eq!(check_output_path("/dev/null", &options)?, OutputKind::CharDevice);
/// // A folder is refused.
/// let err = check_output_path(&dir, &options).unwrap_err();
/// assert_eq!(err.kind(), acikit::ErrorKind::InvalidArgument);
/// # Ok::<(), acikit::Error>(())
/// ```
pub fn check_output_path(path: impl AsRef<Path>, options: &OutputOptions) -> Result<OutputKind> {
    resolve(path.as_ref(), &options.protected).map(|(_, kind, _)| kind)
}

fn invalid(path: &Path, why: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidArgument,
        format!("cannot write to {}: {why}", path.display()),
    )
}

fn kind_of(meta: &Metadata) -> Option<OutputKind> {
    let t = meta.file_type();
    if t.is_file() {
        Some(OutputKind::RegularFile)
    } else if t.is_char_device() {
        Some(OutputKind::CharDevice)
    } else if t.is_fifo() {
        Some(OutputKind::Fifo)
    } else {
        None
    }
}

/// The final target of `path`, what it is, and the metadata of the regular file there.
fn resolve(path: &Path, protected: &[PathBuf]) -> Result<(PathBuf, OutputKind, Option<Metadata>)> {
    let raw = path.as_os_str().as_encoded_bytes();
    if raw.is_empty() {
        return Err(Error::new(
            ErrorKind::InvalidArgument,
            "the output path is empty",
        ));
    }
    if raw == b"-" {
        return Err(invalid(
            path,
            "`-` is not taken as a file name (a command line means stdout by it); \
             write to a writer, or name the file ./-",
        ));
    }
    let (target, kind, existing) = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if raw.ends_with(b"/") {
                return Err(invalid(path, "no such folder"));
            }
            let name = path
                .file_name()
                .ok_or_else(|| invalid(path, "it names no file"))?;
            let parent = match path.parent() {
                Some(p) if !p.as_os_str().is_empty() => p,
                _ => Path::new("."),
            };
            let dir = std::fs::canonicalize(parent).map_err(|e| {
                Error::io(
                    format!("cannot write to {}: {}", path.display(), parent.display()),
                    e,
                )
            })?;
            if !dir.is_dir() {
                return Err(invalid(
                    path,
                    format!("{} is not a folder", parent.display()),
                ));
            }
            let target = dir.join(name);
            check_protected(path, &target, protected)?;
            (target, OutputKind::NewFile, None)
        }
        Err(e) => return Err(Error::io(format!("cannot write to {}", path.display()), e)),
        Ok(link) => {
            let meta = if link.file_type().is_symlink() {
                match std::fs::metadata(path) {
                    Ok(meta) => meta,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        let to = std::fs::read_link(path).unwrap_or_default();
                        return Err(invalid(
                            path,
                            format!(
                                "it is a symlink to {}, which does not exist (a dangling link \
                                 is not written through)",
                                to.display()
                            ),
                        ));
                    }
                    Err(e) => {
                        return Err(Error::io(format!("cannot write to {}", path.display()), e));
                    }
                }
            } else {
                link
            };
            let target = std::fs::canonicalize(path)
                .map_err(|e| Error::io(format!("cannot write to {}", path.display()), e))?;
            check_protected(path, &target, protected)?;
            let t = meta.file_type();
            let kind = match kind_of(&meta) {
                Some(kind) => kind,
                None if t.is_dir() => {
                    return Err(invalid(path, "it is a folder (give the path of a file)"));
                }
                None if t.is_block_device() => {
                    return Err(invalid(
                        path,
                        "it is a block device (refused; write to stdout and pipe into dd to \
                         write a device)",
                    ));
                }
                None if t.is_socket() => return Err(invalid(path, "it is a socket")),
                None => return Err(invalid(path, "it is not a file, device or FIFO")),
            };
            let existing = (kind == OutputKind::RegularFile).then_some(meta);
            (target, kind, existing)
        }
    };
    Ok((target, kind, existing))
}

/// Refuses a target inside one of the `protected` folders.
fn check_protected(path: &Path, target: &Path, protected: &[PathBuf]) -> Result<()> {
    for root in protected {
        let Ok(root) = std::fs::canonicalize(root) else {
            continue;
        };
        if target.starts_with(&root) {
            return Err(invalid(
                path,
                format!(
                    "it is inside {} (the image store), which only acikit writes",
                    root.display()
                ),
            ));
        }
    }
    Ok(())
}

/// Creates the temporary file beside `target`: `.NAME.acikit-PID-N`, new (never an
/// existing file), mode 0666 less the umask.
fn create_temp(given: &Path, target: &Path) -> Result<(PathBuf, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = target.parent().unwrap_or(Path::new("/"));
    let name = target
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    let temp = dir.join(format!(
        ".{name}.acikit-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let file = File::options()
        .write(true)
        .create_new(true)
        .mode(0o666)
        .open(&temp)
        .map_err(|e| {
            Error::io(
                format!("creating a temporary file beside {}", given.display()),
                e,
            )
        })?;
    Ok((temp, file))
}
