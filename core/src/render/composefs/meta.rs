//! The metadata tree of a rootfs, in memory: names, types, owners, modes, mtimes, xattrs,
//! symlink targets, device numbers, hardlinks (one node, several names) and, for each
//! regular file, its size and content object. No content is read.
//!
//! [`read_layer`] makes one from an image's recipe alone: the recipe holds every tar
//! header, so the tar is replayed with its contents as zeros (never read from the
//! objects), which takes milliseconds where regenerating the tar hashes every byte.
//! [`flatten`] lays layers over each other with their whitelists as `super::super::stack`
//! does on disk (ace.md "Filesystem Setup").

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::fs::File;
use std::io::BufReader;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

use crate::archive::tar::{Entry, EntryKind, TarReader};
use crate::render::deps::{Layer, PathFilter};
use crate::render::observe::Meter;
use crate::render::tree::{split, tree_path};
use crate::store::ContentDigest;
use crate::store::recipe::{RecipeReader, RecipeRecord};
use crate::{Error, ErrorKind, Result};

/// What a node is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NodeData {
    /// A directory: its entries by name (byte order, as EROFS wants them).
    Dir(BTreeMap<Vec<u8>, usize>),
    /// A regular file of `size` bytes (logical: holes count), its content in `object`
    /// (`None`: empty, or all holes).
    File {
        /// Logical size.
        size: u64,
        /// The content object.
        object: Option<ContentDigest>,
    },
    /// A symlink and its target.
    Symlink(Vec<u8>),
    /// A character device (major, minor).
    Char(u32, u32),
    /// A block device (major, minor).
    Block(u32, u32),
    /// A FIFO.
    Fifo,
}

/// One inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Node {
    /// What it is.
    pub data: NodeData,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, u32),
    /// Extended attributes, in the archive's order.
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// A rootfs: node 0 is its root directory.
#[derive(Debug, Clone)]
pub(crate) struct MetaTree {
    /// Every node ever made; the writer keeps only those reachable from the root.
    pub nodes: Vec<Node>,
}

impl MetaTree {
    /// A tree with only a root directory (see [`implied_dir`]).
    fn new() -> MetaTree {
        MetaTree {
            nodes: vec![implied_dir()],
        }
    }

    fn children(&self, dir: usize) -> &BTreeMap<Vec<u8>, usize> {
        match &self.nodes[dir].data {
            NodeData::Dir(c) => c,
            _ => unreachable!("a directory"),
        }
    }

    fn children_mut(&mut self, dir: usize) -> &mut BTreeMap<Vec<u8>, usize> {
        match &mut self.nodes[dir].data {
            NodeData::Dir(c) => c,
            _ => unreachable!("a directory"),
        }
    }

    fn is_dir(&self, n: usize) -> bool {
        matches!(self.nodes[n].data, NodeData::Dir(_))
    }

    fn push(&mut self, node: Node) -> usize {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    /// The directory at `rel` (components split by `/`), made as implied directories
    /// where missing; a non-directory in the way is replaced, as GNU tar does.
    fn dir_at(&mut self, rel: &[u8]) -> usize {
        let mut cur = 0;
        for comp in rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            cur = match self.children(cur).get(comp) {
                Some(&n) if self.is_dir(n) => n,
                _ => {
                    let n = self.push(implied_dir());
                    self.children_mut(cur).insert(comp.to_vec(), n);
                    n
                }
            };
        }
        cur
    }

    /// The node at `rel`, if any.
    fn lookup(&self, rel: &[u8]) -> Option<usize> {
        let mut cur = 0;
        for comp in rel.split(|&b| b == b'/').filter(|c| !c.is_empty()) {
            if !self.is_dir(cur) {
                return None;
            }
            cur = *self.children(cur).get(comp)?;
        }
        Some(cur)
    }
}

/// A directory the archive implies without listing it: 0755, root's, mtime 0, so that
/// the same recipes always give the same image (`fsck` rebuilds and compares it).
fn implied_dir() -> Node {
    Node {
        data: NodeData::Dir(BTreeMap::new()),
        mode: 0o755,
        uid: 0,
        gid: 0,
        mtime: (0, 0),
        xattrs: Vec::new(),
    }
}

