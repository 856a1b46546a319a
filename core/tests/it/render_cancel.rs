//! Render progress and cancellation (`Store::render` with an `Observer`): progress comes in
//! two phases (`checkout` while the cached tree is built, `render` while the run is made),
//! non-decreasing and ending at the total; a render cancelled mid-way (by a progress
//! callback that cancels the token) fails with `Cancelled` and leaves nothing: the target as
//! it was (absent, or an empty folder), no run record, no mount, no partial tree, stack or
//! checkout in the store's render folders, `fsck` clean; and the next render of the image is
//! exact (compared with what GNU tar extracts from the image's archive). For every strategy
//! (copy; hardlink and overlay as root), for a first render and a cached one, for an image
//! with a dependency (its stack), and for an uncached render from a read-only store.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::common::*;
use acikit::progress::{Observer, Phase, Progress};
use acikit::render::{RenderOptions, Strategy};
use acikit::schema::ImageId;
use acikit::store::{ImportOptions, StoreOptions};
use acikit::{ErrorKind, Store};

/// The image's rootfs: 12 folders of 30 small files, 6 files of 4 MiB, a symlink and a
/// hardlink pair (some 380 entries, 24 MiB).
const ROOTFS_SCRIPT: &str = "\
    for d in $(seq 1 12); do mkdir d$d; for f in $(seq 1 30); do \
      head -c $((d * 97 + f * 13)) /dev/urandom > d$d/f$f; done; done; \
    mkdir big; for i in 1 2 3 4 5 6; do head -c 4194304 /dev/urandom > big/b$i; done; \
    ln -s d1/f1 link; ln d2/f2 d2/hard; chmod 0750 d3; touch -d '2001-02-03 04:05:06' d4/f4";

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    /// The image without dependencies.
    id: ImageId,
    /// What GNU tar extracts of it.
    expected: PathBuf,
    /// An image depending on `id` (adds a file of its own).
    app: ImageId,
    /// What the app's rootfs must be: the base's, then the app's layer.
    app_expected: PathBuf,
}

/// Archives `dir/NAME/{manifest,rootfs}` made by `script` with GNU tar, and extracts it into
/// `dir/NAME-expected`, then also `also` (earlier layers) under it first.
fn image(
    dir: &Path,
    name: &str,
    manifest: &str,
    script: &str,
    also: &[&Path],
) -> (PathBuf, PathBuf) {
    let layout = dir.join(name);
    std::fs::create_dir_all(layout.join("rootfs")).unwrap();
    std::fs::write(layout.join("manifest"), manifest).unwrap();
    sh(&layout.join("rootfs"), script);
    let tar = dir.join(format!("{name}.tar"));
    sh(
        &layout,
        &format!("tar --format=gnu -cf '{}' manifest rootfs", tar.display()),
    );
    let expected = dir.join(format!("{name}-expected"));
    std::fs::create_dir_all(&expected).unwrap();
    for earlier in also {
        sh(
            &expected,
            &format!("tar --numeric-owner -xpf '{}'", earlier.display()),
        );
    }
    sh(
        &expected,
        &format!("tar --numeric-owner -xpf '{}'", tar.display()),
    );
    (tar, expected.join("rootfs"))
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (base_tar, expected) = image(
        dir.path(),
        "base",
        &manifest_with_deps("base", &[]),
        ROOTFS_SCRIPT,
        &[],
    );
    let (app_tar, app_expected) = image(
        dir.path(),
        "app",
        &manifest_with_deps("app", &["base"]),
        "mkdir d1 && printf app > d1/f1 && printf mine > app-file",
        &[&base_tar],
    );
    let store = Store::open(dir.path().join("store")).await.unwrap();
    let mut ids = Vec::new();
    for tar in [&base_tar, &app_tar] {
        ids.push(
            store
                .import_file(tar, ImportOptions::default(), Observer::default())
                .await
                .unwrap()
                .image_id,
        );
    }
    Fixture {
        id: ids[0].clone(),
        app: ids[1].clone(),
        dir,
        store,
        expected,
        app_expected,
    }
}

/// An observer recording every event, cancelling its token at the first event of `phase`
/// past 0 (`None`: never).
fn observer(cancel_in: Option<Phase>) -> (Observer, Arc<Mutex<Vec<Progress>>>) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let observer = Observer::default();
    let token = observer.cancel.clone();
    let observer = Observer {
        progress: Some(Arc::new(move |p: Progress| {
            seen.lock().unwrap().push(p);
            if Some(p.phase) == cancel_in && p.done > 0 {
                token.cancel();
            }
        })),
        ..observer
    };
    (observer, events)
}

