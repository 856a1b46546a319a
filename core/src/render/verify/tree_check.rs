//! Checking an exploded tree against the image's regenerated tar and recipe.

use super::*;

/// What the tree walk knows of a path of the image.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expected {
    /// A member of the archive.
    Member,
    /// A directory the archive implies (a parent of members) without listing it.
    Implied,
}

/// Checks the tree of `id` against its regenerated tar and recipe; returns the differences.
/// Errors only for the store's side ([`ErrorKind::CorruptStore`] when the image does not
/// regenerate).
pub(super) fn verify_tree(
    paths: &StorePaths,
    id: &ImageId,
    reader: ExportReader,
    handle: &tokio::runtime::Handle,
    verdicts: &mut InodeVerdicts,
    relaxed: Option<(u32, u32)>,
) -> Result<Diffs> {
    let mut diffs = Diffs::default();
    let rootfs = paths.tree(id).join("rootfs");
    let root = match open_root(&rootfs) {
        Ok(root) => root,
        Err(e) => {
            diffs.push(b"", format!("the tree's rootfs cannot be opened: {e}"));
            return Ok(diffs);
        }
    };
    let recipe_path = paths.recipe(id);
    let recipe_file = File::open(&recipe_path)
        .map_err(|e| corrupt(format!("the recipe of {id} cannot be opened: {e}")))?;
    let mut recipe = RecipeReader::new(BufReader::new(recipe_file))?;
    let mut tar = TarReader::new(reader);
    let mut checker = TreeChecker {
        root: root.as_fd(),
        parent: None,
        expected: HashMap::new(),
        files: HashMap::new(),
        verdicts,
        relaxed,
        diffs: &mut diffs,
        buf: vec![0u8; 256 * 1024],
    };
    let mut root_seen = false;
    while let Some(entry) = handle.block_on(tar.next_entry())? {
        // The same pairing of members and Content records as the build.
        let content = tree::member_content(&mut recipe, &entry, id)?;
        let Some(rel) = tree::tree_path(&entry.path).map_err(|e| corrupt(e.to_string()))? else {
            continue;
        };
        if rel.is_empty() {
            root_seen = true;
            let want = tree::node_meta(&entry, NodeKind::Directory)?;
            checker.check_root(Some(&want));
            continue;
        }
        checker.member(&entry, &rel, content)?;
    }
    tree::recipe_done(&mut recipe, id)?;
    if !root_seen {
        checker.check_root(None);
    }
    checker.parent = None;
    checker.walk();
    Ok(diffs)
}

struct TreeChecker<'a> {
    root: BorrowedFd<'a>,
    /// The last parent directory opened (or why it could not be).
    parent: Option<(Vec<u8>, std::result::Result<OwnedFd, String>)>,
    expected: HashMap<Vec<u8>, Expected>,
    /// Regular-file inodes of the tree -> the first path that has it.
    files: HashMap<(u64, u64), Vec<u8>>,
    verdicts: &'a mut InodeVerdicts,
    relaxed: Option<(u32, u32)>,
    diffs: &'a mut Diffs,
    buf: Vec<u8>,
}

