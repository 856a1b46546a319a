//! A minimal EROFS writer for composefs metadata images.
//!
//! It writes what overlayfs needs of a metadata layer and nothing more: uncompressed
//! EROFS with 4 KiB blocks, extended (64-byte) inodes (32-bit owners, 64-bit sizes,
//! nanosecond mtimes), inline xattrs, directories and symlinks stored inline when their
//! tail fits (`FLAT_INLINE`) or in data blocks (`FLAT_PLAIN`), and regular files as
//! chunk-based inodes whose one chunk is a hole: their size is real, their data lives in
//! the store's object folder, named by the `trusted.overlay.redirect` xattr
//! (`/ab/abcd…`) that, with `trusted.overlay.metacopy`, makes overlayfs read it from the
//! data-only lower layer. An image holds no file contents.
//!
//! Why not the `composefs` crate's writer: it names objects `ab/cdef…` (the digest without
//! its first byte) where the store names them `ab/abcd…`, it keeps the image in memory
//! twice over, and it brings OpenSSL, a second tokio feature set and a varlink stack.
//!
//! The format is the kernel's `fs/erofs/erofs_fs.h`; `mkfs.erofs`/`fsck.erofs` and the
//! kernel's own mount check the output in the tests.

use std::io::Write;

use super::meta::{MetaTree, NodeData};
use crate::{Error, ErrorKind, Result};

const BLOCK: usize = 4096;
const BLOCK_BITS: u8 = 12;
const SUPERBLOCK_OFFSET: usize = 1024;
const SUPERBLOCK_LEN: usize = 128;
const MAGIC: u32 = 0xE0F5_E1E2;
const INODE_LEN: usize = 64;
const XATTR_HEADER_LEN: usize = 12;
const DIRENT_LEN: usize = 12;
const NULL_ADDR: u32 = u32::MAX;
/// `EROFS_FEATURE_INCOMPAT_CHUNKED_FILE`.
const INCOMPAT_CHUNKED_FILE: u32 = 0x4;

const LAYOUT_FLAT_PLAIN: u16 = 0;
const LAYOUT_FLAT_INLINE: u16 = 2;
const LAYOUT_CHUNK_BASED: u16 = 4;

const FT_REG: u8 = 1;
const FT_DIR: u8 = 2;
const FT_CHR: u8 = 3;
const FT_BLK: u8 = 4;
const FT_FIFO: u8 = 5;
const FT_SYMLINK: u8 = 7;

/// How one inode is written.
struct Plan {
    /// Node index in the tree.
    node: usize,
    /// The inline xattr area (header and entries), empty if none.
    xattrs: Vec<u8>,
    /// The inode's data (directory blocks, symlink target), before layout.
    data: Vec<u8>,
    layout: u16,
    /// Bytes stored right after the xattrs (inline tail, or the chunk map).
    inline_len: usize,
    /// Where the inode starts in the image.
    pos: usize,
    /// First data block (`FLAT_PLAIN` and the full blocks of `FLAT_INLINE`).
    blkaddr: u32,
    /// Data blocks used.
    blocks: usize,
    nlink: u32,
}

