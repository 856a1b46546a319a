//! The ACI layout rules, checked entry by entry as the archive streams past.
//!
//! An image archive holds two top-level names only: `manifest`, a regular file, and `rootfs`, a
//! directory (given as an entry, or implied by its members); everything else lies under
//! `rootfs/`. [`LayoutValidator`] checks each [`Entry`] in archive order against these rules and
//! the ones the spec leaves implicit: canonical relative paths (no `..`, no absolute paths), no
//! duplicate paths, no entry through a symlink or a file, hardlinks only to earlier non-directory
//! entries of the rootfs, no unsupported entry types, and the configured [`Limits`]. It collects
//! the manifest bytes for the caller to parse, and keeps one compact record per path seen (a tree
//! of names: about 70 bytes per entry plus the length of its last component).

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use crate::archive::display_path;
use crate::archive::tar::{Entry, EntryKind};
use crate::error::{Error, ErrorKind, Result};

/// Limits an archive must respect; [`Limits::default`] gives the defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest manifest accepted, in bytes (default 1 MiB).
    pub max_manifest_size: u64,
    /// Largest uncompressed tar stream accepted, in bytes (default 64 GiB).
    pub max_total_size: u64,
    /// Most entries accepted (default 4,000,000).
    pub max_entries: u64,
    /// Longest entry path or link target accepted, in bytes as stored (default 4096).
    pub max_path_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_size: 1 << 20,
            max_total_size: 64 << 30,
            max_entries: 4_000_000,
            max_path_len: 4096,
        }
    }
}

/// What an accepted entry is in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EntryRole {
    /// The `manifest` file: feed its content to [`LayoutValidator::manifest_chunk`].
    Manifest,
    /// The `rootfs` directory itself.
    Rootfs,
    /// An entry under `rootfs/`.
    RootfsMember,
    /// The archive root (`.` or `./`), a directory.
    Root,
}

/// What [`LayoutValidator::finish`] returns for a valid layout.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LayoutSummary {
    /// The manifest content, unparsed.
    pub manifest: Vec<u8>,
    /// Number of entries in the archive, all kinds, `manifest` and root included.
    pub entries: u64,
    /// Number of regular files under `rootfs/` (hardlinks not counted).
    pub regular_files: u64,
    /// Sum of the logical sizes (holes included) of those regular files.
    pub content_bytes: u64,
}

/// Normalises an archive path: strips leading `./` components and one trailing `/`, and returns
/// the canonical relative path (empty for the archive root, `.` or `./`).
///
/// Errors: [`ErrorKind::AbsolutePath`] for a leading `/`, [`ErrorKind::PathTraversal`] for any
/// `..` component, [`ErrorKind::BadPath`] for an empty path, a NUL byte, or an empty or `.`
/// component inside the path (`a//b`, `a/./b`). The error names `path`.
#[cfg_attr(not(feature = "render"), allow(dead_code))]
pub fn normalize_path(path: &[u8]) -> Result<Vec<u8>> {
    split_path(path)
        .map(|(p, _)| p.to_vec())
        .map_err(|e| e.with_entry(path))
}

/// Returns the canonical form of `path` (a sub-slice) and whether a trailing `/` was stripped.
fn split_path(path: &[u8]) -> Result<(&[u8], bool)> {
    if path.is_empty() {
        return Err(Error::new(ErrorKind::BadPath, "empty path"));
    }
    if path[0] == b'/' {
        return Err(Error::new(ErrorKind::AbsolutePath, "absolute path"));
    }
    if path.split(|&b| b == b'/').any(|c| c == b"..") {
        return Err(Error::new(
            ErrorKind::PathTraversal,
            "path has a \"..\" component",
        ));
    }
    if path.contains(&0) {
        return Err(Error::new(ErrorKind::BadPath, "path has a NUL byte"));
    }
    let mut s = path;
    while let Some(rest) = s.strip_prefix(b"./") {
        s = rest;
    }
    if s.is_empty() || s == b"." {
        return Ok((&[], false));
    }
    if s[0] == b'/' {
        return Err(Error::new(
            ErrorKind::BadPath,
            "path has an empty component",
        ));
    }
    let (s, trailing) = match s.strip_suffix(b"/") {
        Some(rest) => (rest, true),
        None => (s, false),
    };
    for c in s.split(|&b| b == b'/') {
        if c.is_empty() {
            return Err(Error::new(
                ErrorKind::BadPath,
                "path has an empty component",
            ));
        }
        if c == b"." {
            return Err(Error::new(
                ErrorKind::BadPath,
                "path has a \".\" component inside it",
            ));
        }
    }
    Ok((s, trailing))
}

/// Node kinds of the path tree.
const IMPLIED: u8 = 0;
const DIRECTORY: u8 = 1;
const REGULAR: u8 = 2;
const SYMLINK: u8 = 3;
const HARDLINK: u8 = 4;
const CHAR_DEVICE: u8 = 5;
const BLOCK_DEVICE: u8 = 6;
const FIFO: u8 = 7;

/// Parent id of top-level names, and end of a collision chain.
const NONE: u32 = u32::MAX;

fn kind_code(kind: EntryKind) -> u8 {
    match kind {
        EntryKind::Directory => DIRECTORY,
        EntryKind::Regular => REGULAR,
        EntryKind::Symlink => SYMLINK,
        EntryKind::Hardlink => HARDLINK,
        EntryKind::CharDevice => CHAR_DEVICE,
        EntryKind::BlockDevice => BLOCK_DEVICE,
        EntryKind::Fifo => FIFO,
        EntryKind::Other(_) => unreachable!("refused before"),
    }
}