impl TreeChecker<'_> {
    fn check_root(&mut self, want: Option<&NodeMeta>) {
        let have = match fsops::read_meta(self.root, OsStr::new(".")) {
            Ok(have) => have,
            Err(e) => {
                self.diffs
                    .push(b"", format!("cannot be read: {}", e.message()));
                return;
            }
        };
        match want {
            Some(want) => {
                let _ = compare_meta(b"", &have, want, self.relaxed, self.diffs);
            }
            None if have.mode != 0o755 => self.diffs.push(
                b"",
                format!("mode {:04o} where it should be 0755", have.mode),
            ),
            None => {}
        }
    }

    /// The parent directory `parent` of the tree, taken out of the one-entry cache (give it
    /// back with [`TreeChecker::keep_parent`]); why it cannot be opened, if so (remembered).
    fn take_parent(&mut self, parent: &[u8]) -> std::result::Result<OwnedFd, String> {
        match self.parent.take() {
            Some((p, Ok(fd))) if p == parent => return Ok(fd),
            Some((p, Err(e))) if p == parent => {
                self.parent = Some((p, Err(e.clone())));
                return Err(e);
            }
            _ => {}
        }
        fsops::open_dir_beneath(self.root, Path::new(OsStr::from_bytes(parent))).map_err(|e| {
            let why = e.message().to_string();
            self.parent = Some((parent.to_vec(), Err(why.clone())));
            why
        })
    }

    fn keep_parent(&mut self, parent: Vec<u8>, fd: OwnedFd) {
        self.parent = Some((parent, Ok(fd)));
    }

    fn member(
        &mut self,
        entry: &Entry,
        rel: &[u8],
        content: Option<tree::MemberContent>,
    ) -> Result<()> {
        self.expected.insert(rel.to_vec(), Expected::Member);
        let mut at = rel.len();
        while let Some(i) = rel[..at].iter().rposition(|&b| b == b'/') {
            self.expected
                .entry(rel[..i].to_vec())
                .or_insert(Expected::Implied);
            at = i;
        }
        let (parent, name) = split(rel);
        let parent = parent.as_os_str().as_bytes().to_vec();
        let dir = match self.take_parent(&parent) {
            Ok(dir) => dir,
            Err(e) => {
                self.diffs
                    .push(rel, format!("missing (its folder cannot be opened: {e})"));
                return Ok(());
            }
        };
        let result = self.check_member(dir.as_fd(), entry, rel, name, content);
        self.keep_parent(parent, dir);
        result
    }

    /// Checks the member `entry` at `rel`, named `name` in its folder `dir`.
    fn check_member(
        &mut self,
        dir: BorrowedFd,
        entry: &Entry,
        rel: &[u8],
        name: &OsStr,
        content: Option<tree::MemberContent>,
    ) -> Result<()> {
        let relaxed = self.relaxed;
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(Errno::NOENT) => {
                let skipped = relaxed.is_some()
                    && matches!(
                        entry.kind,
                        EntryKind::CharDevice | EntryKind::BlockDevice | EntryKind::Hardlink
                    );
                if !skipped {
                    self.diffs.push(rel, "missing".into());
                }
                return Ok(());
            }
            Err(e) => {
                self.diffs
                    .push(rel, format!("cannot be read: {}", std::io::Error::from(e)));
                return Ok(());
            }
        };
        let kind = match entry.kind {
            EntryKind::Directory => NodeKind::Directory,
            EntryKind::Regular => NodeKind::Regular,
            EntryKind::Symlink => NodeKind::Symlink(entry.link_target.clone().unwrap_or_default()),
            EntryKind::CharDevice => {
                let (ma, mi) = entry.device.unwrap_or((0, 0));
                NodeKind::CharDevice(ma, mi)
            }
            EntryKind::BlockDevice => {
                let (ma, mi) = entry.device.unwrap_or((0, 0));
                NodeKind::BlockDevice(ma, mi)
            }
            EntryKind::Fifo => NodeKind::Fifo,
            EntryKind::Hardlink => return self.hardlink(entry, rel, &st),
            EntryKind::Other(_) => return Ok(()), // never built
        };
        let want = tree::node_meta(entry, kind)?;
        let have = match fsops::read_meta(dir, name) {
            Ok(have) => have,
            Err(e) => {
                self.diffs
                    .push(rel, format!("cannot be read: {}", e.message()));
                return Ok(());
            }
        };
        let meta_ok = compare_meta(rel, &have, &want, relaxed, self.diffs);
        if !matches!(want.kind, NodeKind::Regular) || !matches!(have.kind, NodeKind::Regular) {
            return Ok(());
        }
        let inode = (st.st_dev, st.st_ino);
        if let Some(other) = self.files.get(&inode) {
            self.diffs.push(
                rel,
                format!(
                    "is the same file as /{}, which the image keeps apart",
                    String::from_utf8_lossy(other)
                ),
            );
        } else {
            self.files.insert(inode, rel.to_vec());
        }
        let mut ok = meta_ok;
        if st.st_size as u64 != entry.logical_size() {
            self.diffs.push(
                rel,
                format!(
                    "{} bytes where the image has {}",
                    st.st_size,
                    entry.logical_size()
                ),
            );
            ok = false;
        } else if let Some(content) = content {
            let digest = content.digest;
            let key = (inode.0, inode.1, digest.0);
            let verdict = match self.verdicts.content.get(&key) {
                Some(v) => v.clone(),
                None => {
                    let v = check_content(dir, name, entry, content, &mut self.buf);
                    self.verdicts.content.insert(key, v.clone());
                    v
                }
            };
            if let Some(what) = verdict {
                self.diffs.push(rel, what);
                ok = false;
            }
        }
        if !ok {
            self.verdicts.damaged.insert(inode);
        }
        Ok(())
    }

    /// A tar hardlink: the same inode as its target (or a copy when the target had too many
    /// links).
    fn hardlink(&mut self, entry: &Entry, rel: &[u8], st: &rustix::fs::Stat) -> Result<()> {
        let raw = entry.link_target.as_deref().unwrap_or_default();
        let Some(target) = tree::tree_path(raw).ok().flatten() else {
            return Ok(()); // refused at build time
        };
        let (tparent, tname) = split(&target);
        let target_st = fsops::open_dir_beneath(self.root, tparent)
            .and_then(|d| fsops::lstat(d.as_fd(), tname));
        match target_st {
            Ok(t) if (t.st_dev, t.st_ino) == (st.st_dev, st.st_ino) => {}
            #[allow(clippy::unnecessary_cast)] // nlink_t is u32 on some targets
            Ok(t) if t.st_nlink as u64 >= MANY_LINKS => {}
            Ok(_) => self.diffs.push(
                rel,
                format!(
                    "is not the same file as /{} (a hardlink in the image)",
                    String::from_utf8_lossy(&target)
                ),
            ),
            Err(_) => {} // the target's own check reports it
        }
        Ok(())
    }

    /// Walks the tree for nodes the image does not have.
    fn walk(&mut self) {
        let mut pending: Vec<Vec<u8>> = vec![Vec::new()];
        while let Some(rel) = pending.pop() {
            let dir = match fsops::open_dir_beneath(self.root, Path::new(OsStr::from_bytes(&rel))) {
                Ok(dir) => dir,
                Err(_) => continue, // reported with its members
            };
            let names = match list_dir(dir.as_fd()) {
                Ok(names) => names,
                Err(e) => {
                    self.diffs.push(&rel, format!("cannot be listed: {e}"));
                    continue;
                }
            };
            for (name, ty) in names {
                let mut path = rel.clone();
                if !path.is_empty() {
                    path.push(b'/');
                }
                path.extend_from_slice(name.as_bytes());
                match self.expected.get(&path) {
                    None => self.diffs.push(&path, "is not in the image".into()),
                    Some(Expected::Implied) if ty != FileType::Directory => self
                        .diffs
                        .push(&path, "should be a directory (the image implies it)".into()),
                    Some(_) if ty == FileType::Directory => pending.push(path),
                    Some(_) => {}
                }
            }
        }
    }
}

