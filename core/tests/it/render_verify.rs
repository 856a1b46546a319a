//! `fsck` of the render caches (`acikit::render::verify`): a write into a checkout file (as a
//! hardlink run could make), a byte flipped in `checkouts/`, changed metadata and files
//! added to or removed from a tree or a stack are found and named; a damaged cache is set
//! aside so that the next render rebuilds it; `fsck --repair` rebuilds it, and renders of
//! every strategy, of the image and of another image sharing the file, show the original
//! bytes again; a damaged cache a live run (hardlink, overlay) uses stays set aside until
//! the run is released, then `gc` removes it.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::common::ImageFixture;
use crate::common::*;
use acikit::FsckReport;
use acikit::Store;
use acikit::progress::Observer;
use acikit::render::{RenderOptions, Strategy};
use acikit::schema::ImageId;
use acikit::store::ImportOptions;
use acikit::testing::privileges::Privileges;
use acikit::testing::stack::ensure_stack;
use acikit::testing::tree::ensure_tree;
use serde_json::{Value, json};

const ORIGINAL: &str = "12.5\n";

/// The shared [`ImageFixture`] with this module's methods (below): a type of its own, so
/// that they cannot clash with another test module's methods on the shared fixture.
struct Fixture(ImageFixture);

impl std::ops::Deref for Fixture {
    type Target = ImageFixture;

    fn deref(&self) -> &ImageFixture {
        &self.0
    }
}

impl std::ops::DerefMut for Fixture {
    fn deref_mut(&mut self) -> &mut ImageFixture {
        &mut self.0
    }
}

impl Fixture {
    async fn new() -> Fixture {
        Fixture(ImageFixture::new().await)
    }
}

impl Fixture {
    /// Imports `example.com/<name>` whose manifest also holds `extra`, with a rootfs made by
    /// the shell `script` (archived with GNU tar).
    async fn image(&mut self, name: &str, extra: Value, script: &str) -> ImageId {
        let manifest = json!({
            "acKind": "ImageManifest",
            "acVersion": "0.8.11",
            "name": format!("example.com/{name}"),
            "labels": [{"name": "version", "value": "1.0.0"}],
        });
        let (layout, tar) = self.layout(manifest, extra, script);
        sh(
            &layout,
            &format!(
                "tar --format=posix --xattrs --numeric-owner -cf '{}' manifest rootfs",
                tar.display()
            ),
        );
        self.store
            .import_file(&tar, ImportOptions::default(), Observer::default())
            .await
            .unwrap_or_else(|e| panic!("importing {name}: {e}"))
            .image_id
    }

    /// `base` (of [`script`]) and `app`, which depends on it and adds `etc/app`.
    async fn base_and_app(&mut self) -> (ImageId, ImageId) {
        let base = self.image("base", json!({}), &script("base")).await;
        let app = self
            .image(
                "app",
                json!({"dependencies": [{"imageName": "example.com/base"}]}),
                "mkdir -p etc && printf 'app' > etc/app",
            )
            .await;
        (base, app)
    }

    fn paths(&self) -> acikit::testing::paths::StorePaths {
        acikit::testing::paths::StorePaths::new(self.store.dir())
    }

    fn tree(&self, id: &ImageId) -> PathBuf {
        self.paths().tree(id).join("rootfs")
    }

    async fn fsck(&self, repair: bool) -> FsckReport {
        self.store
            .fsck(repair, Observer::default())
            .await
            .expect("fsck runs")
    }

    async fn render(&self, id: &ImageId, name: &str, strategy: Strategy) -> PathBuf {
        let target = self.dir.path().join("runs").join(name);
        self.store
            .render(
                id,
                &target,
                RenderOptions::default()
                    .strategy(strategy)
                    .skip_unprivileged(!is_root())
                    .allow_unprotected_hardlink(false),
                Observer::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("rendering {id} with {strategy}: {e}"));
        target
    }
}

fn privs() -> Privileges {
    let p = Privileges::detect();
    if is_root() {
        p
    } else {
        p.skipping_unprivileged()
    }
}