/// Writes `tree` as an EROFS image to `out`; returns its length in bytes.
pub(crate) fn write_image(tree: &MetaTree, out: &mut impl Write) -> Result<u64> {
    // Inodes in breadth-first order from the root (the root first: its nid must fit 16 bits);
    // a node reached twice (a hardlink) is one inode.
    let mut order: Vec<usize> = Vec::new();
    let mut slot: Vec<Option<usize>> = vec![None; tree.nodes.len()];
    let mut parent: Vec<usize> = vec![0; tree.nodes.len()];
    let mut links: Vec<u32> = vec![0; tree.nodes.len()];
    slot[0] = Some(0);
    order.push(0);
    let mut i = 0;
    while i < order.len() {
        let n = order[i];
        i += 1;
        if let NodeData::Dir(children) = &tree.nodes[n].data {
            for &child in children.values() {
                links[child] += 1;
                if slot[child].is_none() {
                    slot[child] = Some(order.len());
                    order.push(child);
                    parent[child] = n;
                }
            }
        }
    }

    let mut plans: Vec<Plan> = Vec::with_capacity(order.len());
    for &n in &order {
        let node = &tree.nodes[n];
        let xattrs = xattr_area(node)?;
        let (layout, data, inline_len, nlink) = match &node.data {
            NodeData::Dir(children) => {
                let subdirs = children
                    .values()
                    .filter(|&&c| matches!(tree.nodes[c].data, NodeData::Dir(_)))
                    .count() as u32;
                // Names only for now: the nids are filled in once every inode has its place.
                let data = dir_skeleton(children.keys().map(|k| k.as_slice()));
                (LAYOUT_FLAT_INLINE, data, 0, 2 + subdirs)
            }
            NodeData::Symlink(target) => (LAYOUT_FLAT_INLINE, target.clone(), 0, links[n]),
            NodeData::File { size, .. } if *size > 0 => {
                (LAYOUT_CHUNK_BASED, Vec::new(), 4, links[n])
            }
            _ => (LAYOUT_FLAT_PLAIN, Vec::new(), 0, links[n]),
        };
        let mut plan = Plan {
            node: n,
            xattrs,
            data,
            layout,
            inline_len,
            pos: 0,
            blkaddr: 0,
            blocks: 0,
            nlink: nlink.max(1),
        };
        if plan.layout == LAYOUT_FLAT_INLINE {
            let tail = plan.data.len() % BLOCK;
            let full = plan.data.len() / BLOCK;
            if tail == 0 {
                plan.layout = LAYOUT_FLAT_PLAIN;
                plan.blocks = full;
            } else if INODE_LEN + plan.xattrs.len() + tail <= BLOCK {
                plan.inline_len = tail;
                plan.blocks = full;
            } else {
                plan.layout = LAYOUT_FLAT_PLAIN;
                plan.blocks = full + 1;
            }
        }
        plans.push(plan);
    }

    // Places: inodes from just after the superblock (meta_blkaddr 0), 32-byte aligned, an
    // inode with its xattrs and inline data never across a block boundary; then data blocks.
    let mut pos = SUPERBLOCK_OFFSET + SUPERBLOCK_LEN;
    for plan in &mut plans {
        pos = pos.next_multiple_of(32);
        let len = INODE_LEN + plan.xattrs.len() + plan.inline_len;
        if len <= BLOCK && pos % BLOCK + len > BLOCK {
            pos = pos.next_multiple_of(BLOCK);
        }
        plan.pos = pos;
        pos += len;
    }
    let mut block = pos.div_ceil(BLOCK);
    for plan in &mut plans {
        if plan.blocks > 0 {
            plan.blkaddr = u32::try_from(block).map_err(|_| too_large())?;
            block += plan.blocks;
        }
    }
    let total_blocks = u32::try_from(block).map_err(|_| too_large())?;
    let nids: Vec<u64> = slot
        .iter()
        .map(|s| s.map_or(0, |s| (plans[s].pos / 32) as u64))
        .collect();
    let nid = |n: usize| nids[n];
    let root_nid = u16::try_from(nid(0)).map_err(|_| too_large())?;

    // Directory entries, now that every nid is known.
    for plan in &mut plans {
        let n = plan.node;
        if let NodeData::Dir(children) = &tree.nodes[n].data {
            let mut entries: Vec<(&[u8], u64, u8)> = children
                .iter()
                .map(|(name, &c)| (name.as_slice(), nid(c), file_type(&tree.nodes[c].data)))
                .collect();
            entries.push((b".", nid(n), FT_DIR));
            entries.push((b"..", nid(parent[n]), FT_DIR));
            entries.sort_by(|a, b| a.0.cmp(b.0));
            plan.data = dir_blocks(&entries);
        }
    }

    // The image, in order: superblock, inodes, data blocks.
    let mut w = Sink { out, at: 0 };
    w.zeros(SUPERBLOCK_OFFSET)?;
    let mut sb = [0u8; SUPERBLOCK_LEN];
    sb[0..4].copy_from_slice(&MAGIC.to_le_bytes());
    sb[12] = BLOCK_BITS;
    sb[14..16].copy_from_slice(&root_nid.to_le_bytes());
    sb[16..24].copy_from_slice(&(plans.len() as u64).to_le_bytes());
    sb[36..40].copy_from_slice(&total_blocks.to_le_bytes());
    let incompat = if plans.iter().any(|p| p.layout == LAYOUT_CHUNK_BASED) {
        INCOMPAT_CHUNKED_FILE
    } else {
        0
    };
    sb[80..84].copy_from_slice(&incompat.to_le_bytes());
    w.put(&sb)?;
    for (ino, plan) in plans.iter().enumerate() {
        w.zeros(plan.pos - w.at)?;
        let node = &tree.nodes[plan.node];
        let (size, iu, ftype) = match &node.data {
            NodeData::Dir(_) => (plan.data.len() as u64, plan.blkaddr, 0o040000),
            NodeData::Symlink(t) => (t.len() as u64, plan.blkaddr, 0o120000),
            NodeData::File { size, .. } => {
                let iu = if *size > 0 { chunk_bits(*size) } else { 0 };
                (*size, iu, 0o100000)
            }
            NodeData::Char(ma, mi) => (0, encode_dev(*ma, *mi), 0o020000),
            NodeData::Block(ma, mi) => (0, encode_dev(*ma, *mi), 0o060000),
            NodeData::Fifo => (0, 0, 0o010000),
        };
        let mut inode = [0u8; INODE_LEN];
        let format: u16 = 1 | (plan.layout << 1);
        inode[0..2].copy_from_slice(&format.to_le_bytes());
        let icount: u16 = if plan.xattrs.is_empty() {
            0
        } else {
            u16::try_from((plan.xattrs.len() - XATTR_HEADER_LEN) / 4 + 1)
                .map_err(|_| too_large())?
        };
        inode[2..4].copy_from_slice(&icount.to_le_bytes());
        let mode = (ftype | (node.mode & 0o7777)) as u16;
        inode[4..6].copy_from_slice(&mode.to_le_bytes());
        inode[8..16].copy_from_slice(&size.to_le_bytes());
        inode[16..20].copy_from_slice(&iu.to_le_bytes());
        inode[20..24].copy_from_slice(&(ino as u32).to_le_bytes());
        inode[24..28].copy_from_slice(&node.uid.to_le_bytes());
        inode[28..32].copy_from_slice(&node.gid.to_le_bytes());
        inode[32..40].copy_from_slice(&(node.mtime.0 as u64).to_le_bytes());
        inode[40..44].copy_from_slice(&node.mtime.1.to_le_bytes());
        inode[44..48].copy_from_slice(&plan.nlink.to_le_bytes());
        w.put(&inode)?;
        w.put(&plan.xattrs)?;
        if plan.layout == LAYOUT_CHUNK_BASED {
            w.put(&NULL_ADDR.to_le_bytes())?;
        } else if plan.inline_len > 0 {
            w.put(&plan.data[plan.data.len() - plan.inline_len..])?;
        }
    }
    w.zeros(w.at.next_multiple_of(BLOCK) - w.at)?;
    for plan in &plans {
        if plan.blocks == 0 {
            continue;
        }
        debug_assert_eq!(w.at, plan.blkaddr as usize * BLOCK);
        let stored = plan.data.len() - plan.inline_len;
        w.put(&plan.data[..stored])?;
        w.zeros(plan.blocks * BLOCK - stored)?;
    }
    debug_assert_eq!(w.at, total_blocks as usize * BLOCK);
    Ok(w.at as u64)
}

