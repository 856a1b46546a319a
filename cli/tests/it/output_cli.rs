//! Where the binary writes: the output-path policy of `export`, `build` and `sign` (`-` is
//! stdout; FIFOs and character devices are written in place, never replaced; a symlink is
//! followed and stays a link; folders, dangling links and paths inside the store are refused,
//! leaving them untouched), and stdout errors: a closed pipe ends a command quietly with
//! status 141, a full stdout is a clear error, never a panic.

use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::{self, text};

const MANIFEST: &str = r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/out","labels":[{"name":"version","value":"1.0.0"},{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]}"#;

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn run(store: &Path, args: &[&str]) -> Output {
    command(store, args)
        .output()
        .expect("the acikit binary runs")
}

fn command(store: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_acikit"));
    command
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("ACIKIT_DATABASE")
        .stdin(Stdio::null());
    command
}

fn ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what}: status {:?}, stderr: {}",
        out.status,
        text(&out.stderr)
    );
}

/// A failure of kind `kind` that names `path`, and no panic.
fn refused(what: &str, out: &Output, kind: &str, path: &str) {
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what}: {err}");
    assert!(err.contains(&format!("error: {kind}: ")), "{what}: {err}");
    assert!(err.contains(path), "{what}: {path} not named: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
}

/// A layout with a file big enough to take several writes (and pipe buffers).
fn layout(dir: &Path) {
    std::fs::create_dir_all(dir.join("rootfs/etc")).unwrap();
    std::fs::write(dir.join("manifest"), MANIFEST).unwrap();
    std::fs::write(dir.join("rootfs/etc/hostname"), "out\n").unwrap();
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(dir.join("rootfs/big"), big).unwrap();
}

/// A scratch folder with a store holding one image, built here as an uncompressed tar (whose
/// bytes are what `export` must give back).
struct Setup {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    store: PathBuf,
    layout: PathBuf,
    tar: Vec<u8>,
}

fn setup() -> Setup {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let store = root.join("store");
    let layout_dir = root.join("layout");
    layout(&layout_dir);
    let tar_path = root.join("image.tar");
    ok(
        "build",
        &run(
            &store,
            &[
                "build",
                &s(&layout_dir),
                &s(&tar_path),
                "--compression",
                "none",
            ],
        ),
    );
    ok("import", &run(&store, &["import", &s(&tar_path)]));
    let tar = std::fs::read(&tar_path).unwrap();
    Setup {
        _tmp: tmp,
        root,
        store,
        layout: layout_dir,
        tar,
    }
}

fn mkfifo(path: &Path) {
    let out = Command::new("mkfifo").arg(path).output().unwrap();
    assert!(out.status.success(), "mkfifo: {}", text(&out.stderr));
}

/// Reads a FIFO to its end on a thread (opening it waits for the writer).
fn read_fifo(path: &Path) -> std::thread::JoinHandle<Vec<u8>> {
    let path = path.to_path_buf();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .unwrap()
            .read_to_end(&mut bytes)
            .unwrap();
        bytes
    })
}

fn is_fifo(path: &Path) -> bool {
    std::fs::symlink_metadata(path)
        .unwrap()
        .file_type()
        .is_fifo()
}

/// The device numbers of a character device (panics if it is not one).
fn char_device(path: &Path) -> u64 {
    let meta = std::fs::symlink_metadata(path).unwrap();
    assert!(
        meta.file_type().is_char_device(),
        "{} is no longer a character device",
        path.display()
    );
    meta.rdev()
}

/// `write` (the command `what` writing to the path it is given) writes `/dev/null` in place
/// and fails on `/dev/full` with ENOSPC (exit code 1), both staying the same character
/// devices; returns the stderr of the `/dev/full` try.
fn assert_devices_written_in_place(what: &str, write: &dyn Fn(&str) -> Output) -> String {
    let null = Path::new("/dev/null");
    let rdev = char_device(null);
    ok(&format!("{what} to /dev/null"), &write("/dev/null"));
    assert_eq!(char_device(null), rdev);
    let full = Path::new("/dev/full");
    let rdev = char_device(full);
    let out = write("/dev/full");
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{what} to /dev/full: {err}");
    assert!(err.contains("No space left on device"), "{err}");
    assert_eq!(char_device(full), rdev);
    err
}

fn fsck_clean(store: &Path) {
    let out = run(store, &["fsck"]);
    ok("fsck", &out);
    assert!(
        text(&out.stdout).contains(": 0 problems"),
        "{}",
        text(&out.stdout)
    );
}

/// Every object and recipe of a store with its bytes, to check they were left untouched.
fn snapshot(store: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![store.join("objects"), store.join("recipes")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                files.push((e.path(), std::fs::read(e.path()).unwrap()));
            }
        }
    }
    files.sort();
    files
}