fn options(strategy: Strategy) -> RenderOptions {
    RenderOptions::default()
        .strategy(strategy)
        .skip_unprivileged(!is_root())
        .allow_unprotected_hardlink(false)
}

/// Every path under the store's render folders (`trees/`, `stacks/`, `checkouts/`, `runs/`,
/// `tmp/`), with its type and link count (a checkout object a tree links has 2); the empty
/// `trees/sha512/` a first build makes is not listed (a cache folder, not a tree).
fn render_areas(store: &Path) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for area in ["trees", "stacks", "checkouts", "composefs", "runs", "tmp"] {
        let mut pending = vec![store.join(area)];
        while let Some(dir) = pending.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                let rel = path.strip_prefix(store).unwrap().display().to_string();
                if meta.is_dir() {
                    // The layout's own folder (made with the first tree's lock) is no tree.
                    if rel != "trees/sha512" {
                        out.insert(format!("{rel}/"));
                    }
                    pending.push(path);
                } else {
                    out.insert(format!("{rel} links={}", meta.nlink()));
                }
            }
        }
    }
    out
}

/// Mount points under `dir` (from /proc/self/mountinfo).
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = std::fs::canonicalize(dir).unwrap();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|p| Path::new(p).starts_with(&dir))
        .collect()
}

/// Names in `dir` (the target's folder: no hidden copy or scratch folder left beside it).
fn names_in(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Path -> (type, mode, owner, mtime, size, symlink target, content) of a tree, the root's
/// own entry left out.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        for entry in std::fs::read_dir(root.join(&rel)).unwrap() {
            let name = entry.unwrap().file_name();
            let rel = rel.join(name);
            let full = root.join(&rel);
            let m = std::fs::symlink_metadata(&full).unwrap();
            let ft = m.file_type();
            let detail = if ft.is_dir() {
                pending.push(rel.clone());
                String::new()
            } else if ft.is_symlink() {
                std::fs::read_link(&full).unwrap().display().to_string()
            } else {
                use sha2::Digest;
                hex::encode(sha2::Sha256::digest(std::fs::read(&full).unwrap()))
            };
            out.insert(
                rel,
                format!(
                    "{} {:o} {}:{} {} {} {detail}",
                    kind_name(&ft),
                    m.mode() & 0o7777,
                    m.uid(),
                    m.gid(),
                    m.mtime(),
                    if ft.is_dir() { 0 } else { m.size() },
                ),
            );
        }
    }
    out
}

fn assert_exact(run: &Path, expected: &Path, what: &str) {
    let (got, want) = (snapshot(run), snapshot(expected));
    assert!(want.len() > 10, "{what}: the expected tree has content");
    let differences: Vec<String> = want
        .keys()
        .chain(got.keys())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter(|p| got.get(*p) != want.get(*p))
        .map(|p| {
            format!(
                "{}: ours {:?}, tar {:?}",
                p.display(),
                got.get(p),
                want.get(p)
            )
        })
        .collect();
    assert!(
        differences.is_empty(),
        "{what}: {} differences:\n{}",
        differences.len(),
        differences[..differences.len().min(10)].join("\n")
    );
}

/// The target of a case: absent, or an empty folder.
fn prepare_target(base: &Path, name: &str, existing: bool) -> PathBuf {
    let target = base.join(name);
    if existing {
        std::fs::create_dir_all(&target).unwrap();
    }
    target
}