fn kind_name(code: u8) -> &'static str {
    match code {
        IMPLIED | DIRECTORY => "a directory",
        REGULAR => "a regular file",
        SYMLINK => "a symlink",
        HARDLINK => "a hardlink",
        CHAR_DEVICE => "a character device",
        BLOCK_DEVICE => "a block device",
        _ => "a fifo",
    }
}

fn is_dir(code: u8) -> bool {
    code == IMPLIED || code == DIRECTORY
}

/// One path seen: its last component (in the name arena) under its parent node.
#[derive(Clone, Copy)]
struct Node {
    parent: u32,
    /// Next node whose (parent, name) has the same 64-bit hash.
    next: u32,
    name_start: u32,
    name_len: u32,
    kind: u8,
}

/// Hasher of the index map: its keys are already keyed SipHash values.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// The paths seen so far, as a tree of names: (parent id, name) -> node id.
#[cfg_attr(not(test), derive(Default))]
struct PathTree {
    hasher: RandomState,
    index: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    nodes: Vec<Node>,
    names: Vec<u8>,
    /// Tests narrow the hashes to force collisions.
    #[cfg(test)]
    hash_mask: u64,
}

#[cfg(test)]
impl Default for PathTree {
    fn default() -> Self {
        PathTree {
            hasher: RandomState::new(),
            index: HashMap::default(),
            nodes: Vec::new(),
            names: Vec::new(),
            hash_mask: u64::MAX,
        }
    }
}

impl PathTree {
    fn name(&self, node: &Node) -> &[u8] {
        let start = node.name_start as usize;
        &self.names[start..start + node.name_len as usize]
    }

    fn hash(&self, parent: u32, name: &[u8]) -> u64 {
        let hash = self.hasher.hash_one((parent, name));
        #[cfg(test)]
        let hash = hash & self.hash_mask;
        hash
    }

    fn find(&self, parent: u32, name: &[u8]) -> Option<u32> {
        let mut id = *self.index.get(&self.hash(parent, name))?;
        while id != NONE {
            let node = &self.nodes[id as usize];
            if node.parent == parent && self.name(node) == name {
                return Some(id);
            }
            id = node.next;
        }
        None
    }

    /// The node of a whole canonical path, if every component has been seen.
    fn find_path(&self, path: &[u8]) -> Option<u32> {
        path.split(|&b| b == b'/')
            .try_fold(NONE, |parent, c| self.find(parent, c))
    }

    /// Whether `extra_nodes` nodes and `extra_names` name bytes still fit in u32 ids/offsets.
    fn has_room(&self, extra_nodes: usize, extra_names: usize) -> bool {
        self.nodes.len() + extra_nodes < NONE as usize
            && self.names.len() + extra_names <= u32::MAX as usize
    }

    /// Adds a child known to be absent (the caller checked [`PathTree::has_room`]).
    fn insert(&mut self, parent: u32, name: &[u8], kind: u8) -> u32 {
        let id = self.nodes.len() as u32;
        let hash = self.hash(parent, name);
        let next = self.index.insert(hash, id).unwrap_or(NONE);
        self.nodes.push(Node {
            parent,
            next,
            name_start: self.names.len() as u32,
            name_len: name.len() as u32,
            kind,
        });
        self.names.extend_from_slice(name);
        id
    }
}

/// Where a new entry goes in the tree, worked out before anything is changed.
struct Placement {
    /// Deepest ancestor already in the tree ([`NONE`] for the top level).
    parent: u32,
    /// Offset in the parent path where the ancestors not yet seen begin.
    missing_from: Option<usize>,
    /// The node of the path itself, if it was implied by earlier members.
    implied: Option<u32>,
}

/// Checks the ACI layout rules on a stream of entries, in archive order.
///
/// Call [`check_entry`](Self::check_entry) for every entry, [`manifest_chunk`](Self::manifest_chunk)
/// with the content of the entry whose role is [`EntryRole::Manifest`], and
/// [`finish`](Self::finish) at the end. Stop at the first error.
pub struct LayoutValidator {
    limits: Limits,
    tree: PathTree,
    /// Parent path of the last entry accepted, and its node (a cache: archives are grouped by directory).
    last_dir: Vec<u8>,
    last_dir_id: u32,
    root_seen: bool,
    manifest_seen: bool,
    rootfs_seen: bool,
    in_manifest: bool,
    manifest: Vec<u8>,
    entries: u64,
    regular_files: u64,
    content_bytes: u64,
}

impl LayoutValidator {
    /// A validator enforcing `limits`.
    pub fn new(limits: Limits) -> Self {
        LayoutValidator {
            limits,
            tree: PathTree::default(),
            last_dir: Vec::new(),
            last_dir_id: NONE,
            root_seen: false,
            manifest_seen: false,
            rootfs_seen: false,
            in_manifest: false,
            manifest: Vec::new(),
            entries: 0,
            regular_files: 0,
            content_bytes: 0,
        }
    }

    /// Checks one entry, in archive order: its role in the image, or the first rule it breaks
    /// (an error naming the entry). A refused entry leaves the validator unchanged.
    pub fn check_entry(&mut self, entry: &Entry) -> Result<EntryRole> {
        self.in_manifest = false;
        let role = self.check(entry).map_err(|e| e.with_entry(&entry.path))?;
        self.in_manifest = role == EntryRole::Manifest;
        Ok(role)
    }

