//! The store commands of the `acikit` binary as real processes: `import`, `list`, `export`,
//! `rm`, `gc`, `fsck`, `stats` (text exit codes and `--json` fields); two imports of the same
//! or of different archives at once; imports while `gc` runs in a loop over planted orphan
//! objects; and imports killed with SIGKILL at spread-out moments, each followed by a clean
//! `fsck`, then a retry that completes. Archives are written by GNU tar and gzip.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::common::{describe, manifest_for, pseudo_random, sh};
use acikit::store::ContentDigest;
use serde_json::Value;

// ---------------------------------------------------------------------------------------
// Helpers.

/// An image made here: its gzip archive, its uncompressed tar, the ID `sha512sum` gives,
/// and its distinct contents (manifest included).
struct Image {
    aci: PathBuf,
    tar: PathBuf,
    id: String,
    contents: Vec<Vec<u8>>,
}

impl Image {
    /// Bytes of its distinct content objects.
    fn content_bytes(&self) -> u64 {
        self.contents.iter().map(|c| c.len() as u64).sum()
    }

    fn digests(&self) -> HashSet<String> {
        self.contents
            .iter()
            .map(|c| ContentDigest::of(c).to_hex())
            .collect()
    }
}

/// Writes `manifest` and `files` (relative to `rootfs/`) in `dir/<tag>/`, archives them with
/// GNU tar as `dir/<tag>.tar` and gzip (`level`) as `dir/<tag>.aci`.
fn make_image(
    dir: &Path,
    tag: &str,
    manifest: &str,
    files: &[(String, Vec<u8>)],
    level: u32,
) -> Image {
    let layout = dir.join(tag);
    std::fs::create_dir_all(layout.join("rootfs")).unwrap();
    std::fs::write(layout.join("manifest"), manifest).unwrap();
    let mut seen = HashSet::new();
    let mut contents = vec![manifest.as_bytes().to_vec()];
    seen.insert(ContentDigest::of(manifest.as_bytes()));
    for (path, content) in files {
        let path = layout.join("rootfs").join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
        if !content.is_empty() && seen.insert(ContentDigest::of(content)) {
            contents.push(content.clone());
        }
    }
    sh(
        &layout,
        &format!(
            "tar --format=gnu -cf ../{tag}.tar manifest rootfs && gzip -{level} -c ../{tag}.tar > ../{tag}.aci"
        ),
    );
    let tar = dir.join(format!("{tag}.tar"));
    let sum = Command::new("sha512sum").arg(&tar).output().unwrap();
    assert!(sum.status.success());
    Image {
        aci: dir.join(format!("{tag}.aci")),
        tar,
        id: format!("sha512-{}", String::from_utf8_lossy(&sum.stdout[..128])),
        contents,
    }
}

/// `count` files of `size` pseudo-random bytes, seeds from `seed`.
fn random_files(prefix: &str, seed: u64, count: u64, size: usize) -> Vec<(String, Vec<u8>)> {
    (0..count)
        .map(|i| (format!("{prefix}/f{i:03}"), pseudo_random(seed + i, size)))
        .collect()
}

fn command(store: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_acikit"));
    cmd.arg("--store").arg(store).args(args);
    cmd
}

fn acikit(store: &Path, args: &[&str]) -> Output {
    command(store, args)
        .output()
        .expect("the acikit binary runs")
}

