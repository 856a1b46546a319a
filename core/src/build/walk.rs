//! Walking an image layout: `manifest` and every node under `rootfs/`, never following a
//! symlink (directories are opened `O_NOFOLLOW | O_DIRECTORY`, nodes inspected with `lstat`
//! and `llistxattr` relative to their directory), sorted bytewise by archive path.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Seek};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, SeekFrom};
use rustix::io::Errno;

use crate::fs as fsops;
use crate::{Error, ErrorKind, Result};

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Directory,
    Regular,
    Symlink(Vec<u8>),
    Char(u64, u64),
    Block(u64, u64),
    Fifo,
}

/// One node of the layout, as `lstat` saw it.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    /// Path in the archive (`manifest`, `rootfs`, `rootfs/...`).
    pub archive_path: Vec<u8>,
    /// Path on disk.
    pub fs_path: PathBuf,
    pub kind: NodeKind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: (i64, u32),
    pub size: u64,
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    /// Allocated 512-byte blocks (a hint that the file has holes).
    pub blocks: u64,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

fn os_error(context: impl std::fmt::Display, errno: Errno) -> Error {
    Error::io(context, std::io::Error::from(errno))
}

/// Opens a directory without following a symlink.
pub(crate) fn open_dir(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(
        path,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| os_error(format!("cannot open the folder {}", path.display()), e))
}

/// Inspects `name` in `dir` (at `fs_path` on disk) as the archive member `archive_path`.
/// Sockets and other types an image cannot hold are refused.
pub(crate) fn node(
    dir: BorrowedFd<'_>,
    name: &OsStr,
    fs_path: PathBuf,
    archive_path: Vec<u8>,
) -> Result<Node> {
    let st = fsops::lstat(dir, name)?;
    let kind = match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => NodeKind::Directory,
        FileType::RegularFile => NodeKind::Regular,
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(dir, name, Vec::new()).map_err(|e| {
                os_error(format!("cannot read the symlink {}", fs_path.display()), e)
            })?;
            NodeKind::Symlink(target.into_bytes())
        }
        FileType::CharacterDevice => NodeKind::Char(
            u64::from(rustix::fs::major(st.st_rdev)),
            u64::from(rustix::fs::minor(st.st_rdev)),
        ),
        FileType::BlockDevice => NodeKind::Block(
            u64::from(rustix::fs::major(st.st_rdev)),
            u64::from(rustix::fs::minor(st.st_rdev)),
        ),
        FileType::Fifo => NodeKind::Fifo,
        other => {
            let what = match other {
                FileType::Socket => "a socket",
                _ => "a file of an unknown type",
            };
            return Err(Error::new(
                ErrorKind::UnsupportedEntryType,
                format!(
                    "{} is {what}, which an image cannot hold; remove it from the rootfs",
                    fs_path.display()
                ),
            )
            .with_entry(&archive_path));
        }
    };
    let xattrs = fsops::read_xattrs(dir, name)?;
    Ok(Node {
        archive_path,
        fs_path,
        kind,
        mode: st.st_mode & 0o7777,
        uid: u64::from(st.st_uid),
        gid: u64::from(st.st_gid),
        mtime: (st.st_mtime, st.st_mtime_nsec as u32),
        size: st.st_size as u64,
        dev: st.st_dev,
        ino: st.st_ino,
        nlink: st.st_nlink,
        blocks: st.st_blocks as u64,
        xattrs,
    })
}

