//! Test fixtures: real image archives written by GNU tar, bsdtar and Python's tarfile,
//! compressed by the real tools, made in a temporary folder.

pub mod gpg;
pub mod https;
pub mod observe;
pub mod postgres;

use std::path::{Path, PathBuf};
use std::process::Command;

use acikit::testing::tar::{EntryKind, RecordLog, TarReader};

/// A valid manifest for test images.
pub const MANIFEST: &str = r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/test","labels":[{"name":"version","value":"1.0.0"},{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]}"#;

/// Runs a shell command in `dir`, panicking with its output on failure.
pub fn sh(dir: &Path, script: &str) {
    let out = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .output()
        .expect("sh runs");
    assert!(
        out.status.success(),
        "`{script}` failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Whether a program is on PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether we run as root (device nodes need it).
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout == b"0\n")
}

/// Builds an image layout (`manifest` + `rootfs/`) in `dir/layout` holding every kind
/// of member the formats can carry: long names (> 100 and > 255 bytes), a long link
/// target, hardlinks, symlinks, a fifo, device nodes (as root), a sparse file, xattrs,
/// a non-UTF-8 name, an empty file and a 1 MiB file. Returns the layout folder.
pub fn make_layout(dir: &Path, with_non_utf8: bool) -> PathBuf {
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("rootfs")).unwrap();
    std::fs::write(layout.join("manifest"), MANIFEST).unwrap();
    let long_dir = "d".repeat(90);
    let long_file = "f".repeat(120);
    let deep = format!("{}/{}/{}", "a".repeat(100), "b".repeat(100), "c".repeat(60));
    sh(
        &layout,
        &format!(
            r#"
cd rootfs
mkdir -p etc bin {long_dir} {deep} empty-dir
printf 'root:x:0:0::/root:/bin/sh\n' > etc/passwd
head -c 1048576 /dev/urandom > bin/big
cp bin/big bin/big-copy
: > etc/empty
printf 'hello\n' > {long_dir}/{long_file}
printf 'deep\n' > {deep}/file
ln etc/passwd etc/passwd-hardlink
ln -s ../etc/passwd bin/passwd-link
ln -s /{long_dir}/{long_file}/{long_dir}/{long_file} bin/long-link
mkfifo bin/fifo
chmod 4755 bin/big
chmod 1777 empty-dir
truncate -s 5M sparse
printf 'data in the middle' | dd of=sparse bs=1 seek=2000000 conv=notrunc 2>/dev/null
printf 'tail' | dd of=sparse bs=1 seek=5242000 conv=notrunc 2>/dev/null
python3 -c "import os; os.setxattr('etc/passwd', 'user.comment', b'hello xattr'); os.setxattr('bin', 'user.dir', b'\x00\x01binary')"
touch -d '2001-02-03 04:05:06.123456789' etc/passwd
"#
        ),
    );
    if is_root() {
        sh(
            &layout,
            "mknod rootfs/bin/null c 1 3 && mknod rootfs/bin/loop b 7 0",
        );
    }
    if with_non_utf8 {
        sh(
            &layout,
            r#"python3 -c "import os; open(b'rootfs/caf\xe9-latin1', 'wb').write(b'x')""#,
        );
    }
    layout
}

/// One way of writing a tar archive of a layout.
#[derive(Debug, Clone, Copy)]
pub struct Writer {
    /// Short name for messages.
    pub name: &'static str,
    /// Shell command run in the layout folder, writing `$OUT`.
    pub script: &'static str,
    /// Program it needs.
    pub needs: &'static str,
    /// Whether it keeps sparse files sparse.
    pub sparse: bool,
    /// Whether it can store the non-UTF-8 name.
    pub non_utf8: bool,
    /// Whether it can store xattrs.
    pub xattrs: bool,
    /// Whether it can store names of any length.
    pub long_names: bool,
}