fn spawn(store: &Path, args: &[&str]) -> Child {
    command(store, args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the acikit binary starts")
}

/// Runs a command that must succeed with JSON on stdout.
fn json(store: &Path, args: &[&str]) -> Value {
    let out = acikit(store, args);
    parse_ok(&format!("acikit {args:?}"), &out)
}

fn parse_ok(what: &str, out: &Output) -> Value {
    assert!(out.status.success(), "{}", describe(what, out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", describe(what, out)))
}

fn str_field<'a>(value: &'a Value, field: &str) -> &'a str {
    value[field]
        .as_str()
        .unwrap_or_else(|| panic!("no string {field} in {value}"))
}

fn u64_field(value: &Value, field: &str) -> u64 {
    value[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no number {field} in {value}"))
}

/// The IDs `list --json` shows.
fn listed(store: &Path) -> Vec<String> {
    json(store, &["list", "--json"])
        .as_array()
        .expect("list --json is an array")
        .iter()
        .map(|i| str_field(i, "image_id").to_string())
        .collect()
}

/// Exports `id` and checks the result is byte-identical to the image's tar.
fn assert_exports(store: &Path, image: &Image, scratch: &Path) {
    let out = scratch.join(format!("export-{}.tar", &image.id[7..19]));
    let result = acikit(store, &["export", &image.id, out.to_str().unwrap()]);
    assert!(result.status.success(), "{}", describe("export", &result));
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&image.tar).unwrap(),
        "the export of {} differs from its tar",
        image.id
    );
    std::fs::remove_file(out).unwrap();
}

/// `fsck --json` must exit 0 with no problem; returns the report.
fn assert_fsck_clean(store: &Path, what: &str) -> Value {
    let out = acikit(store, &["fsck", "--json"]);
    let report = parse_ok(&format!("{what}: fsck"), &out);
    assert_eq!(
        report["problems"],
        Value::Array(vec![]),
        "{what}: fsck found problems: {report}"
    );
    report
}

/// Files under the store's `objects/`: (count, bytes, digests).
fn objects_on_disk(store: &Path) -> (usize, u64, HashSet<String>) {
    let mut count = 0;
    let mut bytes = 0;
    let mut digests = HashSet::new();
    let root = store.join("objects/sha256");
    for shard in std::fs::read_dir(&root).unwrap() {
        for file in std::fs::read_dir(shard.unwrap().path()).unwrap() {
            let file = file.unwrap();
            count += 1;
            bytes += file.metadata().unwrap().len();
            digests.insert(file.file_name().to_string_lossy().into_owned());
        }
    }
    (count, bytes, digests)
}

/// Staging folders in the store's `tmp/`.
fn staging_folders(store: &Path) -> Vec<String> {
    std::fs::read_dir(store.join("tmp"))
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("import-"))
                .collect()
        })
        .unwrap_or_default()
}

/// Puts `content` into the store as an object file no image references (like the
/// leftovers of a killed import, or an object an `rm` is about to remove).
/// The file is written in `scratch` (same file system) and renamed into place, since gc
/// removes any file in `objects/` that is not named by a digest.
fn plant_object(store: &Path, scratch: &Path, content: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    let hex = ContentDigest::of(content).to_hex();
    let shard = store.join("objects/sha256").join(&hex[..2]);
    std::fs::create_dir_all(&shard).unwrap();
    let path = shard.join(&hex);
    if path.exists() {
        return;
    }
    let tmp = scratch.join(format!("plant-{hex}"));
    std::fs::write(&tmp, content).unwrap();
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::rename(tmp, path).unwrap();
}

// ---------------------------------------------------------------------------------------
// The commands.

