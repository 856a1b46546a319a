//! Directory-relative file-system primitives for building and copying trees.
//!
//! Every operation here works relative to a directory file descriptor and never follows a
//! symlink: nodes are inspected with `lstat`/`llistxattr`, owners set with
//! `fchownat(AT_SYMLINK_NOFOLLOW)`, times with `utimensat(AT_SYMLINK_NOFOLLOW)`, and
//! directories are entered with `O_NOFOLLOW | O_DIRECTORY` (or `openat2` with
//! `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`), so whatever a tree holds, nothing is read or
//! written outside it.
//!
//! Extended attributes have no `*at` system calls before Linux 6.13: they are reached through
//! `/proc/self/fd/<dir>/<name>` with the `l*xattr` calls, which resolve the directory through
//! its descriptor and do not follow the final component.
//!
//! Walks are iterative: [`remove_tree`] and [`remove_node`] keep at most
//! [`FD_WINDOW`](walk::FD_WINDOW) directory descriptors open whatever the depth of the tree,
//! [`copy_tree_ticked`] at most 3 per thread (it reopens directories below its roots with
//! [`open_dir_beneath`]).
//!
//! One module per job:
//!
//! - `meta`: node types and metadata ([`NodeKind`], [`NodeMeta`]), read with [`read_meta`];
//! - `apply`: applying metadata ([`apply_meta`]);
//! - `xattr`: reading extended attributes ([`read_xattrs`]);
//! - `privileges`: what this process may create ([`Privileges`]);
//! - `walk`: safe directory walking ([`open_dir_beneath`], descriptor chains, listings);
//! - `create`: creating nodes ([`create_node`]);
//! - `remove`: removing nodes and trees ([`remove_node`], [`remove_tree`]);
//! - `content`: file contents ([`create_file`], [`open_file`], [`reflink_file`],
//!   [`copy_range`], [`copy_file_data`]);
//! - `copy`: copying trees ([`copy_tree_ticked`], [`CopyMode`], [`CopyStats`]);
//! - `names`: the paths and errors that name a node, and the single-name check.

mod apply;
mod content;
mod copy;
mod create;
mod meta;
mod names;
mod privileges;
mod remove;
#[cfg(test)]
mod test_support;
mod walk;
mod xattr;

pub use meta::lstat;
pub use xattr::read_xattrs;
// What render uses (build and store use the two above).
#[cfg_attr(not(feature = "render"), allow(unused_imports))]
pub use self::{
    apply::apply_meta,
    content::{copy_file_data, copy_range, create_file, open_file, reflink_file},
    copy::{CopyMode, CopyStats, copy_tree_ticked},
    create::create_node,
    meta::{NodeKind, NodeMeta, read_meta},
    privileges::Privileges,
    remove::{remove_node, remove_tree},
    walk::open_dir_beneath,
};
#[cfg_attr(not(feature = "render"), allow(unused_imports))]
pub(crate) use walk::list_dir_with;