/// Every archive writer the tests use.
pub const WRITERS: &[Writer] = &[
    Writer {
        name: "gnu",
        script: "tar --format=gnu --sparse -cf \"$OUT\" manifest rootfs",
        needs: "tar",
        sparse: true,
        non_utf8: true,
        xattrs: false,
        long_names: true,
    },
    Writer {
        name: "posix",
        script: "tar --format=posix --xattrs --xattrs-include='*' --sparse -cf \"$OUT\" manifest rootfs",
        needs: "tar",
        sparse: true,
        non_utf8: true,
        xattrs: true,
        long_names: true,
    },
    Writer {
        name: "posix-sparse-0.0",
        script: "tar --format=posix --sparse --sparse-version=0.0 -cf \"$OUT\" manifest rootfs",
        needs: "tar",
        sparse: true,
        non_utf8: true,
        xattrs: false,
        long_names: true,
    },
    Writer {
        name: "posix-sparse-0.1",
        script: "tar --format=posix --sparse --sparse-version=0.1 -cf \"$OUT\" manifest rootfs",
        needs: "tar",
        sparse: true,
        non_utf8: true,
        xattrs: false,
        long_names: true,
    },
    Writer {
        name: "posix-sparse-1.0",
        script: "tar --format=posix --sparse --sparse-version=1.0 -cf \"$OUT\" manifest rootfs",
        needs: "tar",
        sparse: true,
        non_utf8: true,
        xattrs: false,
        long_names: true,
    },
    Writer {
        name: "ustar",
        script: "tar --format=ustar -cf \"$OUT\" manifest rootfs/etc rootfs/bin/big rootfs/empty-dir",
        needs: "tar",
        sparse: false,
        non_utf8: true,
        xattrs: false,
        long_names: false,
    },
    Writer {
        name: "v7",
        script: "tar --format=v7 -cf \"$OUT\" manifest rootfs/etc rootfs/bin/big rootfs/empty-dir",
        needs: "tar",
        sparse: false,
        non_utf8: true,
        xattrs: false,
        long_names: false,
    },
    Writer {
        name: "bsdtar-pax",
        script: "bsdtar --format=pax --xattrs -cf \"$OUT\" manifest rootfs",
        needs: "bsdtar",
        sparse: true,
        non_utf8: true,
        xattrs: true,
        long_names: true,
    },
    Writer {
        name: "bsdtar-gnutar",
        script: "bsdtar --format=gnutar -cf \"$OUT\" manifest rootfs",
        needs: "bsdtar",
        sparse: false,
        non_utf8: true,
        xattrs: false,
        long_names: true,
    },
    Writer {
        name: "python-pax",
        script: "python3 -c \"import tarfile,os; t=tarfile.open(os.environ['OUT'],'w',format=tarfile.PAX_FORMAT); t.add('manifest'); t.add('rootfs'); t.close()\"",
        needs: "python3",
        sparse: false,
        non_utf8: true,
        xattrs: false,
        long_names: true,
    },
    Writer {
        name: "python-gnu",
        script: "python3 -c \"import tarfile,os; t=tarfile.open(os.environ['OUT'],'w',format=tarfile.GNU_FORMAT); t.add('manifest'); t.add('rootfs'); t.close()\"",
        needs: "python3",
        sparse: false,
        non_utf8: true,
        xattrs: false,
        long_names: true,
    },
];

/// Writes `layout` as an uncompressed tar at `out` with `writer`.
pub fn write_tar(layout: &Path, writer: &Writer, out: &Path) {
    let script = format!("OUT='{}'; export OUT; {}", out.display(), writer.script);
    sh(layout, &script);
}

/// The compressors the tests use: (name, command reading stdin, writing stdout).
pub const COMPRESSORS: &[(&str, &str)] = &[
    ("none", "cat"),
    ("gzip", "gzip -c"),
    ("bzip2", "bzip2 -c"),
    ("xz", "xz -c"),
    ("zstd", "zstd -q -c"),
];

/// Compresses `tar` into `out` with the named compressor command.
pub fn compress(tar: &Path, command: &str, out: &Path) {
    sh(
        tar.parent().unwrap(),
        &format!("{command} < '{}' > '{}'", tar.display(), out.display()),
    );
}