#[test]
fn store_commands_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    let shared = random_files("shared", 10, 6, 100 * 1024);
    let mut files_a = shared.clone();
    files_a.push(("etc/hostname".into(), b"one\n".to_vec()));
    let mut files_b = shared.clone();
    files_b.push(("etc/hostname".into(), b"two\n".to_vec()));
    files_b.push(("extra".into(), pseudo_random(99, 50_000)));
    let a = make_image(
        d,
        "a",
        &manifest_for("example.com/app", "1.0.0"),
        &files_a,
        6,
    );
    let b = make_image(
        d,
        "b",
        &manifest_for("example.com/app", "2.0.0"),
        &files_b,
        6,
    );

    // import --json: one result per file; then a (again) and b in one call.
    let first = json(&store, &["import", "--json", a.aci.to_str().unwrap()]);
    assert_eq!(first.as_array().unwrap().len(), 1);
    // Import times are in milliseconds: keep them apart for "newest import" lookups.
    std::thread::sleep(Duration::from_millis(10));
    let second = json(
        &store,
        &[
            "import",
            "--json",
            a.aci.to_str().unwrap(),
            b.aci.to_str().unwrap(),
        ],
    );
    let second = second.as_array().unwrap();
    assert_eq!(second.len(), 2);
    let results = [&first[0], &second[1]];
    for (result, image) in results.iter().zip([&a, &b]) {
        assert_eq!(result["valid"], true, "{result}");
        assert_eq!(str_field(result, "file"), image.aci.to_str().unwrap());
        let imported = &result["imported"];
        assert_eq!(str_field(imported, "image_id"), image.id);
        assert_eq!(str_field(imported, "name"), "example.com/app");
        assert_eq!(imported["already_present"], false);
        assert_eq!(
            u64_field(imported, "tar_size"),
            std::fs::metadata(&image.tar).unwrap().len()
        );
        assert_eq!(
            u64_field(imported, "archive_size"),
            std::fs::metadata(&image.aci).unwrap().len()
        );
        assert!(u64_field(imported, "entries") >= 10);
        assert!(u64_field(imported, "recipe_size") > 0);
    }
    assert_eq!(
        u64_field(&results[0]["imported"], "new_bytes"),
        a.content_bytes()
    );
    let b_new: u64 = b
        .contents
        .iter()
        .filter(|c| !a.digests().contains(&ContentDigest::of(c).to_hex()))
        .map(|c| c.len() as u64)
        .sum();
    assert_eq!(u64_field(&results[1]["imported"], "new_bytes"), b_new);
    let again = &second[0]["imported"];
    assert_eq!(str_field(again, "image_id"), a.id);
    assert_eq!(again["already_present"], true, "{again}");
    assert_eq!(u64_field(again, "new_bytes"), 0);
    assert_eq!(u64_field(again, "new_objects"), 0);

    // Importing again: already present, exit 0, plain text names it.
    let again = acikit(&store, &["import", a.aci.to_str().unwrap()]);
    assert!(again.status.success(), "{}", describe("re-import", &again));
    let text = String::from_utf8_lossy(&again.stdout);
    assert!(
        text.contains("already present") && text.contains(&a.id),
        "{text}"
    );

    // list --json: both, newest first, with their labels and sizes.
    let list = json(&store, &["list", "--json"]);
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 2, "{list:?}");
    let ids: Vec<&str> = list.iter().map(|i| str_field(i, "image_id")).collect();
    assert_eq!(ids, [b.id.as_str(), a.id.as_str()], "newest import first");
    for (item, version, image) in [(&list[0], "2.0.0", &b), (&list[1], "1.0.0", &a)] {
        assert_eq!(str_field(item, "name"), "example.com/app");
        let labels = item["labels"].as_array().unwrap();
        assert!(
            labels.contains(&serde_json::json!({"name": "version", "value": version})),
            "{item}"
        );
        assert!(
            labels.contains(&serde_json::json!({"name": "os", "value": "linux"})),
            "{item}"
        );
        assert_eq!(
            u64_field(item, "tar_size"),
            std::fs::metadata(&image.tar).unwrap().len()
        );
        assert!(u64_field(item, "imported_at_ms") > 1_600_000_000_000);
        assert_eq!(
            str_field(item, "origin"),
            image.aci.to_str().unwrap(),
            "{item}"
        );
    }
    // The text list shows name, version and a short ID.
    let text = acikit(&store, &["list"]);
    assert!(text.status.success());
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("example.com/app") && text.contains("2.0.0") && text.contains(&a.id[..24]),
        "{text}"
    );

    // stats --json: content shared once.
    let stats = json(&store, &["stats", "--json"]);
    assert_eq!(u64_field(&stats, "images"), 2);
    assert_eq!(
        u64_field(&stats, "object_bytes"),
        a.content_bytes() + b_new,
        "{stats}"
    );
    assert_eq!(
        u64_field(&stats, "referenced_content_bytes"),
        a.content_bytes() + b.content_bytes()
    );
    assert!(stats["dedup_ratio"].as_f64().unwrap() > 1.5, "{stats}");
    assert!(u64_field(&stats, "disk_bytes") >= u64_field(&stats, "object_bytes"));

    // export by name:version, by name (newest), by ID prefix with gzip, with --json.
    let out = d.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let path = |name: &str| out.join(name).to_str().unwrap().to_string();
    for (query, image) in [
        ("example.com/app:1.0.0", &a),
        ("example.com/app", &b),
        (&a.id[..20], &a),
    ] {
        let result = acikit(&store, &["export", query, &path("x.tar")]);
        assert!(result.status.success(), "{}", describe(query, &result));
        assert!(
            std::fs::read(out.join("x.tar")).unwrap() == std::fs::read(&image.tar).unwrap(),
            "{query}"
        );
    }
    let exported = json(
        &store,
        &[
            "export",
            "example.com/app",
            "--label",
            "os=linux",
            "--compression",
            "gzip",
            "--json",
            &path("b.tar.gz"),
        ],
    );
    assert_eq!(str_field(&exported, "image_id"), b.id);
    assert_eq!(
        u64_field(&exported, "tar_size"),
        std::fs::metadata(&b.tar).unwrap().len()
    );
    assert_eq!(
        u64_field(&exported, "written"),
        std::fs::metadata(out.join("b.tar.gz")).unwrap().len()
    );
    sh(
        &out,
        &format!("gzip -dc b.tar.gz | cmp - '{}'", b.tar.display()),
    );
    let zst = acikit(
        &store,
        &["export", &b.id, "--compression", "zstd", &path("b.tar.zst")],
    );
    assert!(zst.status.success(), "{}", describe("zstd export", &zst));
    sh(
        &out,
        &format!("zstd -q -dc b.tar.zst | cmp - '{}'", b.tar.display()),
    );

    // Errors: unknown image, ambiguous prefix, wrong label: exit 1, kind on stderr, no file.
    for (query, kind) in [
        ("example.com/nothing", "not_found"),
        ("sha512-", "invalid_value"),
        ("example.com/app:9.9.9", "not_found"),
    ] {
        let result = acikit(&store, &["export", query, &path("none.tar")]);
        assert_eq!(
            result.status.code(),
            Some(1),
            "{}",
            describe(query, &result)
        );
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(stderr.contains(kind), "{query}: {stderr}");
        assert!(!out.join("none.tar").exists());
    }
    let both = if a.id[7..8] == b.id[7..8] {
        format!("sha512-{}", &a.id[7..8])
    } else {
        String::new()
    };
    if !both.is_empty() {
        let result = acikit(&store, &["export", &both, &path("none.tar")]);
        assert_eq!(result.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&result.stderr);
        assert!(
            stderr.contains("ambiguous_image") && stderr.contains(&a.id) && stderr.contains(&b.id),
            "{stderr}"
        );
    }

    // fsck --json: clean.
    let report = assert_fsck_clean(&store, "two images");
    assert_eq!(u64_field(&report, "images_checked"), 2);
    assert_eq!(
        u64_field(&report, "objects_checked") as usize,
        a.digests().union(&b.digests()).count()
    );
    assert_eq!(u64_field(&report, "unreferenced_objects"), 0);

    // rm --json by name:version; b stays whole.
    let removed = json(&store, &["rm", "--json", "example.com/app:1.0.0"]);
    assert_eq!(removed["removed"], serde_json::json!([a.id]));
    assert_eq!(listed(&store), std::slice::from_ref(&b.id));
    let (count, bytes, digests) = objects_on_disk(&store);
    assert_eq!(digests, b.digests(), "only b's objects are left");
    assert_eq!(
        (count as u64, bytes),
        (b.contents.len() as u64, b.content_bytes())
    );
    let rm_again = acikit(&store, &["rm", &a.id]);
    assert_eq!(rm_again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&rm_again.stderr).contains("not_found"));

    // gc --json: nothing left to collect after rm.
    let gc = json(&store, &["gc", "--json"]);
    for field in [
        "objects_removed",
        "bytes_removed",
        "recipes_removed",
        "staging_removed",
    ] {
        assert_eq!(u64_field(&gc, field), 0, "{gc}");
    }
    assert_exports(&store, &b, d);
    let stats = json(&store, &["stats", "--json"]);
    assert_eq!(u64_field(&stats, "images"), 1);
    assert_eq!(u64_field(&stats, "object_bytes"), b.content_bytes());

    // A damaged object: fsck exits 1 and names the image; --repair drops it and exits 0.
    let extra = &files_b.last().unwrap().1;
    let hex = ContentDigest::of(extra).to_hex();
    let object = store.join("objects/sha256").join(&hex[..2]).join(&hex);
    let mut bytes = std::fs::read(&object).unwrap();
    bytes[100] ^= 1;
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&object, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    std::fs::write(&object, bytes).unwrap();
    let fsck = acikit(&store, &["fsck", "--json"]);
    assert_eq!(fsck.status.code(), Some(1), "{}", describe("fsck", &fsck));
    let report: Value = serde_json::from_slice(&fsck.stdout).unwrap();
    let kinds: HashSet<(&str, &str)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (str_field(p, "kind"), str_field(p, "subject")))
        .collect();
    assert!(kinds.contains(&("broken_image", b.id.as_str())), "{report}");
    assert!(
        kinds
            .iter()
            .any(|(k, s)| *k == "corrupt_object" && s.contains(&hex)),
        "{report}"
    );
    let export = acikit(&store, &["export", &b.id, &path("broken.tar")]);
    assert_eq!(export.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&export.stderr).contains("corrupt_store"));
    let left: Vec<_> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().contains("broken"))
        .collect();
    assert!(left.is_empty(), "a failed export left {left:?}");
    let repaired = json(&store, &["fsck", "--repair", "--json"]);
    assert_eq!(repaired["images_dropped"], serde_json::json!([b.id]));
    assert!(listed(&store).is_empty());
    assert_fsck_clean(&store, "after repair");
    json(&store, &["gc", "--json"]);
    let (count, _, _) = objects_on_disk(&store);
    assert_eq!(count, 0, "gc removed the dropped image's objects");
}

