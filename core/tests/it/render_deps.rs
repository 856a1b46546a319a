//! Dependencies and whitelists on real images (GNU tar, imported into a store): the ace.md
//! "Filesystem Setup" scenarios (`A -> [B, C], C -> [D]` gives B, D, C, A; the diamond gives
//! D, B, D, C, A), overwrites in order, directory metadata from the later layer, type changes,
//! whitelists on the image and on a dependency (never a sibling's), a symlink to a directory
//! replaced and never written through, matching by name, labels, imageID and size, cycle /
//! missing / mismatch / limit errors, and cached stacks reused.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::common::ImageFixture;
use crate::common::*;
use acikit::schema::ImageId;
use acikit::store::ImportOptions;
use acikit::testing::deps::{MAX_LAYERS, keeps, resolve_layers};
use acikit::testing::privileges::Privileges;
use acikit::testing::stack::{StackBuilt, ensure_stack, stack_key};
use acikit::testing::tree::ensure_tree;
use acikit::{Error, ErrorKind};
use serde_json::{Value, json};

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
    /// A folder outside the store.
    fn scratch(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::create_dir_all(&path).unwrap();
        path
    }

    /// Makes the image `example.com/<name>` version `version` whose manifest also holds
    /// `extra` (dependencies, pathWhitelist), with a rootfs made by the shell `script` run
    /// inside it; archives it with GNU tar (then `compress`, e.g. `gzip -c`, if given) and
    /// imports it. Returns its ID and the archive path.
    async fn image_with(
        &mut self,
        name: &str,
        version: &str,
        extra: Value,
        script: &str,
        compress: Option<&str>,
    ) -> (ImageId, PathBuf) {
        let manifest = json!({
            "acKind": "ImageManifest",
            "acVersion": "0.8.11",
            "name": format!("example.com/{name}"),
            "labels": [
                {"name": "version", "value": version},
                {"name": "os", "value": "linux"},
                {"name": "arch", "value": "amd64"},
            ],
        });
        let (layout, tar) = self.layout(manifest, extra, script);
        sh(
            &layout,
            &format!("tar --format=gnu -cf '{}' manifest rootfs", tar.display()),
        );
        let archive = match compress {
            Some(command) => {
                let out = tar.with_extension("tar.z");
                sh(
                    self.dir.path(),
                    &format!("{command} < '{}' > '{}'", tar.display(), out.display()),
                );
                out
            }
            None => tar,
        };
        let imported = self
            .store
            .import_file(
                &archive,
                ImportOptions::default(),
                acikit::progress::Observer::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("importing {name}: {e}"));
        (imported.image_id, archive)
    }

    async fn image(&mut self, name: &str, extra: Value, script: &str) -> ImageId {
        self.image_with(name, "1.0.0", extra, script, None).await.0
    }

    async fn stack(&self, id: &ImageId) -> StackBuilt {
        ensure_stack(&self.store, id, Privileges::detect())
            .await
            .unwrap_or_else(|e| panic!("stack of {id}: {e}"))
    }

    async fn names(&self, id: &ImageId) -> Vec<String> {
        resolve_layers(&self.store, id)
            .await
            .unwrap()
            .into_iter()
            .map(|l| l.name.trim_start_matches("example.com/").to_string())
            .collect()
    }

    async fn resolve_err(&self, id: &ImageId) -> Error {
        match resolve_layers(&self.store, id).await {
            Ok(layers) => panic!("resolved to {layers:?}"),
            Err(e) => e,
        }
    }
}

/// `{"dependencies": [{"imageName": "example.com/<name>"}, ...]}`.
fn deps(names: &[&str]) -> Value {
    json!({"dependencies": names.iter().map(|n| dep(n)).collect::<Vec<_>>()})
}

fn dep(name: &str) -> Value {
    json!({"imageName": format!("example.com/{name}")})
}

fn read(root: &Path, path: &str) -> String {
    std::fs::read_to_string(root.join(path))
        .unwrap_or_else(|e| panic!("reading {path} in {}: {e}", root.display()))
}

