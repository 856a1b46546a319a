//! Reading image archives, in one streaming pass.
//!
//! - `compression`: detects the compression (or encryption) of an archive by its magic bytes;
//! - `decode`: decompresses on a dedicated thread and computes the image ID (SHA-512 of the
//!   uncompressed stream) on another, handing the uncompressed bytes to async readers;
//! - `tar`: our own tar block reader, which yields entries and their content and records every
//!   byte that is not file content, so that the original stream can be rebuilt byte for byte;
//! - `layout`: the ACI layout rules (`manifest` + `rootfs/`, no traversal, no duplicates...);
//! - `recompress`: finds the zstd / xz / bzip2 settings that re-create an image's original
//!   compressed bytes from its tar, and re-creates them;
//! - [`inspect`]: all of the above together: validate an archive, get its manifest and image ID.

pub(crate) mod compression;
pub(crate) mod decode;
pub(crate) mod gzip_original;
pub(crate) mod inspect;
pub(crate) mod layout;
pub(crate) mod recompress;
pub(crate) mod tar;

pub use compression::Compression;
pub use inspect::{Inspection, inspect, inspect_file};
pub use layout::Limits;

/// Renders a raw archive path for messages: UTF-8 as is, other bytes as `\xNN`.
pub(crate) fn display_path(path: &[u8]) -> String {
    let mut out = String::with_capacity(path.len());
    for chunk in path.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn display_path_escapes_invalid_utf8() {
        assert_eq!(super::display_path(b"rootfs/caf\xc3\xa9"), "rootfs/café");
        assert_eq!(super::display_path(b"rootfs/\xff\xfe"), "rootfs/\\xff\\xfe");
    }
}
