//! The `render` and `release` commands of the `acikit` binary as real processes: an image with
//! a dependency (files of both, the image's own overriding its dependency's; the `--json`
//! report), clean isolated runs for every strategy (`auto`, `overlay` as root, `hardlink`,
//! `copy`), no mount left after `release`, `rm` refused while a run uses an image and the
//! renders cleaned up after, and the dependency errors (cycle, missing dependency); hardlink
//! runs mounted read-only as root (a write fails and leaves the cache clean) and refused
//! without root unless `--unprotected-read-only` (as `nobody`); renders killed at random
//! points, then `fsck`, `gc` and `rm`. Archives are written by GNU tar and gzip.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{acikit_in as acikit, describe, sh};
use acikit::store::ContentDigest;
use acikit::testing::run::list_runs;
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Helpers (in the style of store_cli.rs).

/// A manifest named `name` depending on the images named in `deps` (by name only).
fn manifest_for(name: &str, deps: &[&str]) -> String {
    let deps: Vec<String> = deps
        .iter()
        .map(|d| format!(r#"{{"imageName":"{d}"}}"#))
        .collect();
    let deps = if deps.is_empty() {
        String::new()
    } else {
        format!(r#","dependencies":[{}]"#, deps.join(","))
    };
    format!(
        r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{name}","labels":[{{"name":"os","value":"linux"}},{{"name":"arch","value":"amd64"}}]{deps}}}"#
    )
}

/// An image made here: its gzip archive and the ID `sha512sum` gives for its tar.
struct Image {
    aci: PathBuf,
    id: String,
}

impl Image {
    fn aci(&self) -> &str {
        self.aci.to_str().unwrap()
    }

    fn hex(&self) -> &str {
        &self.id["sha512-".len()..]
    }
}

/// Writes `manifest` and `files` (relative to `rootfs/`) in `dir/<tag>/`, archives them with
/// GNU tar as `dir/<tag>.tar` and gzip as `dir/<tag>.aci`.
fn make_image(dir: &Path, tag: &str, manifest: &str, files: &[(&str, &[u8])]) -> Image {
    let layout = dir.join(tag);
    std::fs::create_dir_all(layout.join("rootfs")).unwrap();
    std::fs::write(layout.join("manifest"), manifest).unwrap();
    for (path, content) in files {
        let path = layout.join("rootfs").join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    sh(
        &layout,
        &format!(
            "tar --format=gnu -cf ../{tag}.tar manifest rootfs && gzip -c ../{tag}.tar > ../{tag}.aci"
        ),
    );
    let sum = Command::new("sha512sum")
        .arg(dir.join(format!("{tag}.tar")))
        .output()
        .unwrap();
    assert!(sum.status.success());
    Image {
        aci: dir.join(format!("{tag}.aci")),
        id: format!("sha512-{}", String::from_utf8_lossy(&sum.stdout[..128])),
    }
}

/// Runs a command that must succeed.
fn ok(store: &Path, args: &[&str]) -> Output {
    let out = acikit(store, args);
    assert!(
        out.status.success(),
        "{}",
        describe(&format!("{args:?}"), &out)
    );
    out
}

/// Runs a command that must succeed with JSON on stdout.
fn json(store: &Path, args: &[&str]) -> Value {
    let out = ok(store, args);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", describe(&format!("{args:?}"), &out)))
}

/// Runs a command that must exit 1 with `error: KIND: ...` on stderr; returns stderr.
fn fails(store: &Path, args: &[&str], kind: &str) -> String {
    let out = acikit(store, args);
    let what = describe(&format!("{args:?}"), &out);
    assert_eq!(out.status.code(), Some(1), "{what}");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(stderr.contains(&format!("error: {kind}: ")), "{what}");
    stderr
}

fn import(store: &Path, images: &[&Image]) {
    let mut args = vec!["import"];
    args.extend(images.iter().map(|i| i.aci()));
    ok(store, &args);
}

/// `render IMAGE DIR --strategy STRATEGY --json`.
fn render(store: &Path, image: &str, target: &Path, strategy: &str) -> Value {
    json(
        store,
        &[
            "render",
            image,
            target.to_str().unwrap(),
            "--strategy",
            strategy,
            "--json",
        ],
    )
}

fn release(store: &Path, target: &Path) {
    ok(store, &["release", target.to_str().unwrap()]);
}

fn is_root() -> bool {
    std::fs::metadata("/proc/self").unwrap().uid() == 0
}

/// Mount points (from /proc/self/mountinfo) at or under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .filter(|mount| *mount == dir || mount.starts_with(&format!("{dir}/")))
        .map(str::to_string)
        .collect()
}

/// Paths under `root` (recursively, symlinks not followed, `skip` folders left out) whose
/// file name is `name`.
fn find_named(root: &Path, name: &str, skip: &[&Path]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_name() == name {
                found.push(path.clone());
            }
            if entry.file_type().unwrap().is_dir() && !skip.contains(&path.as_path()) {
                todo.push(path);
            }
        }
    }
    found
}

/// Entries of a folder of the store (empty when it does not exist).
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

fn read(path: impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A temporary folder by its canonical path (mountinfo and the JSON report use those).
fn tempdir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = std::fs::canonicalize(dir.path()).unwrap();
    (dir, path)
}

/// Image B (example.com/b) and image A (example.com/a) depending on B, both imported.
fn a_over_b(d: &Path, store: &Path) -> (Image, Image) {
    let b = make_image(
        d,
        "b",
        &manifest_for("example.com/b", &[]),
        &[
            ("etc/shared", b"from b\n"),
            ("etc/b-only", b"b only\n"),
            ("usr/lib/b.so", b"b library\n"),
        ],
    );
    let a = make_image(
        d,
        "a",
        &manifest_for("example.com/a", &["example.com/b"]),
        &[
            ("etc/shared", b"from a\n"),
            ("etc/a-only", b"a only\n"),
            ("bin/a", b"a binary\n"),
        ],
    );
    import(store, &[&b, &a]);
    (a, b)
}

// ---------------------------------------------------------------------------------------
// Rendering.

#[test]
fn render_with_a_dependency_lays_both_down_and_reports_json() {
    let (_dir, d) = tempdir();
    let store = d.join("store");
    let (a, b) = a_over_b(&d, &store);

    let run1 = d.join("runs/run1");
    let report = render(&store, "example.com/a", &run1, "auto");
    assert_eq!(report["image_id"], a.id.as_str(), "{report}");
    assert_eq!(report["target"], run1.to_str().unwrap(), "{report}");
    let strategy = report["strategy"].as_str().unwrap();
    if is_root() {
        assert_eq!(strategy, "composefs", "auto as root: {report}");
    } else {
        assert!(["reflink", "copy"].contains(&strategy), "{report}");
    }
    assert_eq!(report["read_only"], false, "{report}");
    let layers: Vec<&str> = report["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert_eq!(layers, [b.id.as_str(), a.id.as_str()], "dependency first");
    assert_eq!(report["cached"], false, "{report}");
    assert!(report["warnings"].is_array(), "{report}");

    // Files of both, A's overriding B's.
    assert_eq!(read(run1.join("etc/shared")), "from a\n");
    assert_eq!(read(run1.join("etc/a-only")), "a only\n");
    assert_eq!(read(run1.join("bin/a")), "a binary\n");
    assert_eq!(read(run1.join("etc/b-only")), "b only\n");
    assert_eq!(read(run1.join("usr/lib/b.so")), "b library\n");

    // A second render of the same image reuses the cached stack; the text output says so.
    let run2 = d.join("runs/run2");
    let out = ok(
        &store,
        &[
            "render",
            &a.id,
            run2.to_str().unwrap(),
            "--strategy",
            "copy",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&a.id) && text.contains("copy") && text.contains("2 layers"),
        "{text}"
    );
    // As root, auto chose composefs, whose cache is its metadata image, not the stack.
    if !is_root() {
        assert!(text.contains("from the cache"), "{text}");
    }
    assert_eq!(read(run2.join("etc/shared")), "from a\n");

    // B alone: one layer.
    let run3 = d.join("runs/run3");
    let report = render(&store, "example.com/b", &run3, "copy");
    assert_eq!(report["layers"], serde_json::json!([b.id]), "{report}");
    assert_eq!(read(run3.join("etc/shared")), "from b\n");
    assert!(!run3.join("etc/a-only").exists());

    // A target holding a run, or any file, is refused and left as it was.
    fails(
        &store,
        &["render", "example.com/b", run1.to_str().unwrap()],
        "invalid_argument",
    );
    assert_eq!(read(run1.join("etc/shared")), "from a\n");
    let busy = d.join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("keep"), "mine\n").unwrap();
    fails(
        &store,
        &["render", "example.com/a", busy.to_str().unwrap()],
        "invalid_argument",
    );
    assert_eq!(entries(&busy), ["keep"]);
    assert_eq!(read(busy.join("keep")), "mine\n");

    for run in [&run1, &run2, &run3] {
        release(&store, run);
        assert!(!run.exists(), "{} is left after release", run.display());
    }
    assert_eq!(mounts_under(&d), Vec::<String>::new());
    assert_eq!(entries(&store.join("runs")), Vec::<String>::new());
}

#[test]
fn every_strategy_gives_clean_isolated_runs() {
    let (_dir, d) = tempdir();
    let store = d.join("store");
    let (_a, _b) = a_over_b(&d, &store);
    let mut strategies = vec!["auto", "hardlink", "copy"];
    if is_root() {
        strategies.push("overlay");
        strategies.push("composefs");
    } else {
        eprintln!("skipping the overlay and composefs strategies: not root");
    }
    let mut all_targets = Vec::new();
    for strategy in strategies {
        let runs = d.join(format!("runs-{strategy}"));
        let (run1, run2, run3) = (runs.join("run1"), runs.join("run2"), runs.join("run3"));
        let r1 = render(&store, "example.com/a", &run1, strategy);
        let r2 = render(&store, "example.com/a", &run2, strategy);
        for report in [&r1, &r2] {
            let chosen = report["strategy"].as_str().unwrap();
            match strategy {
                "auto" => assert_ne!(chosen, "auto", "{report}"),
                s => assert_eq!(chosen, s, "{report}"),
            }
            assert_eq!(report["read_only"], strategy == "hardlink", "{report}");
        }
        if ["overlay", "composefs"].contains(&strategy) || (strategy == "auto" && is_root()) {
            assert_eq!(mounts_under(&run1), [run1.to_str().unwrap()]);
            assert_eq!(mounts_under(&run2), [run2.to_str().unwrap()]);
        }

        if strategy == "hardlink" {
            // Shares inodes with the cache: read-only use only, so nothing is written.
            let r3 = render(&store, "example.com/a", &run3, strategy);
            assert_eq!(r3["read_only"], true, "{r3}");
        } else {
            // Write in run 1: a new file, an overwritten file of A, one of B, a removed one.
            std::fs::write(run1.join("written-in-run1"), "run1\n").unwrap();
            std::fs::write(run1.join("etc/shared"), "changed in run1\n").unwrap();
            std::fs::write(run1.join("usr/lib/b.so"), "changed in run1\n").unwrap();
            std::fs::remove_file(run1.join("bin/a")).unwrap();
            std::fs::create_dir(run1.join("etc/dir-in-run1")).unwrap();
            assert_eq!(read(run1.join("etc/shared")), "changed in run1\n");
            let r3 = render(&store, "example.com/a", &run3, strategy);
            assert_eq!(r3["read_only"], false, "{r3}");
            assert_eq!(r3["cached"], true, "{r3}");
        }
        for run in [&run2, &run3] {
            let what = format!("{strategy}: {}", run.display());
            assert!(!run.join("written-in-run1").exists(), "{what}");
            assert!(!run.join("etc/dir-in-run1").exists(), "{what}");
            assert_eq!(read(run.join("etc/shared")), "from a\n", "{what}");
            assert_eq!(read(run.join("usr/lib/b.so")), "b library\n", "{what}");
            assert_eq!(read(run.join("bin/a")), "a binary\n", "{what}");
            assert_eq!(read(run.join("etc/b-only")), "b only\n", "{what}");
        }
        // Nor in the store (an overlay's upper folder under runs/ holds run 1's writes).
        let upper_dirs = store.join("runs");
        assert_eq!(
            find_named(&store, "written-in-run1", &[&upper_dirs]),
            Vec::<PathBuf>::new(),
            "{strategy}"
        );
        all_targets.extend([run1, run2, run3]);
    }

    // The cached tree and stack are untouched: every stored file still has its content.
    for path in find_named(&store, "shared", &[&store.join("runs")]) {
        let content = read(&path);
        assert!(
            content == "from a\n" || content == "from b\n",
            "{}: {content:?}",
            path.display()
        );
    }
    let fsck = json(&store, &["fsck", "--json"]);
    assert_eq!(fsck["problems"], serde_json::json!([]), "{fsck}");

    for target in &all_targets {
        release(&store, target);
        assert!(!target.exists(), "{} left after release", target.display());
    }
    assert_eq!(mounts_under(&d), Vec::<String>::new(), "mounts left");
    assert_eq!(entries(&store.join("runs")), Vec::<String>::new());
    // Releasing again: no such run.
    fails(
        &store,
        &["release", all_targets[0].to_str().unwrap()],
        "not_found",
    );
}

// ---------------------------------------------------------------------------------------
// rm and gc.

#[test]
fn rm_refuses_an_image_in_use_and_renders_are_cleaned_after_release() {
    let (_dir, d) = tempdir();
    let store = d.join("store");
    let (a, b) = a_over_b(&d, &store);
    let run = d.join("run");
    let strategy = if is_root() { "overlay" } else { "copy" };
    render(&store, "example.com/a", &run, strategy);
    assert!(store.join("trees/sha512").join(a.hex()).exists());
    assert_eq!(entries(&store.join("stacks")).len(), 1);

    // The image, and its dependency (through the stack the run uses), are in use.
    for image in [&a, &b] {
        let stderr = fails(&store, &["rm", &image.id], "in_use");
        assert!(stderr.contains(&image.id), "{stderr}");
    }
    let listed = json(&store, &["list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(read(run.join("etc/shared")), "from a\n");

    release(&store, &run);
    let removed = json(&store, &["rm", "--json", "example.com/a"]);
    assert_eq!(removed["removed"], serde_json::json!([a.id]), "{removed}");
    let gc = json(&store, &["gc", "--json"]);
    // The tree and the stack of A are gone (rm removes them at once; gc would otherwise),
    // B's tree stays, and the checkouts only A's tree used are gone.
    assert!(
        !store.join("trees/sha512").join(a.hex()).exists(),
        "tree of a removed image left: {gc}"
    );
    assert!(store.join("trees/sha512").join(b.hex()).exists(), "{gc}");
    assert_eq!(entries(&store.join("stacks")), Vec::<String>::new(), "{gc}");
    assert!(gc["checkouts_removed"].as_u64().unwrap() >= 1, "{gc}");
    let stats = json(&store, &["stats", "--json"]);
    assert_eq!(stats["images"], 1, "{stats}");

    // gc removes the renders of images that left the store without `rm`: here B, dropped by
    // `fsck --repair` after one of its objects went missing.
    let object = ContentDigest::of(b"b only\n").to_hex();
    std::fs::remove_file(
        store
            .join("objects/sha256")
            .join(&object[..2])
            .join(&object),
    )
    .unwrap();
    let fsck = acikit(&store, &["fsck", "--repair", "--json"]);
    let report: Value = serde_json::from_slice(&fsck.stdout).unwrap();
    assert_eq!(
        report["images_dropped"],
        serde_json::json!([b.id]),
        "{}",
        describe("fsck --repair", &fsck)
    );
    assert!(store.join("trees/sha512").join(b.hex()).exists());
    let gc = json(&store, &["gc", "--json"]);
    assert!(gc["renders_removed"].as_u64().unwrap() >= 1, "{gc}");
    assert!(gc["checkouts_removed"].as_u64().unwrap() >= 1, "{gc}");
    assert_eq!(
        entries(&store.join("trees/sha512")),
        Vec::<String>::new(),
        "{gc}"
    );
    let again = json(&store, &["gc", "--json"]);
    assert_eq!(again["renders_removed"], 0, "{again}");
    // Empty shard folders may stay; no checkout file does.
    let checkouts: Vec<PathBuf> = entries(&store.join("checkouts"))
        .iter()
        .flat_map(|shard| {
            let shard = store.join("checkouts").join(shard);
            entries(&shard).into_iter().map(move |f| shard.join(f))
        })
        .collect();
    assert_eq!(checkouts, Vec::<PathBuf>::new(), "{again}");
}

// ---------------------------------------------------------------------------------------
// Hardlink runs cannot write to the cache.

#[test]
fn a_write_into_a_hardlink_run_fails_and_leaves_every_later_render_clean() {
    if !is_root() {
        eprintln!("SKIPPED: a protected hardlink run needs root");
        return;
    }
    let (_dir, d) = tempdir();
    let store = d.join("store");
    let (_a, _b) = a_over_b(&d, &store);
    let run = d.join("hard");
    let report = render(&store, "example.com/a", &run, "hardlink");
    assert_eq!(report["read_only"], true, "{report}");
    assert_eq!(report["protected"], true, "{report}");
    assert_eq!(mounts_under(&run), [run.to_str().unwrap()]);
    // Root, the usual user of a rootfs, writes to a file of A and one of B.
    for file in ["etc/shared", "usr/lib/b.so"] {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!("echo X > '{}/{file}'", run.display()))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{file}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("Read-only file system"), "{file}: {stderr}");
    }
    assert_eq!(read(run.join("etc/shared")), "from a\n");
    let run2 = d.join("hard2");
    let out = ok(
        &store,
        &[
            "render",
            "example.com/a",
            run2.to_str().unwrap(),
            "--strategy",
            "hardlink",
        ],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("mounted read-only"), "{text}");

    // Every later render, by every strategy, of the image and of its dependency alone.
    for strategy in ["copy", "overlay", "hardlink"] {
        let later = d.join(format!("later-{strategy}"));
        render(&store, "example.com/a", &later, strategy);
        assert_eq!(read(later.join("etc/shared")), "from a\n", "{strategy}");
        assert_eq!(
            read(later.join("usr/lib/b.so")),
            "b library\n",
            "{strategy}"
        );
        release(&store, &later);
        let b_alone = d.join(format!("b-{strategy}"));
        render(&store, "example.com/b", &b_alone, strategy);
        assert_eq!(
            read(b_alone.join("usr/lib/b.so")),
            "b library\n",
            "{strategy}"
        );
        release(&store, &b_alone);
    }
    let fsck = json(&store, &["fsck", "--json"]);
    assert_eq!(fsck["problems"], serde_json::json!([]), "{fsck}");
    assert_eq!(fsck["dead_runs"], 0, "{fsck}");
    for run in [&run, &run2] {
        release(&store, run);
        assert!(!run.exists());
    }
    assert_eq!(mounts_under(&d), Vec::<String>::new());
    assert_eq!(entries(&store.join("runs")), Vec::<String>::new());
}

/// `acikit --store STORE ARGS` as `nobody` (uid and gid 65534, no groups); `render` gets
/// `--skip-unprivileged` (the archives hold files owned by root).
fn acikit_as_nobody(store: &Path, args: &[&str]) -> Output {
    let skip: &[&str] = if args[0] == "render" {
        &["--skip-unprivileged"]
    } else {
        &[]
    };
    Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_acikit"))
        .arg("--store")
        .arg(store)
        .args(args)
        .args(skip)
        .current_dir(store.parent().unwrap())
        .output()
        .expect("setpriv runs")
}

/// `acikit_as_nobody` that must succeed with JSON on stdout.
fn json_as_nobody(store: &Path, args: &[&str]) -> Value {
    let out = acikit_as_nobody(store, args);
    let what = describe(&format!("{args:?} as nobody"), &out);
    assert!(out.status.success(), "{what}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{what}: not JSON: {e}"))
}

