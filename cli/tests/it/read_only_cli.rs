//! Read-only stores from the command line: `--read-only` serves reads (list, export, fsck,
//! stats) without recording uses, and refuses writes (import, rm, gc, fsck --repair, trust
//! add) with `read_only_store`; a store folder an unprivileged user cannot write is
//! read-only for that user without being asked. `export IMAGE -` streams the tar to stdout.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::common::{acikit, sh, text};
use serde_json::Value;

/// An image tar made by GNU tar at `dir/a.tar`; returns its image ID.
fn make_image(dir: &Path) -> String {
    let layout = dir.join("a");
    std::fs::create_dir_all(layout.join("rootfs/etc")).unwrap();
    std::fs::write(
        layout.join("manifest"),
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.test/a","labels":[{"name":"version","value":"1"}]}"#,
    )
    .unwrap();
    std::fs::write(layout.join("rootfs/etc/a.conf"), "alpha\n").unwrap();
    sh(&layout, "tar --format=gnu -cf ../a.tar manifest rootfs");
    let out = Command::new("sha512sum")
        .arg(dir.join("a.tar"))
        .output()
        .unwrap();
    format!("sha512-{}", &text(&out.stdout)[..128])
}

/// The image of [`make_image`] imported into `dir/store`: its ID, the store and the tar.
fn imported_image(dir: &Path) -> (String, PathBuf, PathBuf) {
    let id = make_image(dir);
    let store = dir.join("store");
    let tar = dir.join("a.tar");
    assert_ok(
        &acikit(&[
            "--store",
            store.to_str().unwrap(),
            "import",
            tar.to_str().unwrap(),
        ]),
        "import",
    );
    (id, store, tar)
}

fn assert_ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what}: {}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn assert_refused(out: &Output, store: &Path, what: &str) {
    assert_eq!(out.status.code(), Some(1), "{what}: {}", text(&out.stdout));
    let err = text(&out.stderr);
    assert!(err.contains("read_only_store"), "{what}: {err}");
    assert!(
        err.contains(&store.display().to_string()),
        "{what} names the store: {err}"
    );
}

/// `run` (acikit with its store) exports `id` to `out_file` and to stdout, each the bytes
/// of `tar`; `who` ends the messages.
fn assert_exports(
    run: &dyn Fn(&[&str]) -> Output,
    id: &str,
    out_file: &Path,
    tar: &Path,
    who: &str,
) {
    assert_ok(
        &run(&["export", id, out_file.to_str().unwrap()]),
        &format!("export{who}"),
    );
    assert_eq!(
        std::fs::read(out_file).unwrap(),
        std::fs::read(tar).unwrap()
    );
    let streamed = run(&["export", id, "-"]);
    assert_ok(&streamed, &format!("export to stdout{who}"));
    assert_eq!(streamed.stdout, std::fs::read(tar).unwrap());
}

fn last_used(store: &str) -> Vec<i64> {
    let out = acikit(&["--store", store, "list", "--json"]);
    assert_ok(&out, "list");
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| i["last_used_at_ms"].as_i64().unwrap())
        .collect()
}

#[test]
fn the_read_only_flag_serves_reads_and_refuses_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (id, store, tar) = imported_image(dir);
    let s = store.to_str().unwrap();
    let used = last_used(s);

    let out_file = dir.join("out.tar");
    let ro = |args: &[&str]| {
        let mut all = vec!["--read-only", "--store", s];
        all.extend_from_slice(args);
        acikit(&all)
    };
    let listed = ro(&["list"]);
    assert_ok(&listed, "list");
    assert!(text(&listed.stdout).contains("example.test/a"));
    assert_exports(&ro, &id, &out_file, &tar, "");
    assert_ok(&ro(&["fsck"]), "fsck");
    assert_ok(&ro(&["trust", "list"]), "trust list");
    assert_ok(&ro(&["stats"]), "stats");

    assert_refused(&ro(&["import", tar.to_str().unwrap()]), &store, "import");
    assert_refused(&ro(&["rm", &id]), &store, "rm");
    assert_refused(&ro(&["gc"]), &store, "gc");
    assert_refused(&ro(&["fsck", "--repair"]), &store, "fsck --repair");
    assert_refused(
        &ro(&["trust", "add", "--root", tar.to_str().unwrap()]),
        &store,
        "trust add",
    );

    // Nothing was recorded or removed.
    assert_eq!(last_used(s), used);
    assert!(!store.join("config/trust").exists());

    // The environment variable does the same.
    let out = Command::new(env!("CARGO_BIN_EXE_acikit"))
        .args(["--store", s, "gc"])
        .env_remove("ACIKIT_DATABASE")
        .env("ACIKIT_READ_ONLY", "1")
        .output()
        .unwrap();
    assert_refused(&out, &store, "gc with ACIKIT_READ_ONLY=1");
}

#[test]
fn a_store_folder_this_user_cannot_write_is_read_only_for_it() {
    let root = rustix::process::geteuid().is_root();
    let have_setpriv = Command::new("setpriv").arg("--version").output().is_ok();
    if !root || !have_setpriv {
        eprintln!("skipped: needs root and setpriv to run as an unprivileged user");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (id, store, tar) = imported_image(dir);
    let s = store.to_str().unwrap();
    let used = last_used(s);
    let out_dir = dir.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out_file = out_dir.join("a.tar");

    let nobody = |args: &[&str]| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
            .arg(env!("CARGO_BIN_EXE_acikit"))
            .args(["--store", s])
            .args(args)
            .env_remove("ACIKIT_DATABASE")
            .env("HOME", &out_dir)
            .output()
            .unwrap()
    };
    assert_ok(&nobody(&["list"]), "list as nobody");
    assert_exports(&nobody, &id, &out_file, &tar, " as nobody");
    assert_ok(&nobody(&["fsck"]), "fsck as nobody");
    // A render: no tree is cached in the store, the run is recorded under the user's cache
    // folder ($HOME/.cache/acikit/runs here), and released from there.
    let target = out_dir.join("run");
    let rendered = nobody(&[
        "render",
        &id,
        target.to_str().unwrap(),
        "--skip-unprivileged",
        "--json",
    ]);
    assert_ok(&rendered, "render as nobody");
    let rendered: Value = serde_json::from_slice(&rendered.stdout).unwrap();
    assert_eq!(rendered["strategy"], "copy", "{rendered}");
    assert_eq!(
        std::fs::read(target.join("etc/a.conf")).unwrap(),
        b"alpha\n"
    );
    assert!(out_dir.join(".cache/acikit/runs").is_dir());
    assert!(!store.join("trees").exists() && !store.join("runs").exists());
    assert_ok(
        &nobody(&["release", target.to_str().unwrap()]),
        "release as nobody",
    );
    assert!(!target.exists());
    assert_refused(
        &nobody(&["import", tar.to_str().unwrap()]),
        &store,
        "import",
    );
    assert_refused(&nobody(&["rm", &id]), &store, "rm");
    assert_eq!(last_used(s), used);
}