/// SHA-512 of a file as computed by `sha512sum`, as an image ID.
pub fn sha512sum(path: &Path) -> String {
    let out = Command::new("sha512sum").arg(path).output().unwrap();
    assert!(out.status.success());
    format!("sha512-{}", String::from_utf8_lossy(&out.stdout[..128]))
}

/// What the reader saw of an uncompressed archive, plus the stream rebuilt from its records.
pub struct ReadBack {
    /// Every entry, in order.
    pub entries: Vec<acikit::testing::tar::Entry>,
    /// Content of each entry, by index.
    pub contents: Vec<Vec<u8>>,
    /// `records + contents`, written back.
    pub rebuilt: Vec<u8>,
}

/// Reads an uncompressed tar with [`TarReader`], keeping records and contents, and
/// rebuilds the stream from them.
pub async fn read_back(bytes: &[u8]) -> acikit::Result<ReadBack> {
    let mut reader = TarReader::with_sink(bytes, RecordLog::default());
    let mut entries = Vec::new();
    let mut contents = Vec::new();
    while let Some(entry) = reader.next_entry().await? {
        let mut content = Vec::new();
        while let Some(chunk) = reader.read_content().await? {
            content.extend_from_slice(&chunk);
        }
        assert_eq!(
            content.len() as u64,
            entry.size,
            "content length of {:?}",
            entry.path
        );
        if entry.kind != EntryKind::Regular {
            assert!(content.is_empty());
        }
        entries.push(entry);
        contents.push(content);
    }
    assert_eq!(
        reader.position(),
        bytes.len() as u64,
        "the reader consumed every byte"
    );
    let log = reader.into_sink();
    let mut rebuilt = Vec::with_capacity(bytes.len());
    log.rebuild(&mut rebuilt, |index, len, out| {
        let content = &contents[index as usize];
        assert_eq!(content.len() as u64, len);
        out.extend_from_slice(content);
        Ok(())
    })?;
    Ok(ReadBack {
        entries,
        contents,
        rebuilt,
    })
}

/// Expands a sparse member's stored data into its logical content.
pub fn expand_sparse(entry: &acikit::testing::tar::Entry, data: &[u8]) -> Vec<u8> {
    let Some(map) = &entry.sparse else {
        return data.to_vec();
    };
    let mut out = vec![0u8; map.real_size as usize];
    let mut at = 0usize;
    for seg in &map.segments {
        let len = seg.length as usize;
        out[seg.offset as usize..seg.offset as usize + len].copy_from_slice(&data[at..at + len]);
        at += len;
    }
    out
}