/// Renders `id` into a new target by `strategy`, cancelling in `phase`, then checks that
/// nothing was left and that a render afterwards is exact; the run is released.
async fn cancel_and_check(
    f: &Fixture,
    id: &ImageId,
    expected: &Path,
    strategy: Strategy,
    phase: Phase,
    case: &str,
    forget: &[&str],
) {
    let store_dir = f.store.dir().to_path_buf();
    for existing in [false, true] {
        forget_caches(&store_dir, forget);
        let what = format!("{case} by {strategy} (target existed: {existing})");
        let base = f
            .dir
            .path()
            .join("runs")
            .join(format!("{case}-{strategy}-{existing}"));
        std::fs::create_dir_all(&base).unwrap();
        let target = prepare_target(&base, "target", existing);
        let before = render_areas(&store_dir);
        let beside = names_in(&base);
        let mounts = mounts_under(f.dir.path());

        let (obs, events) = observer(Some(phase));
        let err = f
            .store
            .render(id, &target, options(strategy), obs)
            .await
            .expect_err(&what);
        assert_eq!(err.kind(), ErrorKind::Cancelled, "{what}: {err}");
        let events = events.lock().unwrap().clone();
        assert!(
            events.iter().any(|e| e.phase == phase && e.done > 0),
            "{what}: cancelled after a {phase:?} event: {events:?}"
        );

        // Nothing left.
        if existing {
            assert!(target.is_dir(), "{what}: the target folder stays");
            assert_eq!(
                names_in(&target),
                BTreeSet::new(),
                "{what}: and stays empty"
            );
        } else {
            assert!(
                std::fs::symlink_metadata(&target).is_err(),
                "{what}: no target left"
            );
        }
        assert_eq!(names_in(&base), beside, "{what}: nothing beside the target");
        assert!(
            f.store.runs().await.unwrap().is_empty(),
            "{what}: no run record"
        );
        assert_eq!(mounts_under(f.dir.path()), mounts, "{what}: no mount left");
        assert_eq!(
            render_areas(&store_dir),
            before,
            "{what}: the render folders as before"
        );
        let report = f.store.fsck(false, Observer::default()).await.unwrap();
        assert!(
            report.is_clean(),
            "{what}: fsck clean: {:?}",
            report.problems
        );
        assert_eq!(
            report.render_caches.damaged_left, 0,
            "{what}: render caches clean"
        );

        // A render afterwards is exact.
        let rendered = f
            .store
            .render(id, &target, options(strategy), Observer::default())
            .await
            .unwrap_or_else(|e| panic!("{what}: rendering again: {e}"));
        assert_exact(&rendered.target, expected, &what);
        f.store.release(&target).await.unwrap();
    }
}

fn strategies() -> Vec<Strategy> {
    if is_root() {
        vec![
            Strategy::Copy,
            Strategy::Hardlink,
            Strategy::Overlay,
            Strategy::Composefs,
        ]
    } else {
        vec![Strategy::Copy]
    }
}

/// Every render cache: the next render is a first one.
const ALL_CACHES: &[&str] = &["trees", "stacks", "checkouts", "composefs"];

/// Removes the render caches of `areas` (e.g. `trees`), so the next render builds them.
fn forget_caches(store: &Path, areas: &[&str]) {
    for area in areas {
        let _ = std::process::Command::new("rm")
            .arg("-rf")
            .arg(store.join(area))
            .status();
    }
}

#[tokio::test]
async fn a_first_render_cancelled_while_checking_out_leaves_nothing() {
    let f = fixture().await;
    for strategy in strategies() {
        cancel_and_check(
            &f,
            &f.id,
            &f.expected,
            strategy,
            Phase::Checkout,
            "first",
            ALL_CACHES,
        )
        .await;
    }
}

#[tokio::test]
async fn a_cached_render_cancelled_while_making_the_run_leaves_nothing() {
    let f = fixture().await;
    // Cache the tree (and, as root, the composefs image).
    let warm = f.dir.path().join("warm");
    for strategy in strategies()
        .into_iter()
        .filter(|s| [Strategy::Copy, Strategy::Composefs].contains(s))
    {
        f.store
            .render(&f.id, &warm, options(strategy), Observer::default())
            .await
            .unwrap();
        f.store.release(&warm).await.unwrap();
    }
    for strategy in strategies() {
        cancel_and_check(
            &f,
            &f.id,
            &f.expected,
            strategy,
            Phase::Render,
            "cached",
            &[],
        )
        .await;
    }
}

#[tokio::test]
async fn a_stack_cancelled_while_flattening_or_copying_leaves_nothing() {
    let f = fixture().await;
    // First render of the app: its base's tree, its own, then the stack are built.
    cancel_and_check(
        &f,
        &f.app,
        &f.app_expected,
        Strategy::Copy,
        Phase::Checkout,
        "stack",
        ALL_CACHES,
    )
    .await;
    // The stack is cached now: cancelled while its run is copied.
    cancel_and_check(
        &f,
        &f.app,
        &f.app_expected,
        Strategy::Copy,
        Phase::Render,
        "cached-stack",
        &[],
    )
    .await;
    // Trees cached, stack not: cancelled while flattening.
    cancel_and_check(
        &f,
        &f.app,
        &f.app_expected,
        Strategy::Copy,
        Phase::Checkout,
        "flatten",
        &["stacks"],
    )
    .await;
}