#[test]
fn without_root_hardlink_needs_unprotected_read_only_and_auto_never_picks_it() {
    let have_setpriv = Command::new("sh")
        .args(["-c", "command -v setpriv"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !is_root() || !have_setpriv {
        eprintln!("SKIPPED: needs root and setpriv to run acikit as nobody");
        return;
    }
    let (_dir, d) = tempdir();
    std::os::unix::fs::chown(&d, Some(65534), Some(65534)).unwrap();
    let store = d.join("store");
    let image = make_image(
        &d,
        "c",
        &manifest_for("example.com/c", &[]),
        &[("etc/c", b"c\n"), ("usr/bin/c", b"c binary\n")],
    );
    json_as_nobody(&store, &["import", image.aci(), "--json"]);

    let refused = d.join("refused");
    let args = [
        "render",
        "example.com/c",
        refused.to_str().unwrap(),
        "--strategy",
        "hardlink",
    ];
    let out = acikit_as_nobody(&store, &args);
    let what = describe("render --strategy hardlink as nobody", &out);
    assert_eq!(out.status.code(), Some(1), "{what}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("error: needs_privilege: "), "{what}");
    assert!(stderr.contains("--unprotected-read-only"), "{what}");
    assert!(!refused.exists(), "{what}");
    assert_eq!(entries(&store.join("runs")), Vec::<String>::new());

    let allowed = d.join("allowed");
    let report = json_as_nobody(
        &store,
        &[
            "render",
            "example.com/c",
            allowed.to_str().unwrap(),
            "--strategy",
            "hardlink",
            "--unprotected-read-only",
            "--json",
        ],
    );
    assert_eq!(report["strategy"], "hardlink", "{report}");
    assert_eq!(report["read_only"], true, "{report}");
    assert_eq!(report["protected"], false, "{report}");
    let warnings = report["warnings"].to_string();
    assert!(warnings.contains("NOT protected"), "{report}");
    assert_eq!(mounts_under(&allowed), Vec::<String>::new());
    assert_eq!(read(allowed.join("etc/c")), "c\n");

    for flags in [&[][..], &["--unprotected-read-only"][..]] {
        let auto = d.join("auto");
        let mut args = vec![
            "render",
            "example.com/c",
            auto.to_str().unwrap(),
            "--strategy",
            "auto",
            "--json",
        ];
        args.extend(flags);
        let report = json_as_nobody(&store, &args);
        let chosen = report["strategy"].as_str().unwrap();
        assert!(["reflink", "copy"].contains(&chosen), "{report}");
        assert_eq!(report["read_only"], false, "{report}");
        let out = acikit_as_nobody(&store, &["release", auto.to_str().unwrap()]);
        assert!(out.status.success(), "{}", describe("release", &out));
    }
    let out = acikit_as_nobody(&store, &["release", allowed.to_str().unwrap()]);
    assert!(out.status.success(), "{}", describe("release", &out));
    assert_eq!(entries(&store.join("runs")), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// Killed renders.

/// The next number of a xorshift64 sequence.
fn xorshift(mut x: u64) -> u64 {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    x
}

/// Starts `acikit render IMAGE TARGET --strategy copy`, kills it (SIGKILL) after `delay`
/// (or lets it finish first); returns how many runs it left dead and releases a run it
/// completed, as its user would.
fn killed_render(store: &Path, image: &str, target: &Path, delay: Duration) -> usize {
    let mut child = Command::new(env!("CARGO_BIN_EXE_acikit"))
        .arg("--store")
        .arg(store)
        .args([
            "render",
            image,
            target.to_str().unwrap(),
            "--strategy",
            "copy",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let _ = child.kill();
    let status = child.wait().unwrap();
    // A run is live once it completed with its target in place; any other is dead.
    let records = list_runs(&store.join("runs")).unwrap();
    let (live, dead): (Vec<_>, Vec<_>) = records
        .iter()
        .partition(|r| r.complete && r.target.exists());
    eprintln!(
        "killed after {delay:?} ({status}): {} live, {} dead",
        live.len(),
        dead.len()
    );
    for record in live {
        release(store, &record.target);
    }
    dead.len()
}

#[test]
fn renders_killed_at_random_points_leave_nothing_after_gc() {
    let (_dir, d) = tempdir();
    let store = d.join("store");
    let contents: Vec<(String, Vec<u8>)> = (0..3000)
        .map(|i| {
            (
                format!("usr/share/big/{:02}/file-{i}", i % 40),
                format!("{i:015}\n").repeat(1024).into_bytes(),
            )
        })
        .collect();
    let files: Vec<(&str, &[u8])> = contents
        .iter()
        .map(|(path, content)| (path.as_str(), content.as_slice()))
        .collect();
    let big = make_image(&d, "big", &manifest_for("example.com/big", &[]), &files);
    import(&store, &[&big]);
    let targets = d.join("targets");
    // The first render builds the exploded tree; the second is what the killed ones redo.
    let first = targets.join("first");
    render(&store, &big.id, &first, "copy");
    release(&store, &first);
    let started = Instant::now();
    render(&store, &big.id, &first, "copy");
    let full = started.elapsed();
    release(&store, &first);

    let mut seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    eprintln!("a copy render takes {full:?}; seed {seed}");
    let mut dead_seen = 0;
    for trial in 0..10 {
        seed = xorshift(seed);
        let delay = full.mul_f64((seed % 1000) as f64 / 1000.0 * 1.5);
        let target = targets.join(format!("t{trial}"));
        let dead = killed_render(&store, &big.id, &target, delay);
        dead_seen += dead;
        let fsck = json(&store, &["fsck", "--json"]);
        assert_eq!(fsck["dead_runs"], dead, "trial {trial}: {fsck}");
        assert_eq!(fsck["problems"], serde_json::json!([]), "{fsck}");
        let gc = json(&store, &["gc", "--json"]);
        assert_eq!(gc["dead_runs_removed"], dead, "trial {trial}: {gc}");
        assert_eq!(
            entries(&store.join("runs")),
            Vec::<String>::new(),
            "trial {trial}: {gc}"
        );
        assert_eq!(
            entries(&targets),
            Vec::<String>::new(),
            "trial {trial}: left beside the target"
        );
    }
    assert!(
        dead_seen > 0,
        "no kill landed in a render's copy (a render takes {full:?})"
    );

    // An image whose only users are dead runs can be removed at once, without gc.
    for attempt in 0..5 {
        let target = targets.join(format!("rm{attempt}"));
        if killed_render(&store, &big.id, &target, full / 2) > 0 {
            break;
        }
    }
    let removed = json(&store, &["rm", "--json", &big.id]);
    assert_eq!(removed["removed"], serde_json::json!([big.id]), "{removed}");
    assert_eq!(entries(&store.join("runs")), Vec::<String>::new());
    assert_eq!(entries(&targets), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// Dependency errors.

#[test]
fn a_dependency_cycle_and_a_missing_dependency_are_clear_errors() {
    let (_dir, d) = tempdir();
    let store = d.join("store");
    // A -> B -> A, by name.
    let b = make_image(
        &d,
        "cyc-b",
        &manifest_for("example.com/cyc-b", &["example.com/cyc-a"]),
        &[("etc/b", b"b\n")],
    );
    let a = make_image(
        &d,
        "cyc-a",
        &manifest_for("example.com/cyc-a", &["example.com/cyc-b"]),
        &[("etc/a", b"a\n")],
    );
    // C -> D, D -> E (not in the store).
    let dd = make_image(
        &d,
        "d",
        &manifest_for("example.com/d", &["example.com/nowhere"]),
        &[("etc/d", b"d\n")],
    );
    let c = make_image(
        &d,
        "c",
        &manifest_for("example.com/c", &["example.com/d"]),
        &[("etc/c", b"c\n")],
    );
    import(&store, &[&b, &a, &dd, &c]);

    let target = d.join("run");
    let target_arg = target.to_str().unwrap();
    for strategy in ["auto", "copy"] {
        let stderr = fails(
            &store,
            &[
                "render",
                "example.com/cyc-a",
                target_arg,
                "--strategy",
                strategy,
            ],
            "dependency_cycle",
        );
        assert!(
            stderr.contains("example.com/cyc-a -> example.com/cyc-b -> example.com/cyc-a"),
            "{stderr}"
        );
        assert!(!target.exists(), "{stderr}");
    }
    let stderr = fails(
        &store,
        &["render", "example.com/cyc-b", target_arg],
        "dependency_cycle",
    );
    assert!(
        stderr.contains("example.com/cyc-b -> example.com/cyc-a -> example.com/cyc-b"),
        "{stderr}"
    );

    let stderr = fails(
        &store,
        &["render", "example.com/c", target_arg],
        "missing_dependency",
    );
    assert!(
        stderr.contains("example.com/c -> example.com/d") && stderr.contains("example.com/nowhere"),
        "{stderr}"
    );
    assert!(!target.exists(), "{stderr}");
    // D alone names its own chain.
    let stderr = fails(
        &store,
        &["render", "example.com/d", target_arg, "--json"],
        "missing_dependency",
    );
    assert!(
        stderr.contains("example.com/d depends on example.com/nowhere"),
        "{stderr}"
    );

    // An existing empty target is left in place and empty; no run is recorded.
    std::fs::create_dir(&target).unwrap();
    fails(
        &store,
        &["render", "example.com/cyc-a", target_arg],
        "dependency_cycle",
    );
    assert_eq!(entries(&target), Vec::<String>::new());
    assert_eq!(entries(&store.join("runs")), Vec::<String>::new());
    assert_eq!(mounts_under(&d), Vec::<String>::new());
}

// ---------------------------------------------------------------------------------------
// fsck of the render caches.

#[test]
fn fsck_finds_a_write_through_a_hardlink_run_and_repair_rebuilds_the_tree() {
    let (_dir, d) = tempdir();
    let store = d.join("store");
    let manifest = manifest_for("example.com/plain", &[]);
    let image = make_image(&d, "plain", &manifest, &[("etc/version", b"12.5\n")]);
    import(&store, &[&image]);
    let run = d.join("run");
    render(&store, "example.com/plain", &run, "hardlink");
    let report = json(&store, &["fsck", "--json"]);
    assert_eq!(report["render_caches"]["trees_checked"], 1, "{report}");

    // What a process in the run could do: write to a file it shares with the cache (written
    // through the tree's name for the same inode, whether or not the run is mounted read-only).
    let tree = store.join("trees/sha512").join(image.hex()).join("rootfs");
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&run.join("etc/version")),
        ino(&tree.join("etc/version"))
    );
    std::fs::write(tree.join("etc/version"), "X").unwrap();
    assert_eq!(read(run.join("etc/version")), "X");
    let out = acikit(&store, &["fsck"]);
    let what = describe("fsck", &out);
    assert_eq!(out.status.code(), Some(1), "{what}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("damaged_render_cache: {}: ", image.id))
            && stderr.contains("/etc/version: 1 bytes where the image has 5"),
        "{what}"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .contains("checked 1 trees, 0 stacks and 0 composefs images, 0 trees not checkable: 1 damaged (1 set aside, 1 used by live runs"),
        "{what}"
    );

    // Set aside: the next render builds the tree again from the store.
    let run2 = d.join("run2");
    render(&store, "example.com/plain", &run2, "copy");
    assert_eq!(read(run2.join("etc/version")), "12.5\n");
    release(&store, &run2);

    // Damaged again (the new tree, through a file of it), then repaired at once.
    std::fs::write(tree.join("etc/version"), "Y").unwrap();
    let out = acikit(&store, &["fsck", "--repair", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        describe("fsck --repair", &out)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        report["problems"][0]["kind"], "damaged_render_cache",
        "{report}"
    );
    assert_eq!(
        report["problems"][0]["subject"],
        image.id.as_str(),
        "{report}"
    );
    assert_eq!(report["render_caches"]["rebuilt"], 1, "{report}");
    assert_eq!(read(tree.join("etc/version")), "12.5\n");
    let report = json(&store, &["fsck", "--json"]);
    assert_eq!(report["problems"], serde_json::json!([]), "{report}");
    // The first run's tree stays aside until that run is released; gc then removes it.
    assert_eq!(report["render_caches"]["damaged_left"], 1, "{report}");
    release(&store, &run);
    let gc = json(&store, &["gc", "--json"]);
    assert!(gc["renders_removed"].as_u64().unwrap() >= 1, "{gc}");
    assert_eq!(entries(&store.join("damaged")), Vec::<String>::new());
}