/// A rootfs with `etc/debian_version` (fixed metadata, so two images share its checkout
/// object), plus `own` and a few other nodes.
fn script(own: &str) -> String {
    format!(
        "mkdir -p etc bin && printf '{ORIGINAL}' > etc/debian_version && \
         chmod 0644 etc/debian_version && touch -d '2020-01-01 00:00:00.25' etc/debian_version && \
         printf 'tool' > bin/tool && chmod 0755 bin/tool && ln -s tool bin/alias && \
         ln bin/tool bin/tool-link && printf '{own}' > own && : > empty"
    )
}

/// The damaged-cache problems of a report, as (subject, message).
fn damaged(report: &FsckReport) -> Vec<(String, String)> {
    report
        .problems
        .iter()
        .filter(|p| p.kind == "damaged_render_cache")
        .map(|p| (p.subject.clone(), p.message.clone()))
        .collect()
}

/// The message of the damaged-cache problem about `subject` (starting with it).
fn problem_of(report: &FsckReport, subject: &str) -> String {
    damaged(report)
        .into_iter()
        .find(|(s, _)| s.starts_with(subject))
        .unwrap_or_else(|| panic!("no problem about {subject}: {:?}", report.problems))
        .1
}

/// [`problem_of`], checked to say each of `expected`.
fn problem_saying(report: &FsckReport, subject: &str, expected: &[&str]) -> String {
    let message = problem_of(report, subject);
    for expected in expected {
        assert!(message.contains(expected), "{expected:?} in {message}");
    }
    message
}

/// Writes `X` over a file through its own name (as a process in a hardlink run writing to
/// the run's file does: the inode is the cache's).
fn scribble(file: &Path) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(file)
        .unwrap();
    f.write_all(b"X").unwrap();
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap()
}

/// Renders `id` with every strategy this machine has and checks the original bytes.
async fn every_strategy_shows_the_original(f: &Fixture, id: &ImageId, tag: &str) {
    let mut strategies = vec![Strategy::Copy, Strategy::Hardlink];
    if is_root() {
        strategies.push(Strategy::Overlay);
    }
    for strategy in strategies {
        let target = f.render(id, &format!("{tag}-{strategy}"), strategy).await;
        assert_eq!(
            read(&target, "etc/debian_version"),
            ORIGINAL,
            "{tag} with {strategy}"
        );
        f.store.release(&target).await.unwrap();
    }
}

#[tokio::test]
async fn a_write_through_a_hardlink_run_is_found_and_never_served_again() {
    let mut f = Fixture::new().await;
    let a = f.image("a", json!({}), &script("a")).await;
    let b = f.image("b", json!({}), &script("b")).await;
    let run = f.render(&a, "poisoned", Strategy::Hardlink).await;
    ensure_tree(&f.store, &b, privs()).await.unwrap();
    let ino = |root: &Path| {
        std::fs::metadata(root.join("etc/debian_version"))
            .unwrap()
            .ino()
    };
    assert_eq!(ino(&f.tree(&a)), ino(&f.tree(&b)), "one checkout inode");
    assert!(f.fsck(false).await.is_clean());

    // The run's file is the tree's inode: written through the tree's name, so the test does
    // not depend on whether the run itself is mounted read-only.
    assert_eq!(ino(&run), ino(&f.tree(&a)));
    scribble(&f.tree(&a).join("etc/debian_version"));
    assert_eq!(read(&run, "etc/debian_version"), "X");
    assert_eq!(read(&f.tree(&b), "etc/debian_version"), "X");

    // Found, naming both images and the path.
    let report = f.fsck(false).await;
    assert!(!report.is_clean());
    for id in [&a, &b] {
        let message = problem_of(&report, id.as_str());
        assert!(
            message.contains("/etc/debian_version: 1 bytes where the image has 5"),
            "{message}"
        );
    }
    assert_eq!(report.render_caches.trees_checked, 2);
    assert_eq!(report.render_caches.damaged, 2);
    assert_eq!(report.render_caches.set_aside, 2);
    assert_eq!(
        report.render_caches.in_use, 1,
        "the hardlink run uses a's tree"
    );
    assert_eq!(report.render_caches.checkouts_unlinked, 1);

    // The next renders rebuild instead of serving the damaged trees.
    assert!(!f.tree(&a).exists() && !f.tree(&b).exists());
    for id in [&a, &b] {
        let target = f
            .render(id, &format!("after-{}", &id.hex()[..8]), Strategy::Copy)
            .await;
        assert_eq!(read(&target, "etc/debian_version"), ORIGINAL);
        f.store.release(&target).await.unwrap();
    }
    assert_ne!(ino(&f.tree(&a)), ino(&run), "a new checkout object");
    assert_eq!(ino(&f.tree(&a)), ino(&f.tree(&b)), "shared again");

    // Clean now; the tree the live run uses stays aside until it is released.
    let report = f.fsck(false).await;
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.render_caches.damaged_left, 2);
    let report = f.fsck(true).await;
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.render_caches.damaged_removed, 1, "b's: no run");
    assert_eq!(report.render_caches.damaged_left, 1, "a's: the run is live");
    f.store.release(&run).await.unwrap();
    let gc = f.store.gc(Observer::default()).await.unwrap();
    assert!(gc.renders_removed >= 1, "{gc:?}");
    assert_eq!(f.fsck(false).await.render_caches.damaged_left, 0);
}