#[test]
fn export_writes_to_stdout_fifos_devices_and_through_symlinks() {
    let t = setup();
    let store = &t.store;
    // The reference: an export to a new file is the built tar, byte for byte.
    let file = t.root.join("export.tar");
    ok(
        "export to a file",
        &run(store, &["export", "example.com/out", &s(&file)]),
    );
    assert!(std::fs::read(&file).unwrap() == t.tar);

    // `-` is stdout, exactly; the report goes to stderr, and no file named `-` appears.
    let out = command(store, &["export", "example.com/out", "-"])
        .current_dir(&t.root)
        .output()
        .unwrap();
    ok("export to -", &out);
    assert!(
        out.stdout == t.tar,
        "stdout is not the tar ({} bytes)",
        out.stdout.len()
    );
    assert!(
        text(&out.stderr).contains("sha512-"),
        "{}",
        text(&out.stderr)
    );
    assert!(!t.root.join("-").exists());

    // A FIFO is written in place (with a reader on the other end) and stays a FIFO.
    let fifo = t.root.join("fifo");
    mkfifo(&fifo);
    let reader = read_fifo(&fifo);
    ok(
        "export to a FIFO",
        &run(store, &["export", "example.com/out", &s(&fifo)]),
    );
    assert!(
        reader.join().unwrap() == t.tar,
        "the FIFO's reader got other bytes"
    );
    assert!(is_fifo(&fifo), "the FIFO was replaced");

    // /dev/null takes it and stays a character device; /dev/full: a clear ENOSPC error, the
    // node intact.
    let err = assert_devices_written_in_place("export", &|out| {
        run(store, &["export", "example.com/out", out])
    });
    assert!(
        err.contains("error: io: ") && err.contains("/dev/full"),
        "{err}"
    );

    // A symlink to a regular file: the link stays a link, its target gets the bytes and
    // keeps its permission bits.
    let target = t.root.join("target.tar");
    std::fs::write(&target, b"old").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o640)).unwrap();
    let link = t.root.join("link.tar");
    std::os::unix::fs::symlink("target.tar", &link).unwrap();
    ok(
        "export to a symlink",
        &run(store, &["export", "example.com/out", &s(&link)]),
    );
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read_link(&link).unwrap(), Path::new("target.tar"));
    assert!(std::fs::read(&target).unwrap() == t.tar);
    let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o640);

    // A dangling symlink is not written through: nothing is created.
    let dangling = t.root.join("dangling.tar");
    std::os::unix::fs::symlink("nowhere/missing.tar", &dangling).unwrap();
    let out = run(store, &["export", "example.com/out", &s(&dangling)]);
    refused(
        "export to a dangling link",
        &out,
        "invalid_argument",
        &s(&dangling),
    );
    assert!(!t.root.join("nowhere").exists());

    // A folder is refused and left as it was (nothing written inside it).
    let folder = t.root.join("folder");
    std::fs::create_dir(&folder).unwrap();
    let out = run(store, &["export", "example.com/out", &s(&folder)]);
    refused("export to a folder", &out, "invalid_argument", &s(&folder));
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0);
    let no_name_in = format!("{}/", s(&t.root.join("no-such-folder")));
    let out = run(store, &["export", "example.com/out", &no_name_in]);
    refused(
        "export to a missing folder",
        &out,
        "invalid_argument",
        &no_name_in,
    );
    assert!(!t.root.join("no-such-folder").exists());
    fsck_clean(store);
}

#[test]
fn export_refuses_every_path_inside_the_store() {
    let t = setup();
    let store = &t.store;
    let before = snapshot(store);
    let object = before
        .iter()
        .map(|(p, _)| p.clone())
        .find(|p| p.starts_with(store.join("objects")))
        .expect("an object file");
    let link = t.root.join("to-object");
    std::os::unix::fs::symlink(&object, &link).unwrap();
    let link_to_store = t.root.join("store-link");
    std::os::unix::fs::symlink(store, &link_to_store).unwrap();
    let dotdot = store.join("recipes/../index.db");
    let cases: Vec<(&str, PathBuf)> = vec![
        ("an object file", object.clone()),
        ("the recipes folder", store.join("recipes")),
        ("a new file in recipes", store.join("recipes/new")),
        ("index.db", store.join("index.db")),
        ("index.db through ..", dotdot),
        ("an object through a symlink", link.clone()),
        (
            "a new file through a linked store",
            link_to_store.join("objects/x"),
        ),
        ("the store folder", store.clone()),
    ];
    for (what, path) in &cases {
        let out = run(store, &["export", "example.com/out", &s(path)]);
        refused(what, &out, "invalid_argument", &s(path));
    }
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(snapshot(store) == before, "the store's files changed");
    fsck_clean(store);
}