// ---------------------------------------------------------------------------------------
// Concurrency.

/// Waits for an `import --json` process; returns its one result's `imported` object.
fn wait_import(child: Child, what: &str) -> Value {
    let out = child.wait_with_output().unwrap();
    let results = parse_ok(what, &out);
    assert_eq!(results[0]["valid"], true, "{what}: {results}");
    results[0]["imported"].clone()
}

#[test]
fn two_imports_of_the_same_archive_at_once_store_one_copy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 16 MiB, with a repeated file: long enough for the two imports to overlap.
    let mut files = random_files("data", 1000, 64, 256 * 1024);
    files.push(("copy".into(), files[0].1.clone()));
    let image = make_image(
        d,
        "same",
        &manifest_for("example.com/same", "1.0.0"),
        &files,
        1,
    );
    let aci = image.aci.to_str().unwrap();
    for round in 0..3 {
        let store = d.join(format!("store-{round}"));
        // Round 0 starts from a store that does not exist yet: both create it.
        if round > 0 {
            acikit(&store, &["list"]);
        }
        let first = spawn(&store, &["import", "--json", aci]);
        let second = spawn(&store, &["import", "--json", aci]);
        let results = [
            wait_import(first, &format!("round {round}: first")),
            wait_import(second, &format!("round {round}: second")),
        ];
        for r in &results {
            assert_eq!(str_field(r, "image_id"), image.id);
        }
        let fresh = results
            .iter()
            .filter(|r| r["already_present"] == false)
            .count();
        assert_eq!(fresh, 1, "exactly one import added the image: {results:?}");
        eprintln!(
            "round {round}: new_bytes {} / {}",
            results[0]["new_bytes"], results[1]["new_bytes"]
        );

        assert_eq!(
            listed(&store),
            std::slice::from_ref(&image.id),
            "round {round}"
        );
        let stats = json(&store, &["stats", "--json"]);
        assert_eq!(u64_field(&stats, "images"), 1);
        assert_eq!(
            u64_field(&stats, "object_bytes"),
            image.content_bytes(),
            "round {round}: objects counted once: {stats}"
        );
        let (count, bytes, digests) = objects_on_disk(&store);
        assert_eq!(digests, image.digests(), "round {round}");
        assert_eq!(
            (count, bytes),
            (image.contents.len(), image.content_bytes()),
            "round {round}: one copy on disk"
        );
        assert!(staging_folders(&store).is_empty(), "round {round}");
        let report = assert_fsck_clean(&store, &format!("round {round}"));
        assert_eq!(u64_field(&report, "unreferenced_objects"), 0);
        assert_exports(&store, &image, d);
        let recipes = std::fs::read_dir(store.join("recipes/sha512"))
            .unwrap()
            .flat_map(|s| std::fs::read_dir(s.unwrap().path()).unwrap())
            .count();
        assert_eq!(recipes, 1, "round {round}: one recipe");
    }
}