/// Compares the metadata of a node with what it should be, pushing the differences;
/// returns whether they agree. With `relaxed` (a tree built without root by that owner), what
/// an unprivileged build cannot reproduce is not a difference.
pub(super) fn compare_meta(
    rel: &[u8],
    have: &NodeMeta,
    want: &NodeMeta,
    relaxed: Option<(u32, u32)>,
    diffs: &mut Diffs,
) -> bool {
    let before = diffs.items.len() as u64 + diffs.more;
    if have.kind != want.kind {
        let what = match (&have.kind, &want.kind) {
            (NodeKind::Symlink(h), NodeKind::Symlink(w)) => format!(
                "points to {:?} where the image has {:?}",
                String::from_utf8_lossy(h),
                String::from_utf8_lossy(w)
            ),
            (
                NodeKind::CharDevice(a, b) | NodeKind::BlockDevice(a, b),
                NodeKind::CharDevice(c, d) | NodeKind::BlockDevice(c, d),
            ) if have.kind.name() == want.kind.name() => {
                format!("device {a}:{b} where the image has {c}:{d}")
            }
            _ => format!(
                "is a {} where the image has a {}",
                have.kind.name(),
                want.kind.name()
            ),
        };
        diffs.push(rel, what);
        return false;
    }
    if !matches!(want.kind, NodeKind::Symlink(_)) && have.mode != want.mode {
        diffs.push(
            rel,
            format!(
                "mode {:04o} where the image has {:04o}",
                have.mode, want.mode
            ),
        );
    }
    if (have.uid, have.gid) != (want.uid, want.gid) && relaxed != Some((have.uid, have.gid)) {
        diffs.push(
            rel,
            format!(
                "owner {}:{} where the image has {}:{}",
                have.uid, have.gid, want.uid, want.gid
            ),
        );
    }
    if have.mtime != want.mtime {
        diffs.push(
            rel,
            format!(
                "mtime {}.{:09} where the image has {}.{:09}",
                have.mtime.secs, have.mtime.nanos, want.mtime.secs, want.mtime.nanos
            ),
        );
    }
    let special = !matches!(want.kind, NodeKind::Regular | NodeKind::Directory);
    // The host's own labels are not the image's.
    let has: Vec<_> = have
        .xattrs
        .iter()
        .filter(|(k, _)| {
            k.as_slice() != b"security.selinux" || want.xattrs.iter().any(|(w, _)| w == k)
        })
        .collect();
    let wants: Vec<_> = want
        .xattrs
        .iter()
        .filter(|(k, _)| {
            // What a build could not set (and warned about) is not kept.
            let user = k.starts_with(b"user.");
            let kept = has.iter().any(|(h, _)| h == k);
            kept || !((special && user) || (relaxed.is_some() && !user))
        })
        .collect();
    let mut has_sorted = has.clone();
    has_sorted.sort();
    let mut wants_sorted = wants.clone();
    wants_sorted.sort();
    if has_sorted != wants_sorted {
        let names = |list: &[&(Vec<u8>, Vec<u8>)]| {
            list.iter()
                .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), v.len()))
                .collect::<Vec<_>>()
                .join(",")
        };
        diffs.push(
            rel,
            format!(
                "xattrs [{}] where the image has [{}] (name=value bytes)",
                names(&has_sorted),
                names(&wants_sorted)
            ),
        );
    }
    diffs.items.len() as u64 + diffs.more == before
}