#[tokio::test]
async fn repair_rebuilds_and_every_strategy_shows_the_original() {
    let mut f = Fixture::new().await;
    let a = f.image("a", json!({}), &script("a")).await;
    let b = f.image("b", json!({}), &script("b")).await;
    ensure_tree(&f.store, &a, privs()).await.unwrap();
    ensure_tree(&f.store, &b, privs()).await.unwrap();
    scribble(&f.tree(&a).join("etc/debian_version"));

    let report = f.fsck(true).await;
    assert_eq!(damaged(&report).len(), 2, "{:?}", report.problems);
    assert!(problem_of(&report, a.as_str()).ends_with("; rebuilt"));
    assert_eq!(report.render_caches.rebuilt, 2);
    assert_eq!(report.render_caches.damaged_removed, 2);
    // Rebuilt in place, with the original bytes.
    assert_eq!(read(&f.tree(&a), "etc/debian_version"), ORIGINAL);
    assert_eq!(read(&f.tree(&b), "etc/debian_version"), ORIGINAL);
    every_strategy_shows_the_original(&f, &a, "a").await;
    every_strategy_shows_the_original(&f, &b, "b").await;
    let report = f.fsck(false).await;
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.render_caches.damaged_left, 0);
}

#[tokio::test]
async fn a_byte_flipped_in_a_checkout_object_is_found_and_repaired() {
    let mut f = Fixture::new().await;
    let big = "head -c 300000 /dev/urandom > big && chmod 0444 big";
    let a = f
        .image("a", json!({}), &format!("{} && {big}", script("a")))
        .await;
    ensure_tree(&f.store, &a, privs()).await.unwrap();
    let victim = files_under(&f.paths().checkouts())
        .into_iter()
        .find(|p| std::fs::metadata(p).unwrap().len() == 300000)
        .expect("the checkout object of big");
    let mode = std::fs::metadata(&victim).unwrap().permissions();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[123_456] ^= 0x20;
    std::fs::write(&victim, &bytes).unwrap();
    std::fs::set_permissions(&victim, mode).unwrap();

    let report = f.fsck(false).await;
    let message = problem_of(&report, a.as_str());
    assert!(message.contains("/big: content hashes to"), "{message}");
    assert!(!victim.exists(), "its checkout name is unlinked");
    let report = f.fsck(true).await;
    assert!(report.is_clean(), "set aside: nothing left to find");
    assert_eq!(report.render_caches.damaged_removed, 1);
    let tree = ensure_tree(&f.store, &a, privs()).await.unwrap();
    assert!(!tree.reused);
    assert_ne!(std::fs::read(tree.path.join("big")).unwrap(), bytes);
    assert!(f.fsck(false).await.is_clean());

    // The same with --repair straight away.
    let victim = files_under(&f.paths().checkouts())
        .into_iter()
        .find(|p| std::fs::metadata(p).unwrap().len() == 300000)
        .unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut bytes = std::fs::read(&victim).unwrap();
    bytes[0] ^= 1;
    std::fs::write(&victim, &bytes).unwrap();
    let report = f.fsck(true).await;
    assert!(problem_of(&report, a.as_str()).contains("/big: content hashes to"));
    assert_eq!(report.render_caches.rebuilt, 1);
    assert_ne!(std::fs::read(f.tree(&a).join("big")).unwrap(), bytes);
    assert!(f.fsck(false).await.is_clean());
}