/// The recipe replayed as a tar whose contents are zeros; the content records met on
/// the way are kept, in order, in `contents`.
struct RecipeTar {
    recipe: RecipeReader<BufReader<File>>,
    meta: Vec<u8>,
    at: usize,
    zeros: u64,
    contents: Arc<Mutex<Vec<Content>>>,
}

/// A content record: the object (if any) and whether it is a Sparse record.
#[derive(Debug, Clone, Copy)]
struct Content {
    object: Option<ContentDigest>,
    sparse_record: bool,
}

impl AsyncRead for RecipeTar {
    fn poll_read(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
        let this = &mut *self;
        loop {
            if this.at < this.meta.len() {
                let n = (this.meta.len() - this.at).min(buf.remaining());
                buf.put_slice(&this.meta[this.at..this.at + n]);
                this.at += n;
                return Poll::Ready(Ok(()));
            }
            if this.zeros > 0 {
                let mut n = 0;
                while this.zeros > 0 && buf.remaining() > 0 {
                    let k = (this.zeros.min(ZEROS.len() as u64) as usize).min(buf.remaining());
                    buf.put_slice(&ZEROS[..k]);
                    this.zeros -= k as u64;
                    n += k;
                }
                debug_assert!(n > 0);
                return Poll::Ready(Ok(()));
            }
            let record = this
                .recipe
                .next_record()
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let mut contents = this.contents.lock().expect("not poisoned");
            match record {
                None => return Poll::Ready(Ok(())),
                Some(RecipeRecord::Meta(bytes)) => {
                    this.meta = bytes;
                    this.at = 0;
                }
                Some(RecipeRecord::Content { len, digest }) => {
                    contents.push(Content {
                        object: digest,
                        sparse_record: false,
                    });
                    this.zeros = len;
                }
                Some(RecipeRecord::Sparse { len, digest, .. }) => {
                    contents.push(Content {
                        object: Some(digest),
                        sparse_record: true,
                    });
                    this.zeros = len;
                }
            }
        }
    }
}

/// A regular file whose content record is known only once the recipe is read further.
struct PendingFile {
    node: usize,
    content: usize,
    sparse: bool,
    path: Vec<u8>,
}

/// The metadata tree of one image from its recipe at `recipe_path`, ticking `meter` once
/// per tar member. Runs the tar reader on `handle` (call it from a blocking thread).
pub(crate) fn read_layer(
    recipe_path: &Path,
    handle: &tokio::runtime::Handle,
    meter: &Meter,
) -> Result<MetaTree> {
    let file = File::open(recipe_path)
        .map_err(|e| Error::io(format!("opening {}", recipe_path.display()), e))?;
    let contents = Arc::new(Mutex::new(Vec::new()));
    let source = RecipeTar {
        recipe: RecipeReader::new(BufReader::new(file))?,
        meta: Vec::new(),
        at: 0,
        zeros: 0,
        contents: contents.clone(),
    };
    let mut tar = TarReader::new(source);
    let mut tree = MetaTree::new();
    let mut pending: Vec<PendingFile> = Vec::new();
    let mut records = 0usize;
    while let Some(entry) = handle.block_on(tar.next_entry())? {
        meter.tick(1)?;
        // As `tree::member_content`: which members have a content record.
        let content = if entry.size == 0 && entry.kind != EntryKind::Regular {
            None
        } else {
            records += 1;
            Some(records - 1)
        };
        member(&mut tree, &entry, content, &mut pending).map_err(|e| {
            if e.entry().is_some() {
                e
            } else {
                e.with_entry(&entry.path)
            }
        })?;
    }
    let contents = contents.lock().expect("not poisoned");
    if contents.len() != records {
        return Err(Error::new(
            ErrorKind::CorruptStore,
            format!(
                "the recipe {} has {} contents for {records} members with content",
                recipe_path.display(),
                contents.len()
            ),
        ));
    }
    for p in pending {
        let c = contents[p.content];
        if p.sparse && !c.sparse_record && c.object.is_some() {
            return Err(Error::new(
                ErrorKind::Unsupported,
                "a sparse member recorded by a version 1 recipe has no object of its logical \
                 content (import the image again to render it with composefs)",
            )
            .with_entry(&p.path));
        }
        if let NodeData::File { object, .. } = &mut tree.nodes[p.node].data {
            *object = c.object;
        }
    }
    Ok(tree)
}