fn too_large() -> Error {
    Error::new(
        ErrorKind::Unsupported,
        "the tree is too large for one composefs metadata image",
    )
}

/// Counts what it writes.
struct Sink<'a, W: Write> {
    out: &'a mut W,
    at: usize,
}

impl<W: Write> Sink<'_, W> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| Error::io("writing the composefs metadata image", e))?;
        self.at += bytes.len();
        Ok(())
    }

    fn zeros(&mut self, mut n: usize) -> Result<()> {
        const ZEROS: [u8; BLOCK] = [0; BLOCK];
        while n > 0 {
            let k = n.min(BLOCK);
            self.put(&ZEROS[..k])?;
            n -= k;
        }
        Ok(())
    }
}

/// The kernel's `new_encode_dev`.
fn encode_dev(major: u32, minor: u32) -> u32 {
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

/// The chunk format of a file of `size` bytes: one chunk covers it all.
fn chunk_bits(size: u64) -> u32 {
    let mut bits = 0u32;
    while bits < 31 && (BLOCK as u64) << bits < size {
        bits += 1;
    }
    bits
}

fn file_type(data: &NodeData) -> u8 {
    match data {
        NodeData::Dir(_) => FT_DIR,
        NodeData::File { .. } => FT_REG,
        NodeData::Symlink(_) => FT_SYMLINK,
        NodeData::Char(..) => FT_CHR,
        NodeData::Block(..) => FT_BLK,
        NodeData::Fifo => FT_FIFO,
    }
}

/// A directory's data with placeholder nids, only to know its size (names plus `.`, `..`).
fn dir_skeleton<'a>(names: impl Iterator<Item = &'a [u8]>) -> Vec<u8> {
    let mut entries: Vec<(&[u8], u64, u8)> = names.map(|n| (n, 0, 0)).collect();
    entries.push((b".", 0, FT_DIR));
    entries.push((b"..", 0, FT_DIR));
    entries.sort_by(|a, b| a.0.cmp(b.0));
    dir_blocks(&entries)
}