/// A secret key made by gpg, in `dir/secret.asc`.
fn secret_key(dir: &Path) -> PathBuf {
    let home = dir.join("gnupg");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        let out = common::gpg(&home, args);
        assert!(out.status.success(), "gpg: {}", text(&out.stderr));
        out.stdout
    };
    gpg(&[
        "--quick-gen-key",
        "Out <out@example.com>",
        "ed25519",
        "sign",
        "never",
    ]);
    let key = dir.join("secret.asc");
    std::fs::write(
        &key,
        gpg(&["--armor", "--export-secret-keys", "out@example.com"]),
    )
    .unwrap();
    key
}

#[test]
fn build_and_sign_follow_the_same_policy() {
    let t = setup();
    let store = &t.store;
    let layout = s(&t.layout);
    let build = |out: &str| {
        command(store, &["build", &layout, out, "--compression", "none"])
            .current_dir(&t.root)
            .output()
            .unwrap()
    };
    // `-`: the archive on stdout, the same bytes as to a file; no file named `-`.
    let out = build("-");
    ok("build to -", &out);
    assert!(out.stdout == t.tar, "build to - gave other bytes");
    assert!(!t.root.join("-").exists());
    // A folder: refused, untouched.
    let folder = t.root.join("folder");
    std::fs::create_dir(&folder).unwrap();
    refused(
        "build to a folder",
        &build(&s(&folder)),
        "invalid_argument",
        &s(&folder),
    );
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0);
    // Character devices: written in place.
    assert_devices_written_in_place("build", &build);
    // A FIFO: the exact bytes, still a FIFO.
    let fifo = t.root.join("build-fifo");
    mkfifo(&fifo);
    let reader = read_fifo(&fifo);
    ok("build to a FIFO", &build(&s(&fifo)));
    assert!(reader.join().unwrap() == t.tar);
    assert!(is_fifo(&fifo));
    // Inside the store: refused.
    let inside = store.join("recipes/built.aci");
    refused(
        "build into the store",
        &build(&s(&inside)),
        "invalid_argument",
        &s(&inside),
    );
    assert!(!inside.exists());

    let key = secret_key(&t.root);
    let image = t.root.join("image.tar");
    let sign = |out: &str| run(store, &["sign", &s(&image), "--key", &s(&key), "-o", out]);
    let out = sign("-");
    ok("sign to -", &out);
    assert!(
        text(&out.stdout).starts_with("-----BEGIN PGP SIGNATURE-----"),
        "{}",
        text(&out.stdout)
    );
    refused(
        "sign to a folder",
        &sign(&s(&folder)),
        "invalid_argument",
        &s(&folder),
    );
    assert_eq!(std::fs::read_dir(&folder).unwrap().count(), 0);
    assert_devices_written_in_place("sign", &sign);
    let inside = store.join("index.db");
    let before = std::fs::metadata(&inside).unwrap().ino();
    refused(
        "sign into the store",
        &sign(&s(&inside)),
        "invalid_argument",
        &s(&inside),
    );
    assert_eq!(std::fs::metadata(&inside).unwrap().ino(), before);
    fsck_clean(store);
}

/// Runs `args` with stdout a pipe whose read end is already closed.
fn into_closed_pipe(store: &Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    command(store, args)
        .stdout(Stdio::from(writer))
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

#[test]
fn a_closed_stdout_ends_quietly_and_a_full_one_is_an_error() {
    let t = setup();
    let store = &t.store;
    let image_tar = s(&t.root.join("image.tar"));
    let commands: Vec<Vec<&str>> = vec![
        vec!["list"],
        vec!["list", "--json"],
        vec!["stats"],
        vec!["fsck"],
        vec!["trust", "list"],
        vec!["manifest", &image_tar],
        vec!["id", &image_tar],
        vec!["export", "example.com/out", "-"],
    ];
    for args in &commands {
        let tries = if args == &["list"] { 20 } else { 2 };
        for _ in 0..tries {
            let out = into_closed_pipe(store, args);
            let err = text(&out.stderr);
            assert!(!err.contains("panicked"), "{args:?}: {err}");
            assert_eq!(out.status.code(), Some(141), "{args:?}: {err}");
            assert_eq!(err, "", "{args:?} printed on stderr");
        }
    }
    // clap's help goes the same way.
    let out = into_closed_pipe(store, &["--help"]);
    assert_eq!(out.status.code(), Some(141), "{}", text(&out.stderr));
    for args in &commands[..7] {
        let full = std::fs::File::options()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let out = command(store, args)
            .stdout(Stdio::from(full))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = text(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
        assert!(
            err.contains("error: io: writing to stdout: No space left on device"),
            "{args:?}: {err}"
        );
    }
}