fn id32(v: u64, what: &str) -> Result<u32> {
    u32::try_from(v)
        .map_err(|_| Error::new(ErrorKind::InvalidValue, format!("{what} {v} is too large")))
}

/// Lays the tar member `entry` into `tree`.
fn member(
    tree: &mut MetaTree,
    entry: &Entry,
    content: Option<usize>,
    pending: &mut Vec<PendingFile>,
) -> Result<()> {
    let Some(rel) = tree_path(&entry.path)? else {
        return Ok(());
    };
    let node = |data| -> Result<Node> {
        Ok(Node {
            data,
            mode: entry.mode & 0o7777,
            uid: id32(entry.uid, "uid")?,
            gid: id32(entry.gid, "gid")?,
            mtime: (entry.mtime.secs, entry.mtime.nanos),
            xattrs: entry.xattrs.clone(),
        })
    };
    if rel.is_empty() {
        if entry.kind != EntryKind::Directory {
            return Err(Error::new(
                ErrorKind::WrongTopLevelType,
                "rootfs is not a directory",
            ));
        }
        let children = std::mem::take(tree.children_mut(0));
        tree.nodes[0] = node(NodeData::Dir(children))?;
        return Ok(());
    }
    let (parent, name) = split(&rel);
    let parent = tree.dir_at(parent.as_os_str().as_bytes());
    let name = name.as_bytes().to_vec();
    let existing = tree.children(parent).get(&name).copied();
    let new = match entry.kind {
        EntryKind::Directory => {
            if let Some(n) = existing.filter(|&n| tree.is_dir(n)) {
                let children = std::mem::take(tree.children_mut(n));
                tree.nodes[n] = node(NodeData::Dir(children))?;
                return Ok(());
            }
            tree.push(node(NodeData::Dir(BTreeMap::new()))?)
        }
        EntryKind::Regular => {
            let n = tree.push(node(NodeData::File {
                size: entry.logical_size(),
                object: None,
            })?);
            if let Some(content) = content {
                pending.push(PendingFile {
                    node: n,
                    content,
                    sparse: entry.sparse.is_some(),
                    path: entry.path.clone(),
                });
            }
            n
        }
        EntryKind::Hardlink => {
            let raw = entry.link_target.as_deref().unwrap_or_default();
            let target = match tree_path(raw)? {
                Some(t) if !t.is_empty() => t,
                _ => {
                    return Err(Error::new(
                        ErrorKind::BadHardlink,
                        "the hardlink does not point below rootfs/",
                    ));
                }
            };
            match tree.lookup(&target) {
                Some(n) if !tree.is_dir(n) => n,
                _ => {
                    return Err(Error::new(
                        ErrorKind::BadHardlink,
                        format!(
                            "the hardlink's target {} is not an earlier file",
                            String::from_utf8_lossy(raw)
                        ),
                    ));
                }
            }
        }
        EntryKind::Symlink => tree.push(node(NodeData::Symlink(
            entry.link_target.clone().unwrap_or_default(),
        ))?),
        EntryKind::CharDevice | EntryKind::BlockDevice => {
            let (major, minor) = entry.device.unwrap_or((0, 0));
            let (major, minor) = (id32(major, "major")?, id32(minor, "minor")?);
            if entry.kind == EntryKind::CharDevice && (major, minor) == (0, 0) {
                // overlayfs takes a 0/0 character device in a lower layer for a whiteout.
                return Err(Error::new(
                    ErrorKind::Unsupported,
                    "a 0/0 character device cannot be shown through a composefs overlay \
                     (overlayfs reads it as a whiteout)",
                ));
            }
            tree.push(node(if entry.kind == EntryKind::CharDevice {
                NodeData::Char(major, minor)
            } else {
                NodeData::Block(major, minor)
            })?)
        }
        EntryKind::Fifo => tree.push(node(NodeData::Fifo)?),
        EntryKind::Other(flag) => {
            return Err(Error::new(
                ErrorKind::UnsupportedEntryType,
                format!("entry type {:?} cannot be put in a tree", flag as char),
            ));
        }
    };
    tree.children_mut(parent).insert(name, new);
    Ok(())
}

