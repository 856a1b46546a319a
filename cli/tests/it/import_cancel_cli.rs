//! Ctrl-C in `acikit import` (a real process, a real SIGINT): sent while the archive is
//! being staged (its staging folder is seen in the store's `tmp/`), it cancels the import,
//! which fails with the `cancelled` error and leaves the store exactly as it was (same
//! files, nothing listed, `fsck` clean); the same import then succeeds.
//!
//! Without the handler the signal kills the process: no `cancelled` error, and the staging
//! folder stays behind, so the test fails.

use std::path::{Path, PathBuf};

use crate::common::interrupt::{interrupted, many_image, named};
use crate::common::{acikit_in as acikit, text};

/// Every file under `dir` (SQLite's journal files aside), sorted.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_dir() {
                out.push(path.clone());
                todo.push(path);
            } else if !name.ends_with("-wal")
                && !name.ends_with("-shm")
                && !name.ends_with("-journal")
            {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn ctrl_c_cancels_an_import_and_leaves_the_store_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    // Some 3000 entries and 24 MiB of random bytes, gzipped: an import long enough to be
    // interrupted in the middle.
    let aci = many_image(
        tmp.path(),
        "for d in $(seq 1 30); do mkdir d$d; for f in $(seq 1 100); do echo $d-$f > d$d/f$f; \
         done; done; for i in 1 2 3; do head -c 8388608 /dev/urandom > big$i; done",
        "tar --format=gnu -cf - manifest rootfs | gzip -1 > ../many.aci",
    );
    let store = tmp.path().join("store");
    // The store exists (and is empty) before the import.
    let list = acikit(&store, &["list"]);
    assert!(list.status.success(), "list: {}", text(&list.stderr));
    let before = files(&store);

    // Interrupted while the archive is being staged.
    let out = interrupted(&store, &["import", aci.to_str().unwrap()], "import-");
    assert!(!out.status.success(), "cancelled: {}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("cancelled"),
        "the error says so: {}",
        text(&out.stderr)
    );
    assert!(
        named(&store.join("tmp"), "import-").is_empty(),
        "no staging folder left"
    );
    assert_eq!(files(&store), before, "the store's files are as before");
    let list = acikit(&store, &["list"]);
    assert!(list.status.success(), "list: {}", text(&list.stderr));
    assert!(
        !text(&list.stdout).contains("example.test/many"),
        "nothing imported: {}",
        text(&list.stdout)
    );
    let fsck = acikit(&store, &["fsck"]);
    assert!(fsck.status.success(), "fsck: {}", text(&fsck.stdout));

    let again = acikit(&store, &["import", aci.to_str().unwrap()]);
    assert!(
        again.status.success(),
        "import again: {}",
        text(&again.stderr)
    );
    let list = acikit(&store, &["list"]);
    assert!(text(&list.stdout).contains("example.test/many"));
}