    /// Takes a chunk of the manifest's content (only right after its entry was accepted).
    /// Errors with [`ErrorKind::ManifestTooLarge`] past the limit.
    pub fn manifest_chunk(&mut self, bytes: &[u8]) -> Result<()> {
        if !self.in_manifest {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "manifest content given outside the manifest entry",
            ));
        }
        let size = self.manifest.len() as u64 + bytes.len() as u64;
        if size > self.limits.max_manifest_size {
            return Err(
                manifest_too_large(size, self.limits.max_manifest_size).with_entry(b"manifest")
            );
        }
        self.manifest.extend_from_slice(bytes);
        Ok(())
    }

    /// Checks the uncompressed size of the stream so far against [`Limits::max_total_size`].
    #[cfg(test)]
    pub fn check_total_size(&self, uncompressed: u64) -> Result<()> {
        if uncompressed > self.limits.max_total_size {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                format!(
                    "the archive is larger than {} bytes uncompressed",
                    self.limits.max_total_size
                ),
            ));
        }
        Ok(())
    }

    /// Ends the stream: [`ErrorKind::MissingManifest`] or [`ErrorKind::MissingRootfs`], else
    /// the manifest bytes and the counts.
    pub fn finish(self) -> Result<LayoutSummary> {
        if !self.manifest_seen {
            return Err(Error::new(
                ErrorKind::MissingManifest,
                "the archive has no manifest file",
            ));
        }
        if !self.rootfs_seen {
            return Err(Error::new(
                ErrorKind::MissingRootfs,
                "the archive has no rootfs directory",
            ));
        }
        Ok(LayoutSummary {
            manifest: self.manifest,
            entries: self.entries,
            regular_files: self.regular_files,
            content_bytes: self.content_bytes,
        })
    }

    fn check(&mut self, entry: &Entry) -> Result<EntryRole> {
        let limits = self.limits;
        if self.entries >= limits.max_entries {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                format!("the archive has more than {} entries", limits.max_entries),
            ));
        }
        if entry.path.len() > limits.max_path_len {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                format!("path longer than {} bytes", limits.max_path_len),
            ));
        }
        let (path, trailing_slash) = split_path(&entry.path)?;
        if let EntryKind::Other(flag) = entry.kind {
            return Err(Error::new(
                ErrorKind::UnsupportedEntryType,
                format!(
                    "unsupported entry type '{}'",
                    char::from(flag).escape_default()
                ),
            ));
        }
        let is_directory = entry.kind == EntryKind::Directory;
        if trailing_slash && !is_directory {
            return Err(Error::new(
                ErrorKind::BadPath,
                format!(
                    "path ends with '/' but the entry is {}",
                    kind_name(kind_code(entry.kind))
                ),
            ));
        }
        if entry.kind != EntryKind::Regular && entry.size > 0 {
            return Err(Error::new(
                ErrorKind::UnexpectedData,
                format!(
                    "{} carries {} bytes of data",
                    kind_name(kind_code(entry.kind)),
                    entry.size
                ),
            ));
        }

        // Top level.
        let top = path.split(|&b| b == b'/').next().unwrap_or_default();
        let role = if path.is_empty() {
            if !is_directory {
                return Err(Error::new(
                    ErrorKind::BadPath,
                    "the archive root must be a directory",
                ));
            }
            if self.root_seen {
                return Err(Error::new(
                    ErrorKind::DuplicateEntry,
                    "the archive root appears twice",
                ));
            }
            self.root_seen = true;
            self.entries += 1;
            return Ok(EntryRole::Root);
        } else if path == b"manifest" {
            if entry.kind != EntryKind::Regular || entry.sparse.is_some() {
                let what = if entry.sparse.is_some() {
                    "a sparse file"
                } else {
                    kind_name(kind_code(entry.kind))
                };
                return Err(Error::new(
                    ErrorKind::WrongTopLevelType,
                    format!("manifest must be a regular file, not {what}"),
                ));
            }
            if entry.size > limits.max_manifest_size {
                return Err(manifest_too_large(entry.size, limits.max_manifest_size));
            }
            EntryRole::Manifest
        } else if path == b"rootfs" {
            if !is_directory {
                return Err(Error::new(
                    ErrorKind::WrongTopLevelType,
                    format!(
                        "rootfs must be a directory, not {}",
                        kind_name(kind_code(entry.kind))
                    ),
                ));
            }
            EntryRole::Rootfs
        } else if top == b"rootfs" {
            EntryRole::RootfsMember
        } else {
            return Err(Error::new(
                ErrorKind::ExtraTopLevelEntry,
                format!(
                    "top-level entry {:?} (only manifest and rootfs are allowed)",
                    display_path(top)
                ),
            ));
        };

        let kind = kind_code(entry.kind);
        let (dir, name) = match path.iter().rposition(|&b| b == b'/') {
            Some(i) => (&path[..i], &path[i + 1..]),
            None => (&path[..0], path),
        };
        let place = self.place(dir, name, kind)?;

        match entry.kind {
            EntryKind::Symlink => self.check_symlink_target(entry)?,
            EntryKind::Hardlink => self.check_hardlink_target(entry, path)?,
            _ => {}
        }

        // Commit.
        let missing = place
            .missing_from
            .map_or(0, |from| dir[from..].split(|&b| b == b'/').count());
        if !self.tree.has_room(missing + 1, path.len()) {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                "too many paths to keep track of",
            ));
        }
        let mut parent = place.parent;
        if let Some(from) = place.missing_from {
            for c in dir[from..].split(|&b| b == b'/') {
                parent = self.tree.insert(parent, c, IMPLIED);
            }
        }
        match place.implied {
            Some(id) => self.tree.nodes[id as usize].kind = kind,
            None => {
                self.tree.insert(parent, name, kind);
            }
        }
        if self.last_dir != dir {
            self.last_dir.clear();
            self.last_dir.extend_from_slice(dir);
        }
        self.last_dir_id = parent;

        self.entries += 1;
        match role {
            EntryRole::Manifest => self.manifest_seen = true,
            EntryRole::Rootfs => self.rootfs_seen = true,
            _ => {
                self.rootfs_seen = true;
                if entry.kind == EntryKind::Regular {
                    self.regular_files += 1;
                    self.content_bytes = self.content_bytes.saturating_add(entry.logical_size());
                }
            }
        }
        Ok(role)
    }

    /// Finds where `dir/name` goes: refuses a duplicate, a non-directory ancestor, and a
    /// non-directory at a path earlier members implied was a directory.
    fn place(&self, dir: &[u8], name: &[u8], kind: u8) -> Result<Placement> {
        let mut place = Placement {
            parent: NONE,
            missing_from: None,
            implied: None,
        };
        if !dir.is_empty() {
            if dir == self.last_dir.as_slice() {
                place.parent = self.last_dir_id;
            } else {
                let mut start = 0;
                for c in dir.split(|&b| b == b'/') {
                    let Some(id) = self.tree.find(place.parent, c) else {
                        place.missing_from = Some(start);
                        break;
                    };
                    let code = self.tree.nodes[id as usize].kind;
                    if !is_dir(code) {
                        let ancestor = &dir[..start + c.len()];
                        return Err(Error::new(
                            ErrorKind::ParentNotDirectory,
                            format!("parent {:?} is {}", display_path(ancestor), kind_name(code)),
                        ));
                    }
                    place.parent = id;
                    start += c.len() + 1;
                }
            }
        }
        if place.missing_from.is_none()
            && let Some(id) = self.tree.find(place.parent, name)
        {
            let code = self.tree.nodes[id as usize].kind;
            if code != IMPLIED {
                return Err(Error::new(
                    ErrorKind::DuplicateEntry,
                    format!("the path appears twice (first as {})", kind_name(code)),
                ));
            }
            if kind != DIRECTORY {
                return Err(Error::new(
                    ErrorKind::ParentNotDirectory,
                    format!(
                        "earlier entries lie under this path, but it is {}",
                        kind_name(kind)
                    ),
                ));
            }
            place.implied = Some(id);
        }
        Ok(place)
    }

    fn check_symlink_target(&self, entry: &Entry) -> Result<()> {
        let target = entry.link_target.as_deref().unwrap_or_default();
        if target.is_empty() {
            return Err(Error::new(
                ErrorKind::BadPath,
                "symlink with an empty target",
            ));
        }
        if target.len() > self.limits.max_path_len {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                format!(
                    "symlink target longer than {} bytes",
                    self.limits.max_path_len
                ),
            ));
        }
        if target.contains(&0) {
            return Err(Error::new(
                ErrorKind::BadPath,
                "symlink target has a NUL byte",
            ));
        }
        Ok(())
    }

    /// A hardlink must name an earlier, non-directory entry under `rootfs/`, other than itself.
    fn check_hardlink_target(&self, entry: &Entry, path: &[u8]) -> Result<()> {
        let bad = |why: String| Error::new(ErrorKind::BadHardlink, why);
        let Some(raw) = entry.link_target.as_deref() else {
            return Err(bad("hardlink without a target".into()));
        };
        if raw.len() > self.limits.max_path_len {
            return Err(Error::new(
                ErrorKind::LimitExceeded,
                format!(
                    "hardlink target longer than {} bytes",
                    self.limits.max_path_len
                ),
            ));
        }
        let shown = display_path(raw);
        let (target, trailing_slash) = split_path(raw)
            .map_err(|e| bad(format!("hardlink target {shown:?}: {}", e.message())))?;
        if trailing_slash {
            return Err(bad(format!(
                "hardlink target {shown:?} ends with '/' (a directory)"
            )));
        }
        if !target.starts_with(b"rootfs/") {
            return Err(bad(format!("hardlink target {shown:?} is outside rootfs/")));
        }
        if target == path {
            return Err(bad("hardlink to itself".into()));
        }
        match self
            .tree
            .find_path(target)
            .map(|id| self.tree.nodes[id as usize].kind)
        {
            None => Err(bad(format!(
                "hardlink to a later or missing entry {shown:?}"
            ))),
            Some(code) if is_dir(code) => {
                Err(bad(format!("hardlink target {shown:?} is a directory")))
            }
            Some(_) => Ok(()),
        }
    }
}