/// Lays `layers` (each with its tree) over each other in order, each filtered by its
/// whitelists, then prunes the result with the root image's own whitelist, as the
/// on-disk stacks are built: a later layer's root and directories give their metadata
/// to what is there, anything else replaces what is there (a symlink to a directory is
/// replaced, never followed). Hardlinks of one layer stay one node.
pub(crate) fn flatten(
    layers: &[(&MetaTree, &Layer)],
    root_whitelist: &[String],
    meter: &Meter,
) -> Result<MetaTree> {
    if let [(only, layer)] = layers
        && layer.filters.is_empty()
        && root_whitelist.is_empty()
    {
        return Ok((*only).clone());
    }
    let mut out = MetaTree::new();
    for (tree, layer) in layers {
        let filter = PathFilter::new(&layer.filters);
        let mut copied: HashMap<usize, usize> = HashMap::new();
        let root_children = std::mem::take(out.children_mut(0));
        out.nodes[0] = Node {
            data: NodeData::Dir(root_children),
            ..tree.nodes[0].clone()
        };
        let mut pending: Vec<(usize, usize, Vec<u8>)> = vec![(0, 0, Vec::new())];
        while let Some((src, dst, rel)) = pending.pop() {
            for (name, &child) in tree.children(src) {
                meter.tick(1)?;
                let path = if rel.is_empty() {
                    name.clone()
                } else {
                    [&rel[..], b"/", name].concat()
                };
                let src_is_dir = tree.is_dir(child);
                if !filter.keeps(Path::new(OsStr::from_bytes(&path)), src_is_dir) {
                    continue;
                }
                let existing = out.children(dst).get(name).copied();
                if src_is_dir {
                    let target = match existing {
                        Some(n) if out.is_dir(n) => {
                            let children = std::mem::take(out.children_mut(n));
                            out.nodes[n] = Node {
                                data: NodeData::Dir(children),
                                ..tree.nodes[child].clone()
                            };
                            n
                        }
                        _ => {
                            let n = out.push(Node {
                                data: NodeData::Dir(BTreeMap::new()),
                                ..tree.nodes[child].clone()
                            });
                            out.children_mut(dst).insert(name.clone(), n);
                            n
                        }
                    };
                    pending.push((child, target, path));
                } else {
                    let n = match copied.get(&child) {
                        Some(&n) => n,
                        None => {
                            let n = out.push(tree.nodes[child].clone());
                            copied.insert(child, n);
                            n
                        }
                    };
                    out.children_mut(dst).insert(name.clone(), n);
                }
            }
        }
    }
    if !root_whitelist.is_empty() {
        let filter = PathFilter::new(&[root_whitelist.to_vec()]);
        let mut pending: Vec<(usize, Vec<u8>)> = vec![(0, Vec::new())];
        while let Some((dir, rel)) = pending.pop() {
            let names: Vec<(Vec<u8>, usize)> = out
                .children(dir)
                .iter()
                .map(|(k, &v)| (k.clone(), v))
                .collect();
            for (name, child) in names {
                let path = if rel.is_empty() {
                    name.clone()
                } else {
                    [&rel[..], b"/", &name[..]].concat()
                };
                let is_dir = out.is_dir(child);
                if filter.keeps(Path::new(OsStr::from_bytes(&path)), is_dir) {
                    if is_dir {
                        pending.push((child, path));
                    }
                } else {
                    out.children_mut(dir).remove(&name);
                }
            }
        }
    }
    Ok(out)
}
