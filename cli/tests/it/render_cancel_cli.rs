//! Ctrl-C in `acikit render` (a real process, a real SIGINT): sent while the image's tree is
//! being built (its stage folder is seen in the store's `tmp/`), it cancels the render, which
//! fails with the `cancelled` error and leaves nothing: no target, no run record, no stage
//! folder; the next render succeeds.

use crate::common::interrupt::{interrupted, many_image, named};
use crate::common::{acikit_in as acikit, text};

#[test]
fn ctrl_c_cancels_a_render_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    // Some 6000 entries: a tree build long enough to be interrupted in the middle.
    let aci = many_image(
        tmp.path(),
        "for d in $(seq 1 60); do mkdir d$d; for f in $(seq 1 100); do echo $d-$f > d$d/f$f; \
         done; done; head -c 8388608 /dev/urandom > big",
        "tar --format=gnu -cf ../many.aci manifest rootfs",
    );
    let store = tmp.path().join("store");
    let out = acikit(&store, &["import", aci.to_str().unwrap()]);
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    let target = tmp.path().join("run");

    // Interrupted while the tree is being built.
    let out = interrupted(
        &store,
        &[
            "render",
            "example.test/many",
            target.to_str().unwrap(),
            "--strategy",
            "copy",
        ],
        "tree-build-",
    );
    assert!(!out.status.success(), "cancelled: {}", text(&out.stdout));
    assert!(
        text(&out.stderr).contains("cancelled"),
        "the error says so: {}",
        text(&out.stderr)
    );
    assert!(
        std::fs::symlink_metadata(&target).is_err(),
        "no target left"
    );
    assert!(named(tmp.path(), ".run.").is_empty(), "no hidden copy left");
    assert!(
        named(&store.join("tmp"), "tree-").is_empty(),
        "no stage left"
    );
    assert!(named(&store.join("runs"), "").is_empty(), "no run record");
    assert!(
        named(&store.join("trees/sha512"), "").is_empty(),
        "no tree, no lock file"
    );
    let fsck = acikit(&store, &["fsck"]);
    assert!(fsck.status.success(), "fsck: {}", text(&fsck.stdout));

    let again = acikit(
        &store,
        &["render", "example.test/many", target.to_str().unwrap()],
    );
    assert!(
        again.status.success(),
        "render again: {}",
        text(&again.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(target.join("d7/f42")).unwrap(),
        "7-42\n"
    );
    let release = acikit(&store, &["release", target.to_str().unwrap()]);
    assert!(release.status.success(), "{}", text(&release.stderr));
}
