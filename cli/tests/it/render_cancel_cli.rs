//! Ctrl-C in `acikit render` (a real process, a real SIGINT): sent while the image's tree is
//! being built (its stage folder is seen in the store's `tmp/`), it cancels the render, which
//! fails with the `cancelled` error and leaves nothing: no target, no run record, no stage
//! folder; the next render succeeds.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::common::{acikit_in as acikit, sh, text};

/// The names in `dir` starting with `prefix`.
fn named(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| {
                let name = e.ok()?.file_name().to_string_lossy().into_owned();
                name.starts_with(prefix).then_some(name)
            })
            .collect()
        })
        .unwrap_or_default()
}

#[test]
fn ctrl_c_cancels_a_render_and_leaves_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let layout = tmp.path().join("layout");
    std::fs::create_dir_all(layout.join("rootfs")).unwrap();
    std::fs::write(
        layout.join("manifest"),
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.test/many","labels":[{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]}"#,
    )
    .unwrap();
    // Some 6000 entries: a tree build long enough to be interrupted in the middle.
    sh(
        &layout.join("rootfs"),
        "for d in $(seq 1 60); do mkdir d$d; for f in $(seq 1 100); do echo $d-$f > d$d/f$f; \
         done; done; head -c 8388608 /dev/urandom > big",
    );
    sh(&layout, "tar --format=gnu -cf ../many.aci manifest rootfs");
    let store = tmp.path().join("store");
    let aci = tmp.path().join("many.aci");
    let out = acikit(&store, &["import", aci.to_str().unwrap()]);
    assert!(out.status.success(), "import: {}", text(&out.stderr));
    let target = tmp.path().join("run");

    let mut child = Command::new(env!("CARGO_BIN_EXE_acikit"))
        .arg("--store")
        .arg(&store)
        .args(["render", "example.test/many", target.to_str().unwrap()])
        .args(["--strategy", "copy"])
        .env_remove("ACIKIT_DATABASE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Until the tree is being built (or the render is over: then the test cannot tell).
    loop {
        if !named(&store.join("tmp"), "tree-build-").is_empty() {
            break;
        }
        if child.try_wait().unwrap().is_some() {
            panic!("the render ended before its tree build was seen");
        }
        std::thread::yield_now();
    }
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    let out = child.wait_with_output().unwrap();
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