fn manifest_too_large(size: u64, max: u64) -> Error {
    Error::new(
        ErrorKind::ManifestTooLarge,
        format!("the manifest is {size} bytes, more than the limit of {max}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::tar::{HeaderFormat, SparseMap, SparseSegment, Timestamp};

    fn raw(path: &[u8], kind: EntryKind) -> Entry {
        let type_flag = match kind {
            EntryKind::Regular => b'0',
            EntryKind::Hardlink => b'1',
            EntryKind::Symlink => b'2',
            EntryKind::CharDevice => b'3',
            EntryKind::BlockDevice => b'4',
            EntryKind::Directory => b'5',
            EntryKind::Fifo => b'6',
            EntryKind::Other(flag) => flag,
        };
        Entry {
            index: 0,
            header_offset: 0,
            path: path.to_vec(),
            kind,
            type_flag,
            format: HeaderFormat::Ustar,
            mode: 0o644,
            uid: 0,
            gid: 0,
            uname: Vec::new(),
            gname: Vec::new(),
            mtime: Timestamp::default(),
            atime: None,
            ctime: None,
            size: 0,
            link_target: None,
            device: None,
            xattrs: Vec::new(),
            sparse: None,
        }
    }

    fn dir(path: &str) -> Entry {
        raw(path.as_bytes(), EntryKind::Directory)
    }

    fn file(path: &str, size: u64) -> Entry {
        Entry {
            size,
            ..raw(path.as_bytes(), EntryKind::Regular)
        }
    }

    fn link(path: &str, kind: EntryKind, target: &[u8]) -> Entry {
        Entry {
            link_target: Some(target.to_vec()),
            ..raw(path.as_bytes(), kind)
        }
    }

    fn symlink(path: &str, target: &str) -> Entry {
        link(path, EntryKind::Symlink, target.as_bytes())
    }

    fn hardlink(path: &str, target: &str) -> Entry {
        link(path, EntryKind::Hardlink, target.as_bytes())
    }

    /// Checks every entry (feeding `{}` as the manifest) and finishes.
    fn run_with(limits: Limits, entries: &[Entry]) -> Result<LayoutSummary> {
        let mut v = LayoutValidator::new(limits);
        for e in entries {
            if v.check_entry(e)? == EntryRole::Manifest {
                v.manifest_chunk(b"{}")?;
            }
        }
        v.finish()
    }

    fn run(entries: &[Entry]) -> Result<LayoutSummary> {
        run_with(Limits::default(), entries)
    }

    #[track_caller]
    fn refused_with(limits: Limits, entries: &[Entry], kind: ErrorKind, entry: Option<&str>) {
        let err = run_with(limits, entries).expect_err("the layout should be refused");
        assert_eq!(err.kind(), kind, "{err}");
        assert_eq!(err.entry(), entry, "{err}");
    }

    /// Expects the last entry to be refused with `kind`, naming it.
    #[track_caller]
    fn refused(entries: &[Entry], kind: ErrorKind) {
        let last = display_path(&entries.last().unwrap().path);
        refused_with(Limits::default(), entries, kind, Some(&last));
    }

    fn base() -> Vec<Entry> {
        vec![file("manifest", 2), dir("rootfs")]
    }

    fn with(extra: Vec<Entry>) -> Vec<Entry> {
        let mut all = base();
        all.extend(extra);
        all
    }

    #[test]
    fn minimal_valid_image() {
        let entries = [
            file("manifest", 2),
            dir("rootfs"),
            dir("rootfs/etc"),
            file("rootfs/etc/passwd", 10),
        ];
        let mut v = LayoutValidator::new(Limits::default());
        let roles: Vec<_> = entries.iter().map(|e| v.check_entry(e).unwrap()).collect();
        assert_eq!(
            roles,
            [
                EntryRole::Manifest,
                EntryRole::Rootfs,
                EntryRole::RootfsMember,
                EntryRole::RootfsMember
            ]
        );
        let summary = run(&entries).unwrap();
        assert_eq!(
            summary,
            LayoutSummary {
                manifest: b"{}".to_vec(),
                entries: 4,
                regular_files: 1,
                content_bytes: 10,
            }
        );
    }

    #[test]
    fn dot_slash_prefixed_archive() {
        let entries = [
            dir("./"),
            file("./manifest", 2),
            dir("./rootfs/"),
            dir("./rootfs/bin/"),
            file("././rootfs/bin/sh", 5),
            symlink("./rootfs/bin/bash", "sh"),
            hardlink("./rootfs/bin/ash", "./rootfs/bin/sh"),
        ];
        let mut v = LayoutValidator::new(Limits::default());
        assert_eq!(v.check_entry(&entries[0]).unwrap(), EntryRole::Root);
        assert_eq!(v.check_entry(&entries[1]).unwrap(), EntryRole::Manifest);
        assert_eq!(v.check_entry(&entries[2]).unwrap(), EntryRole::Rootfs);
        let summary = run(&entries).unwrap();
        assert_eq!(summary.entries, 7);
        assert_eq!(summary.regular_files, 1);
        assert!(run(&with(vec![dir(".")])).is_ok());
    }

    #[test]
    fn trailing_slash_only_on_directories() {
        assert!(run(&[file("manifest", 2), dir("rootfs/"), dir("rootfs/a/")]).is_ok());
        refused(&with(vec![file("rootfs/a/", 0)]), ErrorKind::BadPath);
        refused(&with(vec![symlink("rootfs/a/", "b")]), ErrorKind::BadPath);
        refused(&with(vec![dir("rootfs/a//")]), ErrorKind::BadPath);
    }

    #[test]
    fn root_entry_rules() {
        refused(&with(vec![dir("./"), dir(".")]), ErrorKind::DuplicateEntry);
        refused(&with(vec![file(".", 0)]), ErrorKind::BadPath);
        refused(&with(vec![dir(".//")]), ErrorKind::BadPath);
    }

    #[test]
    fn normalize_path_canonical_forms() {
        let ok = |p: &[u8]| normalize_path(p).unwrap();
        assert_eq!(ok(b"./"), b"");
        assert_eq!(ok(b"."), b"");
        assert_eq!(ok(b"././"), b"");
        assert_eq!(ok(b"./rootfs/"), b"rootfs");
        assert_eq!(ok(b"././rootfs/a"), b"rootfs/a");
        assert_eq!(ok(b"rootfs/a...b/.x"), b"rootfs/a...b/.x");
        let kind = |p: &[u8]| normalize_path(p).unwrap_err().kind();
        assert_eq!(kind(b""), ErrorKind::BadPath);
        assert_eq!(kind(b"/rootfs"), ErrorKind::AbsolutePath);
        assert_eq!(kind(b"/../x"), ErrorKind::AbsolutePath);
        assert_eq!(kind(b"a/../b"), ErrorKind::PathTraversal);
        assert_eq!(kind(b"a//b"), ErrorKind::BadPath);
        assert_eq!(kind(b"a/./b"), ErrorKind::BadPath);
        assert_eq!(kind(b"a/."), ErrorKind::BadPath);
        assert_eq!(kind(b"a/b//"), ErrorKind::BadPath);
        assert_eq!(normalize_path(b"a\0b").unwrap_err().entry(), Some("a\0b"));
    }

    #[test]
    fn path_traversal_refused() {
        refused(
            &with(vec![dir("rootfs/a/../../etc")]),
            ErrorKind::PathTraversal,
        );
        refused(&with(vec![dir("rootfs/a/..")]), ErrorKind::PathTraversal);
        refused(
            &with(vec![file("../manifest", 2)]),
            ErrorKind::PathTraversal,
        );
        refused(&with(vec![file("./../x", 0)]), ErrorKind::PathTraversal);
    }

    #[test]
    fn absolute_path_refused() {
        refused(
            &with(vec![file("/rootfs/etc/passwd", 0)]),
            ErrorKind::AbsolutePath,
        );
        refused(&with(vec![dir("/")]), ErrorKind::AbsolutePath);
    }

    #[test]
    fn non_canonical_paths_refused() {
        refused(&with(vec![file("rootfs//a", 0)]), ErrorKind::BadPath);
        refused(&with(vec![file("rootfs/./a", 0)]), ErrorKind::BadPath);
        refused(&with(vec![file("", 0)]), ErrorKind::BadPath);
    }

    #[test]
    fn nul_in_path_refused() {
        let e = raw(b"rootfs/a\0b", EntryKind::Regular);
        refused(&with(vec![e]), ErrorKind::BadPath);
    }

    #[test]
    fn non_utf8_names_accepted() {
        let summary = run(&with(vec![
            raw(b"rootfs/caf\xe9", EntryKind::Directory),
            raw(b"rootfs/caf\xe9/\xff\xfe", EntryKind::Regular),
        ]))
        .unwrap();
        assert_eq!(summary.regular_files, 1);
        let mut dup = with(vec![raw(b"rootfs/\xff", EntryKind::Regular)]);
        dup.push(raw(b"./rootfs/\xff", EntryKind::Regular));
        refused_with(
            Limits::default(),
            &dup,
            ErrorKind::DuplicateEntry,
            Some("./rootfs/\\xff"),
        );
    }

    #[test]
    fn entry_through_symlink_refused() {
        let entries = with(vec![symlink("rootfs/a", "/etc"), file("rootfs/a/b", 0)]);
        refused(&entries, ErrorKind::ParentNotDirectory);
        let deep = with(vec![
            dir("rootfs/x"),
            symlink("rootfs/x/a", "/etc"),
            file("rootfs/x/a/b/c", 0),
        ]);
        refused(&deep, ErrorKind::ParentNotDirectory);
    }

    #[test]
    fn entry_under_regular_file_refused() {
        refused(
            &with(vec![file("rootfs/a", 0), dir("rootfs/a/b")]),
            ErrorKind::ParentNotDirectory,
        );
        refused(
            &with(vec![
                file("rootfs/a", 0),
                hardlink("rootfs/h", "rootfs/a"),
                file("rootfs/h/x", 0),
            ]),
            ErrorKind::ParentNotDirectory,
        );
    }

    #[test]
    fn implied_directory_turned_into_symlink_refused() {
        refused(
            &with(vec![file("rootfs/a/b", 0), symlink("rootfs/a", "/tmp")]),
            ErrorKind::ParentNotDirectory,
        );
        refused(
            &with(vec![file("rootfs/a/b/c", 0), file("rootfs/a/b", 0)]),
            ErrorKind::ParentNotDirectory,
        );
    }

    #[test]
    fn explicit_directory_after_implied_one_accepted() {
        let summary = run(&[
            file("rootfs/a/b/c", 3),
            dir("rootfs/a"),
            dir("rootfs/a/b"),
            dir("rootfs"),
            file("manifest", 2),
        ])
        .unwrap();
        assert_eq!(summary.entries, 5);
        assert_eq!(summary.content_bytes, 3);
    }

    #[test]
    fn implied_rootfs_accepted() {
        let summary = run(&[file("manifest", 2), file("rootfs/bin/sh", 7)]).unwrap();
        assert_eq!(summary.regular_files, 1);
        assert_eq!(summary.content_bytes, 7);
    }

    #[test]
    fn hardlinks() {
        let ok = with(vec![
            file("rootfs/a", 0),
            hardlink("rootfs/b", "rootfs/a"),
            hardlink("rootfs/c", "./rootfs/b"),
            symlink("rootfs/s", "a"),
            hardlink("rootfs/t", "rootfs/s"),
        ]);
        assert_eq!(run(&ok).unwrap().regular_files, 1);

        let bad = ErrorKind::BadHardlink;
        refused(&with(vec![hardlink("rootfs/b", "manifest")]), bad);
        refused(&with(vec![hardlink("rootfs/b", "/etc/passwd")]), bad);
        refused(&with(vec![hardlink("rootfs/b", "rootfs/../manifest")]), bad);
        refused(&with(vec![hardlink("rootfs/b", "rootfs")]), bad);
        refused(&with(vec![hardlink("rootfs/b", "rootfs2/a")]), bad);
        refused(&with(vec![hardlink("rootfs/b", "rootfs/a/")]), bad);
        refused(&with(vec![link("rootfs/b", EntryKind::Hardlink, b"")]), bad);
        refused(&with(vec![raw(b"rootfs/b", EntryKind::Hardlink)]), bad);
    }

    #[test]
    fn hardlink_to_later_entry_refused() {
        let entries = with(vec![hardlink("rootfs/b", "rootfs/a"), file("rootfs/a", 0)]);
        let err = run(&entries).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::BadHardlink);
        assert_eq!(err.entry(), Some("rootfs/b"));
        assert!(err.message().contains("later or missing"), "{err}");
    }

    #[test]
    fn hardlink_to_missing_entry_refused() {
        refused(
            &with(vec![file("rootfs/a", 0), hardlink("rootfs/b", "rootfs/x")]),
            ErrorKind::BadHardlink,
        );
    }

    #[test]
    fn hardlink_to_directory_refused() {
        refused(
            &with(vec![dir("rootfs/d"), hardlink("rootfs/b", "rootfs/d")]),
            ErrorKind::BadHardlink,
        );
        // A directory only implied by its members.
        refused(
            &with(vec![
                file("rootfs/d/f", 0),
                hardlink("rootfs/b", "rootfs/d"),
            ]),
            ErrorKind::BadHardlink,
        );
    }

    #[test]
    fn hardlink_to_itself_refused() {
        let entries = with(vec![hardlink("rootfs/b", "./rootfs/b")]);
        refused(&entries, ErrorKind::BadHardlink);
        assert!(run(&entries).unwrap_err().message().contains("itself"));
    }

    #[test]
    fn symlink_targets() {
        let ok = with(vec![
            symlink("rootfs/a", "/etc/passwd"),
            symlink("rootfs/b", "../../../../etc"),
            link("rootfs/c", EntryKind::Symlink, b"\xff\xfe"),
        ]);
        assert!(run(&ok).is_ok());
        refused(&with(vec![symlink("rootfs/a", "")]), ErrorKind::BadPath);
        refused(
            &with(vec![raw(b"rootfs/a", EntryKind::Symlink)]),
            ErrorKind::BadPath,
        );
        refused(
            &with(vec![link("rootfs/a", EntryKind::Symlink, b"a\0b")]),
            ErrorKind::BadPath,
        );
    }

    #[test]
    fn missing_manifest() {
        refused_with(
            Limits::default(),
            &[dir("rootfs"), file("rootfs/a", 0)],
            ErrorKind::MissingManifest,
            None,
        );
        refused_with(Limits::default(), &[], ErrorKind::MissingManifest, None);
    }

    #[test]
    fn missing_rootfs() {
        refused_with(
            Limits::default(),
            &[dir("./"), file("manifest", 2)],
            ErrorKind::MissingRootfs,
            None,
        );
    }

    #[test]
    fn extra_top_level_entries_refused() {
        let extra = ErrorKind::ExtraTopLevelEntry;
        refused(&with(vec![file("README", 0)]), extra);
        refused(&with(vec![dir("rootfs2")]), extra);
        refused(&with(vec![dir("rootfs2/")]), extra);
        refused(&with(vec![file("rootfs2/x", 0)]), extra);
        refused(&with(vec![file("manifest/x", 0)]), extra);
        refused(&with(vec![file("manifest2", 0)]), extra);
        refused(&with(vec![raw(b"\xff", EntryKind::Regular)]), extra);
    }

    #[test]
    fn top_level_types() {
        let wrong = ErrorKind::WrongTopLevelType;
        refused(&[dir("manifest")], wrong);
        refused(&[dir("manifest/")], wrong);
        refused(&[symlink("manifest", "rootfs/etc/manifest")], wrong);
        refused(&[file("manifest", 2), file("rootfs", 0)], wrong);
        refused(&[file("manifest", 2), symlink("rootfs", "/")], wrong);
        refused(&[file("rootfs/a", 0), symlink("rootfs", "/")], wrong);
        let sparse = Entry {
            sparse: Some(SparseMap {
                format: "1.0",
                real_size: 100,
                segments: vec![SparseSegment {
                    offset: 0,
                    length: 2,
                }],
            }),
            ..file("manifest", 2)
        };
        refused(&[sparse], wrong);
    }

    #[test]
    fn duplicates_refused() {
        let dup = ErrorKind::DuplicateEntry;
        refused(&with(vec![file("rootfs/a", 0), file("rootfs/a", 0)]), dup);
        refused(&with(vec![dir("rootfs/d"), dir("rootfs/d/")]), dup);
        refused(&with(vec![dir("rootfs")]), dup);
        refused(&with(vec![file("./manifest", 2)]), dup);
        refused(
            &with(vec![file("rootfs/a", 0), symlink("./rootfs/a", "b")]),
            dup,
        );
        refused(&with(vec![file("rootfs/a", 0), dir("rootfs/a")]), dup);
    }

    #[test]
    fn oversized_manifest_refused() {
        let limits = Limits {
            max_manifest_size: 10,
            ..Limits::default()
        };
        refused_with(
            limits,
            &[file("manifest", 11)],
            ErrorKind::ManifestTooLarge,
            Some("manifest"),
        );
        // The content is checked too, whatever the header said.
        let mut v = LayoutValidator::new(limits);
        v.check_entry(&file("./manifest", 10)).unwrap();
        v.manifest_chunk(b"0123456789").unwrap();
        let err = v.manifest_chunk(b"x").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::ManifestTooLarge);
        assert_eq!(err.entry(), Some("manifest"));
        assert!(run_with(limits, &[file("manifest", 10), dir("rootfs")]).is_ok());
    }

    #[test]
    fn manifest_chunk_only_for_the_manifest() {
        let mut v = LayoutValidator::new(Limits::default());
        assert_eq!(
            v.manifest_chunk(b"{}").unwrap_err().kind(),
            ErrorKind::InvalidArgument
        );
        v.check_entry(&file("manifest", 4)).unwrap();
        v.manifest_chunk(b"{").unwrap();
        v.manifest_chunk(b"}\n").unwrap();
        v.check_entry(&dir("rootfs")).unwrap();
        assert!(v.manifest_chunk(b"x").is_err());
        assert_eq!(v.finish().unwrap().manifest, b"{}\n");
    }

    #[test]
    fn unsupported_entry_types_refused() {
        for flag in [b'V', b'M', b'D', b'K'] {
            let entries = with(vec![raw(b"rootfs/x", EntryKind::Other(flag))]);
            refused(&entries, ErrorKind::UnsupportedEntryType);
            let message = run(&entries).unwrap_err().message().to_string();
            assert!(
                message.contains(&format!("'{}'", flag as char)),
                "{message}"
            );
        }
    }

    #[test]
    fn data_on_non_regular_entries_refused() {
        let sized = |e: Entry| Entry { size: 1, ..e };
        let data = ErrorKind::UnexpectedData;
        refused(&with(vec![sized(dir("rootfs/d"))]), data);
        refused(&with(vec![sized(symlink("rootfs/s", "x"))]), data);
        refused(
            &with(vec![
                file("rootfs/a", 1),
                sized(hardlink("rootfs/h", "rootfs/a")),
            ]),
            data,
        );
        refused(&with(vec![sized(raw(b"rootfs/f", EntryKind::Fifo))]), data);
        refused(&[sized(dir("rootfs"))], data);
    }

    #[test]
    fn devices_and_fifos_accepted_under_rootfs() {
        let summary = run(&with(vec![
            dir("rootfs/dev"),
            Entry {
                device: Some((5, 1)),
                ..raw(b"rootfs/dev/console", EntryKind::CharDevice)
            },
            Entry {
                device: Some((8, 0)),
                ..raw(b"rootfs/dev/sda", EntryKind::BlockDevice)
            },
            raw(b"rootfs/dev/fifo", EntryKind::Fifo),
        ]))
        .unwrap();
        assert_eq!(summary.entries, 6);
        assert_eq!(summary.regular_files, 0);
        refused(
            &[raw(b"fifo", EntryKind::Fifo)],
            ErrorKind::ExtraTopLevelEntry,
        );
    }

    #[test]
    fn entry_limit() {
        let limits = Limits {
            max_entries: 3,
            ..Limits::default()
        };
        assert!(run_with(limits, &with(vec![file("rootfs/a", 0)])).is_ok());
        refused_with(
            limits,
            &with(vec![file("rootfs/a", 0), file("rootfs/b", 0)]),
            ErrorKind::LimitExceeded,
            Some("rootfs/b"),
        );
    }

    #[test]
    fn path_length_limit() {
        let limits = Limits {
            max_path_len: 10,
            ..Limits::default()
        };
        assert!(run_with(limits, &with(vec![file("rootfs/abc", 0)])).is_ok());
        refused_with(
            limits,
            &with(vec![file("rootfs/abcd", 0)]),
            ErrorKind::LimitExceeded,
            Some("rootfs/abcd"),
        );
        refused_with(
            limits,
            &with(vec![symlink("rootfs/a", "0123456789a")]),
            ErrorKind::LimitExceeded,
            Some("rootfs/a"),
        );
    }

    #[test]
    fn total_size_limit() {
        let v = LayoutValidator::new(Limits {
            max_total_size: 1024,
            ..Limits::default()
        });
        assert!(v.check_total_size(1024).is_ok());
        assert_eq!(
            v.check_total_size(1025).unwrap_err().kind(),
            ErrorKind::LimitExceeded
        );
    }

    #[test]
    fn refused_entry_leaves_state_unchanged() {
        let mut v = LayoutValidator::new(Limits::default());
        v.check_entry(&file("manifest", 2)).unwrap();
        v.check_entry(&file("rootfs/a/b", 0)).unwrap();
        assert!(v.check_entry(&symlink("rootfs/x/y/z", "")).is_err());
        // rootfs/x was not recorded as implied by the refused entry.
        v.check_entry(&file("rootfs/x", 0)).unwrap();
        assert_eq!(v.finish().unwrap().entries, 3);
    }

    #[test]
    fn hash_collisions_resolved() {
        let mut v = LayoutValidator::new(Limits::default());
        v.tree.hash_mask = 0b11;
        v.check_entry(&file("manifest", 2)).unwrap();
        for d in 0..20 {
            for f in 0..20 {
                v.check_entry(&file(&format!("rootfs/d{d}/f{f}"), 1))
                    .unwrap();
            }
        }
        for d in 0..20 {
            for f in 0..20 {
                let e = file(&format!("./rootfs/d{d}/f{f}"), 1);
                let err = v.check_entry(&e).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::DuplicateEntry);
            }
            let link = hardlink(&format!("rootfs/h{d}"), &format!("rootfs/d{d}/f3"));
            v.check_entry(&link).unwrap();
            let under = file(&format!("rootfs/d{d}/f5/x"), 0);
            let err = v.check_entry(&under).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::ParentNotDirectory);
        }
        assert_eq!(v.tree.index.len(), 4);
        assert_eq!(v.finish().unwrap().regular_files, 400);
    }

    #[test]
    fn many_entries_in_many_directories() {
        let mut v = LayoutValidator::new(Limits::default());
        v.check_entry(&file("manifest", 2)).unwrap();
        for d in 0..50 {
            v.check_entry(&dir(&format!("rootfs/d{d}"))).unwrap();
            for f in 0..50 {
                v.check_entry(&file(&format!("rootfs/d{d}/sub/f{f}"), 1))
                    .unwrap();
            }
        }
        for d in 0..50 {
            let e = file(&format!("./rootfs/d{d}/sub/f7"), 1);
            assert_eq!(
                v.check_entry(&e).unwrap_err().kind(),
                ErrorKind::DuplicateEntry
            );
            v.check_entry(&dir(&format!("rootfs/d{d}/sub"))).unwrap();
        }
        let summary = v.finish().unwrap();
        assert_eq!(summary.regular_files, 2500);
        assert_eq!(summary.entries, 1 + 50 + 2500 + 50);
    }
}