/// Builds a small image layout in `dir/small`: `manifest` (the given bytes) and a
/// `rootfs/` with a directory, two small files and a 10,000-byte file. Returns the folder.
pub fn small_layout(dir: &Path, manifest: &[u8]) -> PathBuf {
    let layout = dir.join("small");
    std::fs::create_dir_all(layout.join("rootfs/etc")).unwrap();
    std::fs::write(layout.join("manifest"), manifest).unwrap();
    std::fs::write(
        layout.join("rootfs/etc/passwd"),
        "root:x:0:0::/root:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(layout.join("rootfs/etc/hostname"), "acikit\n").unwrap();
    let big: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(layout.join("rootfs/big"), big).unwrap();
    layout
}

/// A valid image (GNU tar of [`small_layout`]), uncompressed.
pub fn valid_tar(dir: &Path) -> Vec<u8> {
    let layout = small_layout(dir, MANIFEST.as_bytes());
    sh(&layout, "tar --format=gnu -cf ../valid.tar manifest rootfs");
    std::fs::read(dir.join("valid.tar")).unwrap()
}

/// A valid image, gzip-compressed.
pub fn valid_gzip(dir: &Path) -> Vec<u8> {
    valid_tar(dir);
    sh(dir, "gzip -c valid.tar > valid.aci");
    std::fs::read(dir.join("valid.aci")).unwrap()
}

/// Prelude of [`py_tar`] scripts: `t` is the open archive, `M` the valid manifest,
/// `add(name, type, data, **attrs)`, `f`, `d`, `sym`, `hard` add members, `base()` adds
/// `manifest` and `rootfs/`.
const PY_TAR_PRELUDE: &str = r#"
import io, os, sys, tarfile
M = os.environb[b'ACI_MANIFEST']
FMT = {'gnu': tarfile.GNU_FORMAT, 'pax': tarfile.PAX_FORMAT, 'ustar': tarfile.USTAR_FORMAT}[sys.argv[2]]
t = tarfile.open(sys.argv[1], 'w', format=FMT)
def add(name, type=tarfile.REGTYPE, data=b'', **attrs):
    ti = tarfile.TarInfo(name)
    ti.type = type
    ti.size = len(data)
    ti.mtime = 1000000000
    ti.mode = 0o755 if type == tarfile.DIRTYPE else 0o644
    for k, v in attrs.items():
        setattr(ti, k, v)
    t.addfile(ti, io.BytesIO(data) if data else None)
def f(name, data=b'', **attrs): add(name, tarfile.REGTYPE, data, **attrs)
def d(name, **attrs): add(name, tarfile.DIRTYPE, **attrs)
def sym(name, target): add(name, tarfile.SYMTYPE, linkname=target)
def hard(name, target): add(name, tarfile.LNKTYPE, linkname=target)
def base(): f('manifest', M); d('rootfs')
"#;

/// Writes a tar with Python's tarfile in `format` (`gnu`, `pax`, `ustar`) at `dir/py.tar`,
/// running `body` after [`PY_TAR_PRELUDE`] (so members can have any name, type or size),
/// and returns its bytes.
pub fn py_tar(dir: &Path, format: &str, body: &str) -> Vec<u8> {
    std::fs::create_dir_all(dir).unwrap();
    let out = dir.join("py.tar");
    let script = format!("{PY_TAR_PRELUDE}\n{body}\nt.close()\n");
    let result = Command::new("python3")
        .arg("-c")
        .arg(&script)
        .arg(&out)
        .arg(format)
        .env("ACI_MANIFEST", MANIFEST)
        .output()
        .expect("python3 runs");
    assert!(
        result.status.success(),
        "python tar script failed: {}\n{body}",
        String::from_utf8_lossy(&result.stderr)
    );
    std::fs::read(&out).unwrap()
}

/// Offset of the header block whose name field is exactly `name` (NUL-terminated).
pub fn header_offset(tar: &[u8], name: &[u8]) -> usize {
    (0..tar.len() / 512)
        .map(|i| i * 512)
        .find(|&at| tar[at..].starts_with(name) && tar[at + name.len()] == 0)
        .unwrap_or_else(|| panic!("no header named {:?}", String::from_utf8_lossy(name)))
}

/// Every file (anything but a directory) under `dir`, recursively, sorted; empty if `dir`
/// does not exist.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                pending.push(entry.path());
            } else {
                out.push(entry.path());
            }
        }
    }
    out.sort();
    out
}

/// `len` pseudo-random bytes from a seeded xorshift generator: the same seed gives the
/// same bytes, different seeds give unrelated bytes (and so distinct content objects).
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A manifest named `name` with labels version `version`, os linux and arch amd64.
pub fn manifest_for(name: &str, version: &str) -> String {
    format!(
        r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{name}","labels":[{{"name":"version","value":"{version}"}},{{"name":"os","value":"linux"}},{{"name":"arch","value":"amd64"}}]}}"#
    )
}

