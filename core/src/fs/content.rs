//! File contents: creating and opening regular files, cloning (`FICLONE`) and copying their
//! data (`copy_file_range`, holes kept).

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::BorrowedFd;

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use super::names::{check_name, display_path, os_error};
use crate::error::{Error, ErrorKind, Result};

/// Creates `name` in `dir` as a new, empty regular file open for writing.
pub fn create_file(dir: BorrowedFd, name: &OsStr) -> Result<File> {
    check_name(name)?;
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| {
        os_error(
            format!("cannot create {}", display_path(dir, name).display()),
            e,
        )
    })?;
    Ok(File::from(fd))
}

/// Opens the regular file `name` in `dir` for reading, refusing a symlink.
pub fn open_file(dir: BorrowedFd, name: &OsStr) -> Result<File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| {
        os_error(
            format!("cannot open {}", display_path(dir, name).display()),
            e,
        )
    })?;
    Ok(File::from(fd))
}

/// Whether an error from `FICLONE` means the file systems cannot clone.
fn cannot_reflink(e: Errno) -> bool {
    matches!(
        e,
        Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOTTY | Errno::NOSYS | Errno::BADF
    )
}

/// Clones `src` into `dst` (`FICLONE`); [`ErrorKind::InvalidArgument`] "the file system cannot
/// reflink" when the file system does not support it.
pub fn reflink_file(src: &File, dst: &File) -> Result<()> {
    match rustix::fs::ioctl_ficlone(dst, src) {
        Ok(()) => Ok(()),
        Err(e) if cannot_reflink(e) => Err(Error::new(
            ErrorKind::InvalidArgument,
            format!("the file system cannot reflink ({e})"),
        )
        .with_source(std::io::Error::from(e))),
        Err(e) => Err(os_error("cannot reflink a file", e)),
    }
}

/// Copies `len` bytes from `src` at `off_in` to `dst` at `off_out` (`copy_file_range`, with a
/// read/write fallback).
pub fn copy_range(
    src: &File,
    mut off_in: u64,
    dst: &File,
    mut off_out: u64,
    len: u64,
) -> Result<()> {
    let mut left = len;
    while left > 0 {
        let chunk = left.min(1 << 30) as usize;
        match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), chunk) {
            Ok(0) => {
                return Err(Error::new(
                    ErrorKind::Io,
                    "the source file is shorter than it was (changed while copied?)",
                ));
            }
            Ok(n) => left -= n as u64,
            Err(Errno::INTR) => continue,
            Err(Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP | Errno::PERM) => {
                return copy_range_rw(src, off_in, dst, off_out, left);
            }
            Err(e) => return Err(os_error("cannot copy a file", e)),
        }
    }
    Ok(())
}

fn copy_range_rw(src: &File, off_in: u64, dst: &File, off_out: u64, len: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; (len.min(1 << 20)) as usize];
    let mut done = 0u64;
    while done < len {
        let want = (len - done).min(buf.len() as u64) as usize;
        let n = src
            .read_at(&mut buf[..want], off_in + done)
            .map_err(|e| Error::io("cannot read a file", e))?;
        if n == 0 {
            return Err(Error::new(
                ErrorKind::Io,
                "the source file is shorter than it was (changed while copied?)",
            ));
        }
        dst.write_all_at(&buf[..n], off_out + done)
            .map_err(|e| Error::io("cannot write a file", e))?;
        done += n as u64;
    }
    Ok(())
}

/// Copies the whole content of `src` (of `size` bytes) into the empty file `dst`, keeping
/// holes when `src` has some.
pub fn copy_file_data(src: &File, dst: &File, size: u64) -> Result<()> {
    let st = rustix::fs::fstat(src).map_err(|e| os_error("cannot stat a file", e))?;
    copy_file_data_blocks(src, dst, size, st.st_blocks as u64)
}

/// [`copy_file_data`] for a source whose `st_blocks` is known.
pub(super) fn copy_file_data_blocks(src: &File, dst: &File, size: u64, blocks: u64) -> Result<()> {
    let sparse = blocks.saturating_mul(512) < size;
    if !sparse {
        return copy_range(src, 0, dst, 0, size);
    }
    let mut pos = 0u64;
    while pos < size {
        let data = match rustix::fs::seek(src, rustix::fs::SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(Errno::NXIO) => break,
            Err(Errno::INVAL) if pos == 0 => return copy_range(src, 0, dst, 0, size),
            Err(e) => return Err(os_error("cannot seek in a file", e)),
        };
        if data >= size {
            break;
        }
        let hole = match rustix::fs::seek(src, rustix::fs::SeekFrom::Hole(data)) {
            Ok(h) => h.min(size),
            Err(e) => return Err(os_error("cannot seek in a file", e)),
        };
        copy_range(src, data, dst, data, hole - data)?;
        pos = hole;
    }
    rustix::fs::ftruncate(dst, size).map_err(|e| os_error("cannot set a file's size", e))?;
    Ok(())
}