#[test]
fn two_different_archives_at_once_are_both_stored() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let shared = random_files("shared", 2000, 24, 256 * 1024);
    let mut files_x = shared.clone();
    files_x.extend(random_files("own", 3000, 24, 256 * 1024));
    let mut files_y = shared;
    files_y.extend(random_files("own", 4000, 24, 256 * 1024));
    let x = make_image(d, "x", &manifest_for("example.com/x", "1.0.0"), &files_x, 1);
    let y = make_image(d, "y", &manifest_for("example.com/y", "1.0.0"), &files_y, 1);
    let store = d.join("store");
    let first = spawn(&store, &["import", "--json", x.aci.to_str().unwrap()]);
    let second = spawn(&store, &["import", "--json", y.aci.to_str().unwrap()]);
    let rx = wait_import(first, "x");
    let ry = wait_import(second, "y");
    assert_eq!(str_field(&rx, "image_id"), x.id);
    assert_eq!(str_field(&ry, "image_id"), y.id);
    assert_eq!(rx["already_present"], false);
    assert_eq!(ry["already_present"], false);

    let mut ids = listed(&store);
    ids.sort();
    let mut want = vec![x.id.clone(), y.id.clone()];
    want.sort();
    assert_eq!(ids, want);
    let union: HashSet<String> = x.digests().union(&y.digests()).cloned().collect();
    let (count, _, digests) = objects_on_disk(&store);
    assert_eq!(digests, union);
    assert_eq!(count, union.len(), "shared content stored once");
    let stats = json(&store, &["stats", "--json"]);
    let union_bytes: u64 = x
        .contents
        .iter()
        .chain(&y.contents)
        .map(|c| (ContentDigest::of(c), c.len() as u64))
        .collect::<std::collections::HashMap<_, _>>()
        .values()
        .sum();
    assert_eq!(u64_field(&stats, "object_bytes"), union_bytes);
    assert!(staging_folders(&store).is_empty());
    assert_fsck_clean(&store, "two images imported at once");
    assert_exports(&store, &x, d);
    assert_exports(&store, &y, d);
}

