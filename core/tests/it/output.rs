//! The output-path policy ([`acikit::output`]) on real files, links, FIFOs, devices and
//! sockets: what is written in place, what is replaced atomically, what is refused, and that
//! a failure leaves nothing half-written.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use acikit::ErrorKind;
use acikit::output::{OutputFile, OutputKind, OutputOptions, check_output_path};

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn refused(path: &Path, options: &OutputOptions) -> String {
    let err = OutputFile::create(path, options).expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let text = err.to_string();
    assert!(text.contains(&path.display().to_string()), "{text}");
    text
}

#[test]
fn new_and_regular_files_are_replaced_atomically_keeping_their_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let options = OutputOptions::default();
    // A new file: appears only at the commit, under its name, with nothing else left.
    let new = tmp.path().join("new.tar");
    let mut out = OutputFile::create(&new, &options).unwrap();
    assert_eq!(out.kind(), OutputKind::NewFile);
    out.write_all(b"fresh").unwrap();
    assert!(!new.exists());
    out.commit().unwrap();
    assert_eq!(std::fs::read(&new).unwrap(), b"fresh");
    assert_eq!(names(tmp.path()), ["new.tar"]);

    // An existing file keeps its content until the commit, then its mode.
    std::fs::set_permissions(&new, std::fs::Permissions::from_mode(0o640)).unwrap();
    let inode = std::fs::metadata(&new).unwrap().ino();
    let mut out = OutputFile::create(&new, &options).unwrap();
    assert_eq!(out.kind(), OutputKind::RegularFile);
    out.write_all(b"second").unwrap();
    assert_eq!(std::fs::read(&new).unwrap(), b"fresh");
    out.commit().unwrap();
    assert_eq!(std::fs::read(&new).unwrap(), b"second");
    let meta = std::fs::metadata(&new).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o640);
    assert_ne!(
        meta.ino(),
        inode,
        "replaced by a rename, not written in place"
    );
    assert_eq!(names(tmp.path()), ["new.tar"]);

    // A failure (dropped before the commit): the old content stays, no temporary is left;
    // a new file never appears.
    let mut out = OutputFile::create(&new, &options).unwrap();
    out.write_all(b"half").unwrap();
    drop(out);
    assert_eq!(std::fs::read(&new).unwrap(), b"second");
    let other = tmp.path().join("other.tar");
    let mut out = OutputFile::create(&other, &options).unwrap();
    out.write_all(b"half").unwrap();
    drop(out);
    assert_eq!(names(tmp.path()), ["new.tar"]);
}

#[test]
fn a_symlink_is_followed_and_stays_a_link() {
    let tmp = tempfile::tempdir().unwrap();
    let options = OutputOptions::default();
    std::fs::create_dir(tmp.path().join("real")).unwrap();
    let target = tmp.path().join("real/target");
    std::fs::write(&target, b"old").unwrap();
    let link = tmp.path().join("link");
    std::os::unix::fs::symlink("real/target", &link).unwrap();
    let mut out = OutputFile::create(&link, &options).unwrap();
    assert_eq!(out.kind(), OutputKind::RegularFile);
    assert_eq!(
        out.target(),
        std::fs::canonicalize(&target).unwrap().as_path()
    );
    // The temporary file is beside the target, not beside the link.
    assert!(
        out.temp_path()
            .unwrap()
            .starts_with(out.target().parent().unwrap())
    );
    out.write_all(b"new").unwrap();
    out.commit().unwrap();
    assert!(
        std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    assert_eq!(names(&tmp.path().join("real")), ["target"]);

    // A dangling link is refused: nothing is created where it points.
    let dangling = tmp.path().join("dangling");
    std::os::unix::fs::symlink("real/missing", &dangling).unwrap();
    let text = refused(&dangling, &options);
    assert!(text.contains("does not exist"), "{text}");
    assert!(!tmp.path().join("real/missing").exists());
}

#[test]
fn devices_and_fifos_are_written_in_place() {
    let tmp = tempfile::tempdir().unwrap();
    let options = OutputOptions::default();
    let mut out = OutputFile::create("/dev/null", &options).unwrap();
    assert_eq!(out.kind(), OutputKind::CharDevice);
    out.write_all(&[0u8; 100_000]).unwrap();
    out.commit().unwrap();
    assert!(
        std::fs::metadata("/dev/null")
            .unwrap()
            .file_type()
            .is_char_device()
    );

    let mut out = OutputFile::create("/dev/full", &options).unwrap();
    let err = out.write_all(b"x").and_then(|()| out.flush()).unwrap_err();
    assert_eq!(
        err.raw_os_error(),
        Some(rustix::io::Errno::NOSPC.raw_os_error())
    );
    drop(out);
    assert!(
        std::fs::metadata("/dev/full")
            .unwrap()
            .file_type()
            .is_char_device()
    );

    let fifo = tmp.path().join("fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            std::fs::File::open(fifo)
                .unwrap()
                .read_to_end(&mut bytes)
                .unwrap();
            bytes
        })
    };
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
    let mut out = OutputFile::create(&fifo, &options).unwrap();
    assert_eq!(out.kind(), OutputKind::Fifo);
    out.write_all(&payload).unwrap();
    out.commit().unwrap();
    assert!(reader.join().unwrap() == payload);
    assert!(
        std::fs::symlink_metadata(&fifo)
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert_eq!(names(tmp.path()), ["fifo"]);
}