fn exists(root: &Path, path: &str) -> bool {
    std::fs::symlink_metadata(root.join(path)).is_ok()
}

/// Every path under `root` (relative, sorted; directories end with `/`).
fn listing(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        for entry in std::fs::read_dir(root.join(&rel)).unwrap() {
            let entry = entry.unwrap();
            let path = rel.join(entry.file_name());
            if entry.file_type().unwrap().is_dir() {
                out.push(format!("{}/", path.display()));
                pending.push(path);
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------------------
// Order of layers.

#[tokio::test]
async fn tree_order_is_b_d_c_a_and_later_layers_win() {
    let mut f = Fixture::new().await;
    // /order in every image, /x in B and D, /y in B, D and C, /z in D and A.
    f.image(
        "b",
        json!({}),
        "echo -n b > order; echo -n b > x; echo -n b > y; echo b > b-only",
    )
    .await;
    f.image(
        "d",
        json!({}),
        "echo -n d > order; echo -n d > x; echo -n d > y; echo -n d > z; echo d > d-only",
    )
    .await;
    f.image(
        "c",
        deps(&["d"]),
        "echo -n c > order; echo -n c > y; echo c > c-only",
    )
    .await;
    let a = f
        .image(
            "a",
            deps(&["b", "c"]),
            "echo -n a > order; echo -n a > z; echo a > a-only",
        )
        .await;

    assert_eq!(f.names(&a).await, ["b", "d", "c", "a"]);
    let layers = resolve_layers(&f.store, &a).await.unwrap();
    assert_eq!(
        layers[1].chain,
        ["example.com/a", "example.com/c", "example.com/d"]
    );
    assert!(layers.iter().all(|l| l.filters.is_empty()));

    let stack = f.stack(&a).await;
    let root = &stack.path;
    assert!(!stack.reused);
    assert_eq!(read(root, "order"), "a");
    assert_eq!(read(root, "x"), "d", "D comes after B");
    assert_eq!(read(root, "y"), "c", "C comes after D and B");
    assert_eq!(read(root, "z"), "a", "the image comes last");
    for only in ["a-only", "b-only", "c-only", "d-only"] {
        assert!(exists(root, only), "{only}");
    }
    assert!(root.ends_with("rootfs") && root.starts_with(f.store.dir().join("stacks")));
    assert!(stack.warnings.is_empty(), "{:?}", stack.warnings);
}

#[tokio::test]
async fn diamond_applies_d_once_per_path() {
    let mut f = Fixture::new().await;
    // /x in D and B: the second pass of D (through C) comes after B.
    f.image("d", json!({}), "echo -n d > x; echo -n d > order")
        .await;
    f.image("b", deps(&["d"]), "echo -n b > x; echo -n b > order")
        .await;
    f.image("c", deps(&["d"]), "echo -n c > order").await;
    let a = f.image("a", deps(&["b", "c"]), "echo a > a-only").await;

    assert_eq!(f.names(&a).await, ["d", "b", "d", "c", "a"]);
    let layers = resolve_layers(&f.store, &a).await.unwrap();
    assert_eq!(layers[0].image_id, layers[2].image_id);
    assert_eq!(layers[0].chain[1], "example.com/b");
    assert_eq!(layers[2].chain[1], "example.com/c");

    let stack = f.stack(&a).await;
    assert_eq!(read(&stack.path, "x"), "d", "D applied again after B");
    assert_eq!(read(&stack.path, "order"), "c");
}

#[tokio::test]
async fn each_pass_of_a_shared_dependency_has_its_own_path_whitelist() {
    let mut f = Fixture::new().await;
    // D through B: unfiltered; D through C: filtered by C's whitelist (which lists /c1 only).
    f.image("d", json!({}), "echo -n d > x; echo d > d2").await;
    f.image("b", deps(&["d"]), "echo -n b > x").await;
    let mut c_manifest = deps(&["d"]);
    c_manifest["pathWhitelist"] = json!(["/c1"]);
    f.image("c", c_manifest, "echo c > c1; echo c > c2").await;
    let a = f.image("a", deps(&["b", "c"]), "").await;

    let layers = resolve_layers(&f.store, &a).await.unwrap();
    let filters: Vec<_> = layers.iter().map(|l| l.filters.clone()).collect();
    let c_list = vec!["/c1".to_string()];
    assert_eq!(
        filters,
        [vec![], vec![], vec![c_list.clone()], vec![c_list], vec![]]
    );

    let stack = f.stack(&a).await;
    assert_eq!(
        read(&stack.path, "x"),
        "b",
        "the second pass of D is filtered by C's whitelist"
    );
    assert!(exists(&stack.path, "d2"), "the first pass of D is not");
    assert!(exists(&stack.path, "c1"));
    assert!(!exists(&stack.path, "c2"));
}

// ---------------------------------------------------------------------------------------
// Overwrites.

#[tokio::test]
async fn overwrites_change_types_and_take_directory_metadata_from_the_later_layer() {
    let mut f = Fixture::new().await;
    f.image(
        "b",
        json!({}),
        "mkdir -p t1/sub m; echo in > t1/sub/f; echo b > t2; echo b > m/from-b; \
         ln -s /nowhere t3; mkfifo t4; chmod 700 m; touch -d '2001-01-01 00:00:00Z' m; \
         mkdir ro; echo b > ro/b; chmod 555 ro",
    )
    .await;
    let a = f
        .image(
            "a",
            deps(&["b"]),
            "echo -n a > t1; mkdir t2; echo a > t2/inner; mkdir t3; echo -n a > t4; \
             mkdir -p m/new; chmod 751 m; touch -d '2010-06-07 08:09:10Z' m m/new; \
             mkdir ro; echo a > ro/a; chmod 555 ro",
        )
        .await;
    let stack = f.stack(&a).await;
    let root = &stack.path;
    assert_eq!(read(root, "t1"), "a", "a file replaces a directory tree");
    assert!(root.join("t2").symlink_metadata().unwrap().is_dir());
    assert_eq!(read(root, "t2/inner"), "a\n", "a directory replaces a file");
    assert!(root.join("t3").symlink_metadata().unwrap().is_dir());
    assert_eq!(read(root, "t4"), "a", "a file replaces a fifo");

    let m = root.join("m").symlink_metadata().unwrap();
    assert_eq!(read(root, "m/from-b"), "b\n", "directories merge");
    assert!(exists(root, "m/new"));
    assert_eq!(
        m.permissions().mode() & 0o7777,
        0o751,
        "mode of the later layer"
    );
    assert_eq!(
        m.mtime(),
        1_275_898_150,
        "mtime of the later layer, set last"
    );
    let new = root.join("m/new").symlink_metadata().unwrap();
    assert_eq!(new.mtime(), 1_275_898_150);
    // A read-only directory is filled by both layers, then made read-only.
    assert_eq!(read(root, "ro/a"), "a\n");
    assert_eq!(read(root, "ro/b"), "b\n");
    let ro = root.join("ro").symlink_metadata().unwrap();
    assert_eq!(ro.permissions().mode() & 0o7777, 0o555);
}

#[tokio::test]
async fn symlinks_fifos_and_devices_keep_their_metadata() {
    let mut f = Fixture::new().await;
    let device = if is_root() {
        "mknod null c 1 3; chown 7:8 null; touch -h -d '2003-01-01 00:00:00Z' null;"
    } else {
        ""
    };
    f.image(
        "b",
        json!({}),
        &format!(
            "{device} ln -s target link; touch -h -d '2002-01-01 00:00:00Z' link; \
             mkfifo fifo; chmod 640 fifo; touch -d '2004-01-01 00:00:00Z' fifo"
        ),
    )
    .await;
    let a = f.image("a", deps(&["b"]), "echo a > a").await;
    let stack = f.stack(&a).await;
    let root = &stack.path;
    let link = root.join("link").symlink_metadata().unwrap();
    assert!(link.file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(root.join("link")).unwrap(),
        Path::new("target")
    );
    assert_eq!(link.mtime(), 1_009_843_200);
    let fifo = root.join("fifo").symlink_metadata().unwrap();
    assert!(fifo.file_type().is_fifo());
    assert_eq!(fifo.permissions().mode() & 0o7777, 0o640);
    assert_eq!(fifo.mtime(), 1_072_915_200);
    if is_root() {
        let null = root.join("null").symlink_metadata().unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
        assert_eq!((null.uid(), null.gid()), (7, 8));
        assert_eq!(null.mtime(), 1_041_379_200);
    }
}

#[tokio::test]
async fn regular_files_are_hardlinks_to_the_layer_trees() {
    let mut f = Fixture::new().await;
    let b = f.image("b", json!({}), "mkdir etc; echo b > etc/b").await;
    let a = f.image("a", deps(&["b"]), "echo a > a").await;
    let stack = f.stack(&a).await;
    for (id, path) in [(&b, "etc/b"), (&a, "a")] {
        let tree = ensure_tree(&f.store, id, Privileges::detect())
            .await
            .unwrap();
        let in_tree = tree.path.join(path).metadata().unwrap();
        let in_stack = stack.path.join(path).metadata().unwrap();
        assert_eq!(
            (in_tree.dev(), in_tree.ino()),
            (in_stack.dev(), in_stack.ino()),
            "{path} is the same inode"
        );
    }
}

#[tokio::test]
async fn a_symlink_to_a_directory_is_replaced_never_followed() {
    let mut f = Fixture::new().await;
    let outside = f.scratch("outside");
    // B puts `etc` -> an absolute folder of the host and `lib` -> a relative one.
    f.image(
        "b",
        json!({}),
        &format!(
            "ln -s '{}' etc; mkdir -p usr/lib; ln -s usr/lib lib; echo keep > usr/lib/old",
            outside.display()
        ),
    )
    .await;
    // C has both as real directories with files.
    f.image(
        "c",
        json!({}),
        "mkdir etc lib; echo conf > etc/conf; mkdir etc/deep; echo x > etc/deep/x; \
         echo new > lib/new",
    )
    .await;
    let a = f.image("a", deps(&["b", "c"]), "").await;
    let stack = f.stack(&a).await;
    let root = &stack.path;
    for dir in ["etc", "lib"] {
        let meta = root.join(dir).symlink_metadata().unwrap();
        assert!(meta.is_dir() && !meta.file_type().is_symlink(), "{dir}");
    }
    assert_eq!(read(root, "etc/conf"), "conf\n");
    assert_eq!(read(root, "etc/deep/x"), "x\n");
    assert_eq!(read(root, "lib/new"), "new\n");
    assert!(
        !exists(root, "usr/lib/new"),
        "nothing written through the relative link"
    );
    assert_eq!(read(root, "usr/lib/old"), "keep\n");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "nothing written through the absolute link"
    );
}

// ---------------------------------------------------------------------------------------
// Whitelists.

#[tokio::test]
async fn the_image_whitelist_keeps_only_listed_paths_and_their_parents() {
    let mut f = Fixture::new().await;
    f.image(
        "b",
        json!({}),
        "mkdir -p etc opt/dir var; echo k > etc/keep; echo d > etc/drop; echo f > opt/dir/file; \
         echo o > other; echo v > var/v; ln -s etc/keep link",
    )
    .await;
    let mut manifest = deps(&["b"]);
    manifest["pathWhitelist"] = json!(["/etc/keep", "/opt/dir/", "/link", "/mine", "/absent"]);
    let a = f
        .image("a", manifest, "echo mine > mine; echo not > not-listed")
        .await;
    let stack = f.stack(&a).await;
    assert_eq!(
        listing(&stack.path),
        ["etc/", "etc/keep", "link", "mine", "opt/", "opt/dir/"]
    );
    assert_eq!(
        std::fs::read_link(stack.path.join("link")).unwrap(),
        Path::new("etc/keep")
    );
}

#[tokio::test]
async fn a_whitelist_alone_makes_a_filtered_stack() {
    let mut f = Fixture::new().await;
    let a = f
        .image(
            "a",
            json!({"pathWhitelist": ["/bin/sh"]}),
            "mkdir bin; echo sh > bin/sh; echo no > bin/bash",
        )
        .await;
    let stack = f.stack(&a).await;
    assert_eq!(listing(&stack.path), ["bin/", "bin/sh"]);
    let tree = ensure_tree(&f.store, &a, Privileges::detect())
        .await
        .unwrap();
    assert!(tree.path.join("bin/bash").exists(), "the tree is untouched");
    assert_ne!(tree.path, stack.path);
}

#[tokio::test]
async fn a_dependency_whitelist_filters_it_and_its_dependencies_never_a_sibling() {
    let mut f = Fixture::new().await;
    // A -> [B, C]; B -> [E]; B lists /b-only and /e-kept.
    f.image(
        "e",
        json!({}),
        "echo e > e-kept; echo e > e-dropped; echo e > shared",
    )
    .await;
    let mut b = deps(&["e"]);
    b["pathWhitelist"] = json!(["/b-only", "/e-kept"]);
    f.image("b", b, "echo b > b-only; echo b > b-other").await;
    f.image(
        "c",
        json!({}),
        "echo c > c1; mkdir c-dir; echo c > c-dir/c2; echo c > shared",
    )
    .await;
    let a = f.image("a", deps(&["b", "c"]), "echo a > a1").await;

    let layers = resolve_layers(&f.store, &a).await.unwrap();
    let b_list = vec!["/b-only".to_string(), "/e-kept".to_string()];
    let filters: Vec<_> = layers.iter().map(|l| l.filters.clone()).collect();
    assert_eq!(
        filters,
        [vec![b_list.clone()], vec![b_list], vec![], vec![]],
        "E and B filtered by B's list; C and A by nothing"
    );
    let stack = f.stack(&a).await;
    assert_eq!(
        listing(&stack.path),
        [
            "a1", "b-only", "c-dir/", "c-dir/c2", "c1", "e-kept", "shared"
        ]
    );
    assert_eq!(read(&stack.path, "shared"), "c\n");
}

#[test]
fn keeps_follows_every_non_empty_whitelist() {
    let list = |s: &[&str]| s.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let filters = [
        list(&["/etc/passwd", "/usr/"]),
        vec![],
        list(&["/etc/passwd"]),
    ];
    assert!(keeps(&filters, Path::new("etc/passwd"), false));
    assert!(keeps(&filters, Path::new("etc"), true));
    assert!(!keeps(&filters, Path::new("etc"), false));
    assert!(
        !keeps(&filters, Path::new("usr"), true),
        "not in the last list"
    );
    assert!(keeps(&[], Path::new("anything"), false));
}

// ---------------------------------------------------------------------------------------
// Matching.

#[tokio::test]
async fn matching_by_labels_newest_and_image_id() {
    let mut f = Fixture::new().await;
    let (v1, _) = f
        .image_with("b", "1.0.0", json!({}), "echo -n 1 > v", None)
        .await;
    let (v2, _) = f
        .image_with("b", "2.0.0", json!({}), "echo -n 2 > v", None)
        .await;
    let any = f.image("any", deps(&["b"]), "").await;
    let pinned_version = f
        .image(
            "pinned-version",
            json!({"dependencies": [{"imageName": "example.com/b",
                "labels": [{"name": "version", "value": "1.0.0"}, {"name": "os", "value": "linux"}]}]}),
            "",
        )
        .await;
    let pinned_id = f
        .image(
            "pinned-id",
            json!({"dependencies": [{"imageName": "example.com/b", "imageID": v1.as_str()}]}),
            "",
        )
        .await;
    let first = |layers: Vec<acikit::testing::deps::Layer>| layers[0].image_id.clone();
    assert_eq!(
        first(resolve_layers(&f.store, &any).await.unwrap()),
        v2,
        "newest"
    );
    assert_eq!(
        first(resolve_layers(&f.store, &pinned_version).await.unwrap()),
        v1
    );
    assert_eq!(
        first(resolve_layers(&f.store, &pinned_id).await.unwrap()),
        v1
    );
    assert_eq!(read(&f.stack(&pinned_id).await.path, "v"), "1");
    assert_eq!(read(&f.stack(&any).await.path, "v"), "2");
}

#[tokio::test]
async fn size_is_checked_against_the_archive_or_the_tar() {
    let mut f = Fixture::new().await;
    let (b, gz) = f
        .image_with("b", "1.0.0", json!({}), "echo b > b", Some("gzip -c"))
        .await;
    let info = f
        .store
        .resolve(&acikit::store::ImageQuery::Id(b.clone().into()))
        .await
        .unwrap();
    let gz_size = std::fs::metadata(&gz).unwrap().len();
    assert_eq!(info.archive_size, gz_size);
    assert_ne!(info.tar_size, gz_size);
    for (tag, size) in [("gz", gz_size), ("tar", info.tar_size)] {
        let a = f
            .image(
                &format!("ok-{tag}"),
                json!({"dependencies": [{"imageName": "example.com/b", "size": size}]}),
                "",
            )
            .await;
        assert_eq!(f.names(&a).await, ["b", &format!("ok-{tag}")]);
    }
    let bad = f
        .image(
            "bad",
            json!({"dependencies": [{"imageName": "example.com/b", "size": 12345}]}),
            "",
        )
        .await;
    let err = f.resolve_err(&bad).await;
    assert_eq!(err.kind(), ErrorKind::DependencyMismatch, "{err}");
    assert!(err.message().contains("12345"), "{err}");
    assert!(err.message().contains(&gz_size.to_string()), "{err}");
}

// ---------------------------------------------------------------------------------------
// Errors.

#[tokio::test]
async fn a_cycle_is_an_error_naming_the_chain() {
    let mut f = Fixture::new().await;
    let a = f.image("a", deps(&["b"]), "").await;
    f.image("b", deps(&["a"]), "").await;
    let err = f.resolve_err(&a).await;
    assert_eq!(err.kind(), ErrorKind::DependencyCycle, "{err}");
    assert!(
        err.message()
            .contains("example.com/a -> example.com/b -> example.com/a"),
        "{err}"
    );
    let err = ensure_stack(&f.store, &a, Privileges::detect())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DependencyCycle, "{err}");

    // A cycle below the root names where it was reached from.
    let top = f.image("top", deps(&["a"]), "").await;
    let err = f.resolve_err(&top).await;
    assert_eq!(err.kind(), ErrorKind::DependencyCycle, "{err}");
    assert!(
        err.message()
            .contains("example.com/a -> example.com/b -> example.com/a"),
        "{err}"
    );
    assert!(err.message().contains("example.com/top"), "{err}");

    let me = f.image("self", deps(&["self"]), "").await;
    let err = f.resolve_err(&me).await;
    assert_eq!(err.kind(), ErrorKind::DependencyCycle, "{err}");
    assert!(
        err.message()
            .contains("example.com/self -> example.com/self"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_dependency_names_the_chain_and_what_was_asked() {
    let mut f = Fixture::new().await;
    f.image(
        "b",
        json!({"dependencies": [{"imageName": "example.com/nope",
            "labels": [{"name": "version", "value": "9.9"}]}]}),
        "",
    )
    .await;
    let a = f.image("a", deps(&["b"]), "").await;
    let err = f.resolve_err(&a).await;
    assert_eq!(err.kind(), ErrorKind::MissingDependency, "{err}");
    for part in [
        "example.com/a -> example.com/b",
        "example.com/nope",
        "version=9.9",
    ] {
        assert!(err.message().contains(part), "{part} in {err}");
    }
    // Labels must match: b exists, but not for freebsd.
    let c = f
        .image(
            "c",
            json!({"dependencies": [{"imageName": "example.com/b",
                "labels": [{"name": "os", "value": "freebsd"}]}]}),
            "",
        )
        .await;
    let err = f.resolve_err(&c).await;
    assert_eq!(err.kind(), ErrorKind::MissingDependency, "{err}");
    assert!(err.message().contains("os=freebsd"), "{err}");
}

#[tokio::test]
async fn an_image_id_mismatch_names_both_ids() {
    let mut f = Fixture::new().await;
    let b = f.image("b", json!({}), "echo b > b").await;
    let other = f.image("other", json!({}), "echo o > o").await;
    let absent = format!("sha512-{}", "0".repeat(128));
    let a = f
        .image(
            "a",
            json!({"dependencies": [{"imageName": "example.com/b", "imageID": absent}]}),
            "",
        )
        .await;
    let err = f.resolve_err(&a).await;
    assert_eq!(err.kind(), ErrorKind::DependencyMismatch, "{err}");
    assert!(err.message().contains(&absent), "{err}");
    assert!(err.message().contains(b.as_str()), "{err}");

    // The ID of an image with another name.
    let a2 = f
        .image(
            "a2",
            json!({"dependencies": [{"imageName": "example.com/b", "imageID": other.as_str()}]}),
            "",
        )
        .await;
    let err = f.resolve_err(&a2).await;
    assert_eq!(err.kind(), ErrorKind::DependencyMismatch, "{err}");
    assert!(err.message().contains("example.com/other"), "{err}");

    // An absent ID and no image of that name at all: missing.
    let a3 = f
        .image(
            "a3",
            json!({"dependencies": [{"imageName": "example.com/zzz", "imageID": absent}]}),
            "",
        )
        .await;
    let err = f.resolve_err(&a3).await;
    assert_eq!(err.kind(), ErrorKind::MissingDependency, "{err}");
    assert!(err.message().contains(&absent), "{err}");
}

#[tokio::test]
async fn deep_diamonds_hit_the_layer_limit() {
    let mut f = Fixture::new().await;
    // Level i depends twice on level i + 1: 2^11 = 2048 paths to the bottom.
    f.image("level-11", json!({}), "").await;
    let mut top = None;
    for level in (0..11).rev() {
        let next = format!("level-{}", level + 1);
        let id = f
            .image(&format!("level-{level}"), deps(&[&next, &next]), "")
            .await;
        top = Some(id);
    }
    let err = f.resolve_err(&top.unwrap()).await;
    assert_eq!(err.kind(), ErrorKind::LimitExceeded, "{err}");
    assert!(err.message().contains(&MAX_LAYERS.to_string()), "{err}");
}

// ---------------------------------------------------------------------------------------
// Caching.

#[tokio::test]
async fn stacks_are_cached_and_plain_images_are_their_tree() {
    let mut f = Fixture::new().await;
    let b = f.image("b", json!({}), "echo b > b").await;
    let a = f.image("a", deps(&["b"]), "echo a > a").await;
    let first = f.stack(&a).await;
    assert!(!first.reused);
    let second = f.stack(&a).await;
    assert!(second.reused);
    assert_eq!(first.path, second.path);
    assert_eq!(
        first.path,
        f.store
            .dir()
            .join("stacks")
            .join(stack_key(&first.layers))
            .join("rootfs")
    );
    assert!(
        f.store
            .dir()
            .join("stacks")
            .join(stack_key(&first.layers))
            .join("layers.json")
            .is_file()
    );
    let tmp: Vec<_> = std::fs::read_dir(f.store.dir().join("tmp"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(tmp.is_empty(), "build folders left: {tmp:?}");

    // No dependencies, no whitelist: the stack is the exploded tree itself.
    let plain = f.stack(&b).await;
    let tree = ensure_tree(&f.store, &b, Privileges::detect())
        .await
        .unwrap();
    assert_eq!(plain.path, tree.path);
    assert_eq!(plain.layers.len(), 1);

    // Concurrent builds of one stack agree.
    let c = f.image("c", deps(&["b", "b"]), "echo c > c").await;
    let (x, y) = tokio::join!(
        ensure_stack(&f.store, &c, Privileges::detect()),
        ensure_stack(&f.store, &c, Privileges::detect())
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    assert_eq!(x.path, y.path);
    assert_eq!(read(&x.path, "c"), "c\n");
}