#[test]
fn imports_succeed_while_gc_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = d.join("store");
    // Three versions, each changing 5 of 40 files of the one before.
    let mut files = random_files("data", 5000, 40, 128 * 1024);
    let mut images = Vec::new();
    for v in 1..=3u64 {
        if v > 1 {
            for i in 0..5 {
                let at = (v as usize * 7 + i * 3) % files.len();
                files[at].1 = pseudo_random(6000 + v * 100 + i as u64, 128 * 1024);
            }
        }
        images.push(make_image(
            d,
            &format!("v{v}"),
            &manifest_for("example.com/gc", &format!("{v}.0.0")),
            &files,
            1,
        ));
    }
    acikit(&store, &["list"]);

    let done = Arc::new(AtomicBool::new(false));
    let collector = {
        let (store, done) = (store.clone(), done.clone());
        std::thread::spawn(move || {
            let (mut runs, mut removed, mut failures) = (0, 0, Vec::new());
            while runs < 10 || !done.load(Ordering::SeqCst) {
                let out = acikit(&store, &["gc", "--json"]);
                match serde_json::from_slice::<Value>(&out.stdout) {
                    Ok(gc) if out.status.success() => removed += u64_field(&gc, "objects_removed"),
                    _ => failures.push(describe("gc", &out)),
                }
                runs += 1;
            }
            (runs, removed, failures)
        })
    };
    let mut failures = Vec::new();
    // Three rounds of three imports; the first two end by removing the images again.
    for round in 0..3 {
        for image in &images {
            // The objects this import needs are already there, unreferenced: gc removes
            // them while the import pins and restores them.
            for content in &image.contents {
                plant_object(&store, d, content);
            }
            let out = acikit(&store, &["import", "--json", image.aci.to_str().unwrap()]);
            let imported = serde_json::from_slice::<Value>(&out.stdout)
                .ok()
                .and_then(|r| r[0]["imported"]["image_id"].as_str().map(str::to_string));
            if !out.status.success() || imported.as_deref() != Some(image.id.as_str()) {
                failures.push(describe(
                    &format!("round {round}: import {}", image.aci.display()),
                    &out,
                ));
            }
        }
        if round < 2 {
            let mut args = vec!["rm"];
            args.extend(images.iter().map(|i| i.id.as_str()));
            let out = acikit(&store, &args);
            if !out.status.success() {
                failures.push(describe(&format!("round {round}: rm"), &out));
            }
        }
    }
    done.store(true, Ordering::SeqCst);
    let (runs, removed, gc_failures) = collector.join().unwrap();
    eprintln!("{runs} gc runs removed {removed} planted objects during the imports");
    assert!(failures.is_empty(), "imports failed: {failures:#?}");
    assert!(gc_failures.is_empty(), "gc failed: {gc_failures:#?}");

    let mut ids = listed(&store);
    ids.sort();
    let mut want: Vec<String> = images.iter().map(|i| i.id.clone()).collect();
    want.sort();
    assert_eq!(ids, want);
    let report = assert_fsck_clean(&store, "after imports during gc");
    assert_eq!(u64_field(&report, "images_checked"), 3);
    assert_eq!(
        u64_field(&report, "unreferenced_objects"),
        0,
        "every planted object is used"
    );
    for image in &images {
        assert_exports(&store, image, d);
    }
    let union: HashSet<String> = images.iter().flat_map(|i| i.digests()).collect();
    let (count, _, digests) = objects_on_disk(&store);
    assert_eq!(digests, union);
    assert_eq!(count, union.len());
    assert!(staging_folders(&store).is_empty());
}