/// A manifest of `example.test/NAME` version 1 (os linux, arch amd64) depending on `deps`
/// (names under `example.test/`).
pub fn manifest_with_deps(name: &str, deps: &[&str]) -> String {
    let deps: Vec<String> = deps
        .iter()
        .map(|d| format!(r#"{{"imageName":"example.test/{d}"}}"#))
        .collect();
    format!(
        r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.test/{name}","labels":[{{"name":"version","value":"1"}},{{"name":"os","value":"linux"}},{{"name":"arch","value":"amd64"}}],"dependencies":[{}]}}"#,
        deps.join(",")
    )
}

/// An image of `count` pseudo-random files of `size` bytes each (`f0`, `f1`, ...; seeds from
/// `seed`), named `example.com/big` version 1.0.0: big enough for several progress events,
/// and gzip leaves it large.
pub fn big_image(dir: &Path, count: u64, size: usize, seed: u64) -> Image {
    let files: Vec<(String, Vec<u8>)> = (0..count)
        .map(|i| (format!("f{i}"), pseudo_random(seed + i, size)))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, c)| (n.as_str(), c.as_slice()))
        .collect();
    make_image(dir, "big", &manifest_for("example.com/big", "1.0.0"), &refs)
}

/// Writes a layout in `dir` (`manifest` plus `rootfs/` holding `files`, given as paths
/// relative to `rootfs/`) and archives it with GNU tar at `out`. Returns the tar bytes.
pub fn image_tar(dir: &Path, manifest: &str, files: &[(&str, &[u8])], out: &Path) -> Vec<u8> {
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    std::fs::write(dir.join("manifest"), manifest).unwrap();
    for (path, content) in files {
        let path = dir.join("rootfs").join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    sh(
        dir,
        &format!("tar --format=gnu -cf '{}' manifest rootfs", out.display()),
    );
    std::fs::read(out).unwrap()
}

/// A short name for a file type, for tree listings: `dir`, `file`, `symlink`, `fifo`, `char`,
/// `block` or `other`.
pub fn kind_name(ft: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_dir() {
        "dir"
    } else if ft.is_file() {
        "file"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_char_device() {
        "char"
    } else if ft.is_block_device() {
        "block"
    } else {
        "other"
    }
}

/// A tar made here: where it is, its bytes and its image ID.
pub struct Image {
    pub path: PathBuf,
    pub bytes: Vec<u8>,
    pub id: acikit::schema::ImageId,
}

/// Archives a layout of `manifest` and `files` with GNU tar at `dir/<tag>.tar` (see
/// [`image_tar`]).
pub fn make_image(dir: &Path, tag: &str, manifest: &str, files: &[(&str, &[u8])]) -> Image {
    let path = dir.join(format!("{tag}.tar"));
    let bytes = image_tar(&dir.join(tag), manifest, files, &path);
    let id = acikit::schema::ImageId::parse(&sha512sum(&path)).unwrap();
    Image { path, bytes, id }
}

/// A store in a temporary folder, and a place to make images (the test files add their own
/// methods: image makers, renders, checks).
pub struct ImageFixture {
    pub dir: tempfile::TempDir,
    pub store: acikit::Store,
    /// How many layouts [`ImageFixture::layout`] made.
    pub made: usize,
}

impl ImageFixture {
    pub async fn new() -> ImageFixture {
        let dir = tempfile::tempdir().unwrap();
        let store = acikit::Store::open(dir.path().join("store")).await.unwrap();
        ImageFixture {
            dir,
            store,
            made: 0,
        }
    }

    /// A new image layout `layout-N` whose manifest is `manifest` with the fields of `extra`
    /// added, and whose rootfs is made by the shell `script` run inside it (if not empty).
    /// Returns the layout and where its archive goes (`image-N.tar`, not made yet).
    pub fn layout(
        &mut self,
        mut manifest: serde_json::Value,
        extra: serde_json::Value,
        script: &str,
    ) -> (PathBuf, PathBuf) {
        self.made += 1;
        let layout = self.dir.path().join(format!("layout-{}", self.made));
        std::fs::create_dir_all(layout.join("rootfs")).unwrap();
        for (k, v) in extra.as_object().unwrap() {
            manifest[k] = v.clone();
        }
        std::fs::write(
            layout.join("manifest"),
            serde_json::to_vec(&manifest).unwrap(),
        )
        .unwrap();
        if !script.is_empty() {
            sh(&layout.join("rootfs"), script);
        }
        let tar = self.dir.path().join(format!("image-{}.tar", self.made));
        (layout, tar)
    }
}