/// Hashes the regular file `name` as the member's content (its data segments for a sparse
/// member, whose other bytes must be zeros): `None` when it is `digest`.
fn check_content(
    dir: BorrowedFd,
    name: &OsStr,
    entry: &Entry,
    content: tree::MemberContent,
    buf: &mut [u8],
) -> Option<String> {
    let digest = &content.digest;
    let file = match fsops::open_file(dir, name) {
        Ok(file) => file,
        Err(e) => return Some(format!("cannot be read: {}", e.message())),
    };
    let hashed = match &entry.sparse {
        // The object is the logical content: hashed whole, holes as zeros.
        _ if content.logical => {
            // A byte in a hole of a sparse member is named first, then the whole is hashed.
            if let Some(map) = &entry.sparse {
                let mut gap_start = 0u64;
                let ends = map.segments.iter().map(|s| (s.offset, s.offset + s.length));
                for (start, end) in ends.chain([(map.real_size, map.real_size)]) {
                    match nonzero_in(&file, gap_start, start, buf) {
                        Ok(Some(what)) => return Some(what),
                        Ok(None) => {}
                        Err(e) => return Some(format!("cannot be read: {e}")),
                    }
                    gap_start = gap_start.max(end);
                }
            }
            let mut hasher = ContentHasher::default();
            match crate::store::objects::hash_file(&file, entry.logical_size(), &mut hasher) {
                Ok(()) => Ok(Ok(hasher.finish())),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(Err(format!(
                    "ends before byte {} of the image's",
                    entry.logical_size()
                ))),
                Err(e) => Err(e),
            }
        }
        None => hash_range(&file, 0, entry.size, buf, None),
        Some(map) => hash_sparse(&file, map, buf),
    };
    match hashed {
        Ok(Ok(actual)) if actual == *digest => None,
        Ok(Ok(actual)) => Some(format!(
            "content hashes to sha256:{actual} where the image has sha256:{digest}"
        )),
        Ok(Err(what)) => Some(what),
        Err(e) => Some(format!("cannot be read: {e}")),
    }
}