// ---------------------------------------------------------------------------------------
// Crashes.

/// When to SIGKILL an import.
#[derive(Debug, Clone, Copy)]
enum KillAt {
    /// This long after the process starts.
    After(Duration),
    /// Once its staging folder holds this many staged files (objects, recipe).
    Staged(usize),
    /// Once the recipe has left the staging folder (the commit has started).
    RecipeMoved,
    /// Once the recipe has left and at most this many objects are still staged
    /// (objects are being renamed into the store, or all are and the index commits).
    Published(usize),
    /// Once the staging folder is gone (after the index commit).
    StagingGone,
}

/// The staging folder's files other than its lock: (count, whether the recipe is there).
fn staging_state(store: &Path) -> Option<(usize, bool)> {
    let name = staging_folders(store).into_iter().next()?;
    let entries = std::fs::read_dir(store.join("tmp").join(name)).ok()?;
    let names: Vec<String> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != ".lock")
        .collect();
    let recipe = names.iter().any(|n| n == "recipe");
    Some((names.len(), recipe))
}

/// Watches the import in `child` and returns once `at` is reached (true), or once the
/// process has exited by itself (false).
fn wait_for(child: &mut Child, store: &Path, at: KillAt) -> bool {
    let started = Instant::now();
    let (mut seen_staging, mut seen_recipe) = (false, false);
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let state = staging_state(store);
        if let Some((_, recipe)) = state {
            seen_staging = true;
            seen_recipe |= recipe;
        }
        let reached = match (at, state) {
            (KillAt::After(delay), _) => started.elapsed() >= delay,
            (KillAt::Staged(n), Some((count, _))) => count >= n,
            (KillAt::RecipeMoved, Some((_, recipe))) => seen_recipe && !recipe,
            (KillAt::Published(n), Some((count, recipe))) => seen_recipe && !recipe && count <= n,
            (KillAt::StagingGone, None) => seen_staging,
            _ => false,
        };
        if reached {
            return true;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the import hangs"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

#[test]
fn killed_imports_leave_a_clean_store_and_a_retry_completes() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // ~50 MB: 120 random files of 256 KiB and 80 repeats of them.
    let mut files = random_files("data", 7000, 120, 256 * 1024);
    for i in 0..80 {
        let content = files[(i * 7) % 120].1.clone();
        files.push((format!("copies/c{i:03}"), content));
    }
    let image = make_image(
        d,
        "big",
        &manifest_for("example.com/big", "1.0.0"),
        &files,
        1,
    );
    let aci = image.aci.to_str().unwrap().to_string();
    let objects = image.contents.len();

    // How long one whole import takes here and now.
    let probe = d.join("probe");
    let started = Instant::now();
    let out = acikit(&probe, &["import", &aci]);
    let full = started.elapsed();
    assert!(out.status.success(), "{}", describe("probe import", &out));
    std::fs::remove_dir_all(&probe).unwrap();
    eprintln!("one import takes {full:?}");

    // Kills at moments spread over the import, and at each phase of it.
    let mut plan: Vec<KillAt> = [0.0, 0.2, 0.4, 0.6, 0.8]
        .iter()
        .map(|&f| KillAt::After(full.mul_f64(f)))
        .collect();
    plan.extend([1, objects / 4, objects / 2, objects - 10].map(KillAt::Staged));
    plan.extend([KillAt::RecipeMoved; 3]);
    plan.extend([objects / 2, objects / 8, 1, 0, 0].map(KillAt::Published));
    plan.extend([KillAt::StagingGone; 3]);

    let store = d.join("store");
    acikit(&store, &["list"]);
    let (mut before, mut after, mut finished, mut unreferenced) = (0, 0, 0, 0u64);
    for (i, &at) in plan.iter().enumerate() {
        let mut child = spawn(&store, &["import", &aci]);
        let reached = wait_for(&mut child, &store, at);
        let _ = child.kill();
        let status = child.wait().unwrap();
        let killed = status.signal() == Some(9);
        assert!(
            killed || status.success(),
            "{i} ({at:?}): import exited with {status}"
        );
        let visible = listed(&store).contains(&image.id);
        let outcome = match (killed, visible) {
            (true, false) => {
                before += 1;
                "killed before the image was visible"
            }
            (true, true) => {
                after += 1;
                "killed after the image was visible"
            }
            (false, _) => {
                assert!(visible, "{i} ({at:?}): a finished import is visible");
                finished += 1;
                "finished first"
            }
        };
        let report = assert_fsck_clean(&store, &format!("{i} ({at:?}, {outcome})"));
        let left = u64_field(&report, "unreferenced_objects");
        unreferenced += left;
        eprintln!("{i:2} {at:?} (reached: {reached}): {outcome}; {left} unreferenced objects");
        assert!(
            staging_folders(&store).is_empty(),
            "{i} ({at:?}): the next open removes the killed import's staging folder"
        );
        if visible {
            assert_eq!(u64_field(&report, "images_checked"), 1);
            // The next kill starts from a store without the image.
            json(&store, &["rm", "--json", &image.id]);
        }
    }
    eprintln!(
        "{} kills: {before} before the image was visible, {after} after, {finished} imports \
         finished first; fsck saw {unreferenced} unreferenced objects in all",
        plan.len()
    );
    assert!(
        before >= plan.len() / 2,
        "most kills landed during the import"
    );

    // A retry completes and the image exports byte for byte.
    let results = json(&store, &["import", "--json", &aci]);
    assert_eq!(str_field(&results[0]["imported"], "image_id"), image.id);
    assert_exports(&store, &image, d);
    let gc = json(&store, &["gc", "--json"]);
    eprintln!("gc after the retry: {gc}");
    assert!(staging_folders(&store).is_empty());
    let report = assert_fsck_clean(&store, "after the retry and gc");
    assert_eq!(u64_field(&report, "unreferenced_objects"), 0);
    assert_eq!(u64_field(&report, "stale_staging"), 0);
    let (_, _, digests) = objects_on_disk(&store);
    assert_eq!(digests, image.digests());
}