#[test]
fn folders_block_devices_sockets_and_dash_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let options = OutputOptions::default();
    let folder = tmp.path().join("folder");
    std::fs::create_dir(&folder).unwrap();
    refused(&folder, &options);
    assert!(names(&folder).is_empty());

    // A block device made here (root): refused, never written.
    let block = tmp.path().join("block");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &block,
        rustix::fs::FileType::BlockDevice,
        rustix::fs::Mode::from_raw_mode(0o600),
        rustix::fs::makedev(7, 250),
    )
    .unwrap();
    let text = refused(&block, &options);
    assert!(text.contains("block device"), "{text}");
    assert!(
        std::fs::symlink_metadata(&block)
            .unwrap()
            .file_type()
            .is_block_device()
    );

    let socket = tmp.path().join("socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let text = refused(&socket, &options);
    assert!(text.contains("socket"), "{text}");

    // `-` is never a file name by accident; `./-` is one on purpose.
    let err = OutputFile::create("-", &options).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(!Path::new("-").exists());
    let dash = tmp.path().join("-");
    OutputFile::create(&dash, &options)
        .unwrap()
        .commit()
        .unwrap();
    assert!(dash.is_file());

    // A missing folder, named with a trailing slash or as a parent: refused, not created.
    let missing = tmp.path().join("missing/");
    let missing = Path::new(missing.to_str().unwrap());
    assert_eq!(
        OutputFile::create(missing, &options).unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        OutputFile::create(tmp.path().join("missing/file"), &options)
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert!(!tmp.path().join("missing").exists());
}

#[test]
fn protected_folders_are_refused_after_resolving_links_and_dotdot() {
    let tmp = tempfile::tempdir().unwrap();
    let store = tmp.path().join("store");
    std::fs::create_dir_all(store.join("objects/ab")).unwrap();
    std::fs::write(store.join("objects/ab/cd"), b"object").unwrap();
    std::fs::write(store.join("index.db"), b"index").unwrap();
    let mut options = OutputOptions::default();
    options.protected = vec![store.clone()];
    options.sync = false;
    std::os::unix::fs::symlink(store.join("objects/ab/cd"), tmp.path().join("to-object")).unwrap();
    std::os::unix::fs::symlink(&store, tmp.path().join("to-store")).unwrap();
    for path in [
        store.join("objects/ab/cd"),
        store.join("objects/ab/new"),
        store.join("objects"),
        store.join("index.db"),
        store.join("objects/../index.db"),
        tmp.path().join("to-object"),
        tmp.path().join("to-store/index.db"),
        tmp.path().join("to-store/new"),
        store.clone(),
    ] {
        refused(&path, &options);
        let text = check_output_path(&path, &options).unwrap_err().to_string();
        assert!(text.contains("image store"), "{text}");
    }
    assert_eq!(
        std::fs::read(store.join("objects/ab/cd")).unwrap(),
        b"object"
    );
    assert_eq!(std::fs::read(store.join("index.db")).unwrap(), b"index");
    assert_eq!(names(&store.join("objects/ab")), ["cd"]);
    // Beside the store is fine.
    assert_eq!(
        check_output_path(tmp.path().join("store.tar"), &options).unwrap(),
        OutputKind::NewFile
    );
}

/// A build into a stream whose read-back stops early (the archive is over the limit) ends
/// with the reader's error instead of waiting on the pipe, and writes the stream to its end.
#[tokio::test(flavor = "multi_thread")]
async fn a_build_into_a_stream_reports_its_read_back_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("layout");
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    std::fs::write(
        dir.join("manifest"),
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/limits"}"#,
    )
    .unwrap();
    let big: Vec<u8> = (0..8_000_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(dir.join("rootfs/big"), &big).unwrap();
    let mut limits = acikit::archive::Limits::default();
    limits.max_total_size = 1 << 20;
    let err = acikit::build::Builder::new()
        .compression(acikit::build::BuildCompression::None)
        .limits(limits)
        .build_to_writer(&dir, std::io::sink(), acikit::progress::Observer::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
}