/// Feeds `len` bytes of `file` from `offset` to `hasher` (a new one when `None`) and returns
/// its digest; an early end of file is a difference.
pub(super) fn hash_range(
    file: &File,
    offset: u64,
    len: u64,
    buf: &mut [u8],
    hasher: Option<&mut ContentHasher>,
) -> std::io::Result<std::result::Result<ContentDigest, String>> {
    let mut own = ContentHasher::default();
    let hasher = match hasher {
        Some(h) => h,
        None => &mut own,
    };
    let mut at = offset;
    let end = offset + len;
    while at < end {
        let want = (end - at).min(buf.len() as u64) as usize;
        let n = file.read_at(&mut buf[..want], at)?;
        if n == 0 {
            return Ok(Err(format!("ends at byte {at} where the image has {end}")));
        }
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok(Ok(own.finish()))
}

/// The digest of a sparse file's data segments, checking that its other bytes are zeros
/// (holes are skipped with `SEEK_DATA`/`SEEK_HOLE`).
fn hash_sparse(
    file: &File,
    map: &SparseMap,
    buf: &mut [u8],
) -> std::io::Result<std::result::Result<ContentDigest, String>> {
    let mut hasher = ContentHasher::default();
    let mut segments = map.segments.clone();
    segments.sort_by_key(|s| s.offset);
    let mut gap_start = 0u64;
    for seg in &segments {
        if let Some(what) = nonzero_in(file, gap_start, seg.offset, buf)? {
            return Ok(Err(what));
        }
        if let Err(what) = hash_range(file, seg.offset, seg.length, buf, Some(&mut hasher))? {
            return Ok(Err(what));
        }
        gap_start = gap_start.max(seg.offset + seg.length);
    }
    if let Some(what) = nonzero_in(file, gap_start, map.real_size, buf)? {
        return Ok(Err(what));
    }
    Ok(Ok(hasher.finish()))
}

/// Where a byte of `[start, end)` of `file` is not zero, if one is (holes are not read).
fn nonzero_in(
    file: &File,
    start: u64,
    end: u64,
    buf: &mut [u8],
) -> std::io::Result<Option<String>> {
    use rustix::fs::SeekFrom;
    let mut pos = start;
    while pos < end {
        let data = match rustix::fs::seek(file, SeekFrom::Data(pos)) {
            Ok(data) => data,
            Err(Errno::NXIO) => break,
            Err(e) => return Err(e.into()),
        };
        if data >= end {
            break;
        }
        let hole = rustix::fs::seek(file, SeekFrom::Hole(data))
            .map_err(std::io::Error::from)?
            .min(end);
        let mut at = data;
        while at < hole {
            let want = (hole - at).min(buf.len() as u64) as usize;
            let n = file.read_at(&mut buf[..want], at)?;
            if n == 0 {
                break;
            }
            if let Some(i) = buf[..n].iter().position(|&b| b != 0) {
                return Ok(Some(format!(
                    "byte {} is not zero where the image has a hole",
                    at + i as u64
                )));
            }
            at += n as u64;
        }
        pos = hole;
    }
    Ok(None)
}

/// The entries of `dir` (no `.`/`..`), sorted, with their types.
pub(super) fn list_dir(dir: BorrowedFd) -> std::result::Result<Vec<(OsString, FileType)>, String> {
    let fail = |e: Errno| std::io::Error::from(e).to_string();
    fsops::list_dir_with(dir, fail, |name| {
        rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW).map_err(fail)
    })
}