#[tokio::test]
async fn changed_metadata_on_tree_files_is_found() {
    let mut f = Fixture::new().await;
    let a = f.image("a", json!({}), &script("a")).await;
    ensure_tree(&f.store, &a, privs()).await.unwrap();
    let tree = f.tree(&a);
    std::fs::set_permissions(tree.join("own"), std::fs::Permissions::from_mode(0o600)).unwrap();
    sh(&tree, "touch -d '2001-02-03' bin/tool");
    sh(&tree, "setfattr -n user.evil -v 1 empty");
    if is_root() {
        sh(&tree, "chown 4321:4321 etc/debian_version");
    }
    let report = f.fsck(false).await;
    let message = problem_saying(
        &report,
        a.as_str(),
        &[
            "/own: mode 0600 where the image has 0644",
            // tool and tool-link are one inode: the first in the archive is checked.
            ": mtime 981158400.000000000 where the image has",
            "/empty: xattrs [user.evil=1] where the image has []",
        ],
    );
    if is_root() {
        assert!(
            message.contains("/etc/debian_version: owner 4321:4321 where the image has 0:0"),
            "{message}"
        );
    }
}

#[tokio::test]
async fn files_added_to_or_removed_from_a_tree_are_found() {
    let mut f = Fixture::new().await;
    let a = f.image("a", json!({}), &script("a")).await;
    ensure_tree(&f.store, &a, privs()).await.unwrap();
    let tree = f.tree(&a);
    std::fs::write(tree.join("etc/added"), "new").unwrap();
    std::fs::remove_file(tree.join("own")).unwrap();
    std::fs::remove_file(tree.join("bin/tool-link")).unwrap();
    std::fs::write(tree.join("bin/tool-link"), "tool").unwrap();
    let report = f.fsck(false).await;
    problem_saying(
        &report,
        a.as_str(),
        &[
            "/etc/added: is not in the image",
            "/own: missing",
            // Whichever GNU tar stored first, the other is a hardlink to it.
            ": is not the same file as /bin/tool",
        ],
    );
}

#[tokio::test]
async fn stacks_are_checked_against_their_layers() {
    let mut f = Fixture::new().await;
    let (base, app) = f.base_and_app().await;
    let stack = ensure_stack(&f.store, &app, privs()).await.unwrap();
    let key = stack
        .path
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    assert!(f.fsck(false).await.is_clean());

    std::fs::write(stack.path.join("etc/added"), "new").unwrap();
    std::fs::remove_file(stack.path.join("own")).unwrap();
    let report = f.fsck(false).await;
    assert_eq!(damaged(&report).len(), 1, "{:?}", report.problems);
    let message = problem_of(&report, &format!("stack {key} of {app}"));
    assert!(
        message.contains("/etc/added: is not in the layers")
            && message.contains("/own: missing (the layers have it)"),
        "{message}"
    );
    assert_eq!(report.render_caches.stacks_checked, 1);
    // Rebuilt at the next render, clean.
    let again = ensure_stack(&f.store, &app, privs()).await.unwrap();
    assert!(!again.reused);
    assert!(again.path.join("own").exists() && !again.path.join("etc/added").exists());
    assert!(f.fsck(false).await.is_clean());

    // A damaged layer tree makes its stacks damaged; repair rebuilds both.
    scribble(&f.tree(&base).join("etc/debian_version"));
    let report = f.fsck(true).await;
    assert_eq!(damaged(&report).len(), 2, "{:?}", report.problems);
    assert!(
        problem_of(&report, &format!("stack {key}")).contains("built from the damaged tree"),
        "{:?}",
        report.problems
    );
    assert_eq!(report.render_caches.rebuilt, 2);
    let target = f.render(&app, "app", Strategy::Copy).await;
    assert_eq!(read(&target, "etc/debian_version"), ORIGINAL);
    assert_eq!(read(&target, "etc/app"), "app");
    f.store.release(&target).await.unwrap();
    assert!(f.fsck(false).await.is_clean());
}