/// Directory blocks: each a self-contained run of dirents then names, entries in name
/// order; the last block is cut after its last name.
fn dir_blocks(entries: &[(&[u8], u64, u8)]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < entries.len() {
        let mut end = start;
        let mut used = 0;
        while end < entries.len() && used + DIRENT_LEN + entries[end].0.len() <= BLOCK {
            used += DIRENT_LEN + entries[end].0.len();
            end += 1;
        }
        let base = out.len();
        let mut nameoff = (end - start) * DIRENT_LEN;
        for (name, nid, ft) in &entries[start..end] {
            out.extend_from_slice(&nid.to_le_bytes());
            out.extend_from_slice(&(nameoff as u16).to_le_bytes());
            out.push(*ft);
            out.push(0);
            nameoff += name.len();
        }
        for (name, _, _) in &entries[start..end] {
            out.extend_from_slice(name);
        }
        start = end;
        if start < entries.len() {
            out.resize(base + BLOCK, 0);
        }
    }
    out
}

/// The inline xattr area of a node: the overlay xattrs of a regular file with content,
/// then the node's own (a `trusted.overlay.` one escaped, so overlayfs shows it as is).
fn xattr_area(node: &super::meta::Node) -> Result<Vec<u8>> {
    let mut list: Vec<(u8, Vec<u8>, &[u8])> = Vec::new();
    let redirect;
    if let NodeData::File {
        object: Some(digest),
        ..
    } = &node.data
    {
        let hex = digest.to_hex();
        redirect = format!("/{}/{hex}", &hex[..2]).into_bytes();
        list.push((4, b"overlay.metacopy".to_vec(), b""));
        list.push((4, b"overlay.redirect".to_vec(), &redirect));
    }
    for (name, value) in &node.xattrs {
        let (index, rest) = xattr_index(name).ok_or_else(|| {
            Error::new(
                ErrorKind::Unsupported,
                format!(
                    "the xattr {} has no EROFS prefix (user., trusted., security., system.posix_acl_*)",
                    String::from_utf8_lossy(name)
                ),
            )
        })?;
        let mut rest = rest.to_vec();
        if index == 4 && rest.starts_with(b"overlay.") {
            rest.splice(0..0, b"overlay.".iter().copied());
        }
        list.push((index, rest, value));
    }
    if list.is_empty() {
        return Ok(Vec::new());
    }
    let mut out = vec![0u8; XATTR_HEADER_LEN];
    for (index, name, value) in list {
        let (Ok(name_len), Ok(value_len)) = (u8::try_from(name.len()), u16::try_from(value.len()))
        else {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "an xattr name or value is too long for EROFS",
            ));
        };
        out.push(name_len);
        out.push(index);
        out.extend_from_slice(&value_len.to_le_bytes());
        out.extend_from_slice(&name);
        out.extend_from_slice(value);
        out.resize(out.len().next_multiple_of(4), 0);
    }
    Ok(out)
}

/// The EROFS name index of an xattr name and the rest of the name.
fn xattr_index(name: &[u8]) -> Option<(u8, &[u8])> {
    if name == b"system.posix_acl_access" {
        return Some((2, b""));
    }
    if name == b"system.posix_acl_default" {
        return Some((3, b""));
    }
    for (prefix, index) in [
        (&b"user."[..], 1u8),
        (&b"trusted."[..], 4),
        (&b"security."[..], 6),
    ] {
        if let Some(rest) = name.strip_prefix(prefix) {
            return Some((index, rest));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_encode_as_the_kernel_does() {
        assert_eq!(encode_dev(1, 3), 0x103);
        assert_eq!(encode_dev(8, 0x1234), 0x34 | (8 << 8) | (0x1200 << 12));
    }

    #[test]
    fn one_chunk_covers_a_file() {
        assert_eq!(chunk_bits(1), 0);
        assert_eq!(chunk_bits(4096), 0);
        assert_eq!(chunk_bits(4097), 1);
        assert_eq!(chunk_bits(1 << 30), 18);
    }

    #[test]
    fn directory_blocks_hold_whole_entries() {
        let long = vec![b'x'; 255];
        let names: Vec<Vec<u8>> = (0..40)
            .map(|i| [&long[..250], format!("{i:05}").as_bytes()].concat())
            .collect();
        let entries: Vec<(&[u8], u64, u8)> =
            names.iter().map(|n| (n.as_slice(), 7, FT_REG)).collect();
        let data = dir_blocks(&entries);
        // 15 entries of 267 bytes fit a block; 40 make three blocks, the last cut short.
        assert_eq!(data.len(), 2 * BLOCK + 10 * 267);
        let first_nameoff = u16::from_le_bytes([data[BLOCK + 8], data[BLOCK + 9]]);
        assert_eq!(first_nameoff as usize, 15 * DIRENT_LEN);
    }
}