/// Every node under the directory `root` (not `root` itself), appended to `out`, with archive
/// paths below `prefix`. Directories are read one at a time (one descriptor open per level).
pub(crate) fn walk_tree(
    root: &Path,
    prefix: &[u8],
    out: &mut Vec<Node>,
    check: &dyn Fn() -> Result<()>,
) -> Result<()> {
    let mut pending: Vec<(PathBuf, Vec<u8>)> = vec![(root.to_path_buf(), prefix.to_vec())];
    while let Some((dir_path, dir_archive)) = pending.pop() {
        check()?;
        let fd = open_dir(&dir_path)?;
        let mut names = Vec::new();
        let listing = rustix::fs::Dir::read_from(&fd)
            .map_err(|e| os_error(format!("cannot read {}", dir_path.display()), e))?;
        for entry in listing {
            let entry =
                entry.map_err(|e| os_error(format!("cannot read {}", dir_path.display()), e))?;
            let name = entry.file_name().to_bytes();
            if name == b"." || name == b".." {
                continue;
            }
            names.push(name.to_vec());
        }
        names.sort();
        for name in names {
            let os_name = OsStr::from_bytes(&name);
            let mut archive_path = dir_archive.clone();
            archive_path.push(b'/');
            archive_path.extend_from_slice(&name);
            let n = node(fd.as_fd(), os_name, dir_path.join(os_name), archive_path)?;
            if n.kind == NodeKind::Directory {
                pending.push((n.fs_path.clone(), n.archive_path.clone()));
            }
            out.push(n);
        }
    }
    Ok(())
}

/// Opens the regular file of `node` for reading (never following a symlink, never blocking
/// on a FIFO put in its place) and checks it is still the file the walk saw.
pub(crate) fn open_regular(node: &Node) -> Result<File> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags((OFlags::NOFOLLOW | OFlags::NONBLOCK).bits() as i32)
        .open(&node.fs_path)
        .map_err(|e| Error::io(format!("cannot open {}", node.fs_path.display()), e))?;
    let meta = file
        .metadata()
        .map_err(|e| Error::io(format!("cannot stat {}", node.fs_path.display()), e))?;
    if !meta.is_file()
        || meta.ino() != node.ino
        || meta.dev() != node.dev
        || meta.size() != node.size
    {
        return Err(changed(node));
    }
    Ok(file)
}

pub(crate) fn changed(node: &Node) -> Error {
    Error::new(
        ErrorKind::Io,
        format!(
            "{} changed while the image was being built; build again",
            node.fs_path.display()
        ),
    )
    .with_entry(&node.archive_path)
}

/// The data segments `(offset, length)` of a file with holes, found with `SEEK_DATA` /
/// `SEEK_HOLE`, with a final `(size, 0)` segment when the file ends in a hole (as GNU tar
/// writes it, so that extraction extends the file). `None` when the file has no hole, or the
/// file system cannot tell.
pub(crate) fn data_segments(file: &File, size: u64) -> Result<Option<Vec<(u64, u64)>>> {
    let mut segments = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let data = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(Errno::NXIO) => break, // only a hole from `pos` to the end
            Err(Errno::INVAL | Errno::OPNOTSUPP) => return Ok(None),
            Err(e) => return Err(os_error("cannot find the data of a sparse file", e)),
        };
        if data >= size {
            break;
        }
        let hole = match rustix::fs::seek(file, SeekFrom::Hole(data)) {
            Ok(h) => h.min(size),
            Err(Errno::INVAL | Errno::OPNOTSUPP) => return Ok(None),
            Err(e) => return Err(os_error("cannot find the holes of a sparse file", e)),
        };
        if hole <= data {
            return Ok(None);
        }
        segments.push((data, hole - data));
        pos = hole;
    }
    let mut file_ref = file;
    file_ref
        .rewind()
        .map_err(|e| Error::io("cannot rewind a sparse file", e))?;
    if segments.len() == 1 && segments[0] == (0, size) {
        return Ok(None);
    }
    if segments.last().is_none_or(|&(o, l)| o + l < size) {
        segments.push((size, 0));
    }
    Ok(Some(segments))
}

/// Reads exactly `len` bytes from `file` into `sink` by chunks, calling `each` after every
/// chunk; a file shorter than expected is an error.
pub(crate) fn copy_exact(
    file: &mut File,
    len: u64,
    buf: &mut [u8],
    mut sink: impl FnMut(&[u8]) -> Result<()>,
    node: &Node,
) -> Result<()> {
    let mut left = len;
    while left > 0 {
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let n = match file.read(&mut buf[..want]) {
            Ok(0) => return Err(changed(node)),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::io(format!("reading {}", node.fs_path.display()), e));
            }
        };
        sink(&buf[..n])?;
        left -= n as u64;
    }
    Ok(())
}