#[tokio::test]
async fn every_kind_of_member_checks_clean_and_a_byte_in_a_hole_is_found() {
    for format in ["posix", "gnu"] {
        let tmp = tempfile::tempdir().unwrap();
        let layout = make_layout(tmp.path(), true);
        let tar = tmp.path().join("image.tar");
        write_tar(
            &layout,
            WRITERS.iter().find(|w| w.name == format).unwrap(),
            &tar,
        );
        let store = Store::open(tmp.path().join("store")).await.unwrap();
        let id = store
            .import_file(&tar, ImportOptions::default(), Observer::default())
            .await
            .unwrap()
            .image_id;
        let tree = ensure_tree(&store, &id, privs()).await.unwrap();
        let report = store.fsck(false, Observer::default()).await.unwrap();
        assert!(report.is_clean(), "{format}: {:?}", report.problems);
        assert_eq!(report.render_caches.trees_checked, 1);

        // The sparse file (5 MiB, data at 2000000 and at the end): a byte written in one of
        // its holes (the size stays).
        let sparse = tree.path.join("sparse");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&sparse)
            .unwrap();
        std::os::unix::fs::FileExt::write_at(&file, b"!", 1_000_000).unwrap();
        drop(file);
        let report = store.fsck(false, Observer::default()).await.unwrap();
        let message = problem_of(&report, id.as_str());
        assert!(
            message.contains("/sparse: byte 1000000 is not zero where the image has a hole"),
            "{format}: {message}"
        );
    }
}

#[tokio::test]
async fn a_damaged_stack_under_a_live_overlay_run_stays_until_release() {
    if !is_root() {
        eprintln!("skipped: overlay needs root");
        return;
    }
    let mut f = Fixture::new().await;
    let (_base, app) = f.base_and_app().await;
    let run = f.render(&app, "overlay", Strategy::Overlay).await;
    let stack = ensure_stack(&f.store, &app, privs()).await.unwrap();
    assert!(stack.reused);
    // Damage in the stack's folder, outside its rootfs (the run's lower layer stays as it is).
    std::fs::write(stack.path.parent().unwrap().join("layers.json"), "{}").unwrap();

    let report = f.fsck(true).await;
    assert_eq!(damaged(&report).len(), 1, "{:?}", report.problems);
    let message = problem_of(&report, "stack ");
    assert!(
        message.contains("layers.json cannot be read") && message.contains("1 live run"),
        "{message}"
    );
    assert_eq!(report.render_caches.in_use, 1);
    assert_eq!(
        report.render_caches.damaged_left, 1,
        "kept for the live run"
    );
    // The run still reads its lower layer; a new render gets a rebuilt stack.
    assert_eq!(read(&run, "etc/app"), "app");
    assert_eq!(read(&run, "etc/debian_version"), ORIGINAL);
    let again = ensure_stack(&f.store, &app, privs()).await.unwrap();
    assert!(!again.reused);
    assert!(f.fsck(false).await.is_clean());
    // Released: gc removes the set-aside stack.
    f.store.release(&run).await.unwrap();
    f.store.gc(Observer::default()).await.unwrap();
    assert_eq!(f.fsck(false).await.render_caches.damaged_left, 0);
}