/// Events of one phase: at least 3, non-decreasing, one total, the last at the total.
fn assert_phase(events: &[Progress], phase: Phase, what: &str) {
    let mine: Vec<&Progress> = events.iter().filter(|e| e.phase == phase).collect();
    assert!(
        mine.len() >= 3,
        "{what}: several {phase:?} events: {mine:?}"
    );
    let total = mine[0].total.expect("a known total");
    assert!(total > 0, "{what}");
    for pair in mine.windows(2) {
        assert!(
            pair[0].done <= pair[1].done,
            "{what}: non-decreasing: {mine:?}"
        );
        assert_eq!(pair[1].total, Some(total), "{what}: one total");
    }
    assert!(mine.iter().all(|e| e.done <= total), "{what}: {mine:?}");
    assert_eq!(
        mine.last().unwrap().done,
        total,
        "{what}: ends at the total"
    );
    assert!(
        mine.len() <= 200,
        "{what}: a modest rate: {} events",
        mine.len()
    );
}

#[tokio::test]
async fn progress_is_non_decreasing_and_ends_at_the_total() {
    let f = fixture().await;
    // A first render: checkout, then render.
    let (obs, events) = observer(None);
    let target = f.dir.path().join("first");
    let rendered = f
        .store
        .render(&f.app, &target, options(Strategy::Copy), obs)
        .await
        .unwrap();
    assert_exact(&rendered.target, &f.app_expected, "first");
    let events = events.lock().unwrap().clone();
    assert_phase(&events, Phase::Checkout, "first render");
    assert_phase(&events, Phase::Render, "first render");
    let last_checkout = events
        .iter()
        .rposition(|e| e.phase == Phase::Checkout)
        .unwrap();
    let first_render = events
        .iter()
        .position(|e| e.phase == Phase::Render)
        .unwrap();
    assert!(
        last_checkout < first_render,
        "checkout, then render: {events:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| matches!(e.phase, Phase::Checkout | Phase::Render)),
        "{events:?}"
    );
    f.store.release(&target).await.unwrap();

    // A cached render: no checkout.
    let (obs, events) = observer(None);
    f.store
        .render(&f.app, &target, options(Strategy::Copy), obs)
        .await
        .unwrap();
    let events = events.lock().unwrap().clone();
    assert!(
        events.iter().all(|e| e.phase == Phase::Render),
        "{events:?}"
    );
    assert_phase(&events, Phase::Render, "cached render");
    f.store.release(&target).await.unwrap();

    // An overlay over the cached stack: one event, at its total.
    if is_root() {
        let (obs, events) = observer(None);
        f.store
            .render(&f.app, &target, options(Strategy::Overlay), obs)
            .await
            .unwrap();
        let events = events.lock().unwrap().clone();
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(
            (events[0].phase, events[0].done, events[0].total),
            (Phase::Render, 1, Some(1))
        );
        f.store.release(&target).await.unwrap();
    }
}

#[tokio::test]
async fn an_uncached_render_from_a_read_only_store_cancelled_leaves_nothing() {
    let f = fixture().await;
    let runs_dir = f.dir.path().join("outside-runs");
    let store = Store::open_with(
        f.store.dir(),
        StoreOptions::default()
            .read_only(true)
            .runs_dir(runs_dir.clone()),
    )
    .await
    .unwrap();
    let store_dir = f.store.dir().to_path_buf();
    for existing in [false, true] {
        let what = format!("read-only (target existed: {existing})");
        let base = f.dir.path().join(format!("ro-{existing}"));
        std::fs::create_dir_all(&base).unwrap();
        let target = prepare_target(&base, "target", existing);
        let before = render_areas(&store_dir);
        let (obs, events) = observer(Some(Phase::Checkout));
        let err = store
            .render(&f.id, &target, options(Strategy::Copy), obs)
            .await
            .expect_err(&what);
        assert_eq!(err.kind(), ErrorKind::Cancelled, "{what}: {err}");
        assert!(
            events
                .lock()
                .unwrap()
                .iter()
                .any(|e| e.phase == Phase::Checkout && e.done > 0),
            "{what}"
        );
        if existing {
            assert_eq!(
                names_in(&target),
                BTreeSet::new(),
                "{what}: the target stays, empty"
            );
            assert_eq!(
                names_in(&base),
                BTreeSet::from(["target".to_string()]),
                "{what}"
            );
        } else {
            assert_eq!(names_in(&base), BTreeSet::new(), "{what}: nothing beside");
        }
        assert!(
            store.runs().await.unwrap().is_empty(),
            "{what}: no run record"
        );
        assert_eq!(
            names_in(&runs_dir),
            BTreeSet::new(),
            "{what}: no run folder"
        );
        assert_eq!(
            render_areas(&store_dir),
            before,
            "{what}: the store untouched"
        );

        let rendered = store
            .render(&f.id, &target, options(Strategy::Copy), Observer::default())
            .await
            .unwrap_or_else(|e| panic!("{what}: rendering again: {e}"));
        assert_exact(&rendered.target, &f.expected, &what);
        store.release(&target).await.unwrap();
    }
}
