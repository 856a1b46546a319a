//! A name (and labels) that matches several images: `export` and `render` use the newest
//! import and say so on stderr, with the other matches and how to choose; `rm` refuses
//! with `ambiguous_image` and removes nothing; an image ID always names one image.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{acikit, text};

const MANIFEST: &str = r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/twin","labels":[{"name":"version","value":"1.0.0"},{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]}"#;

/// An image of MANIFEST with one file holding `content`, archived by GNU tar at
/// `dir/<tag>.tar`; returns the path and the image ID.
fn twin(dir: &Path, tag: &str, content: &str) -> (PathBuf, String) {
    let layout = dir.join(tag);
    std::fs::create_dir_all(layout.join("rootfs/etc")).unwrap();
    std::fs::write(layout.join("manifest"), MANIFEST).unwrap();
    std::fs::write(layout.join("rootfs/etc/which"), content).unwrap();
    let tar = dir.join(format!("{tag}.tar"));
    let status = Command::new("tar")
        .args(["--format=gnu", "-cf"])
        .arg(&tar)
        .args(["manifest", "rootfs"])
        .current_dir(&layout)
        .status()
        .unwrap();
    assert!(status.success());
    let sum = Command::new("sha512sum").arg(&tar).output().unwrap();
    let id = format!("sha512-{}", text(&sum.stdout[..128]));
    (tar, id)
}

#[test]
fn a_name_matching_two_images_is_reported_by_export_and_refused_by_rm() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store");
    let store = store.to_str().unwrap();
    let (older, older_id) = twin(dir.path(), "older", "first\n");
    let (newer, newer_id) = twin(dir.path(), "newer", "second\n");
    for tar in [&older, &newer] {
        let out = acikit(&["--store", store, "import", tar.to_str().unwrap()]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        // Import times are in milliseconds: keep the order certain.
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // export NAME: the newest, with a note naming both and how to choose.
    let exported = dir.path().join("out.tar");
    let export_twin = || {
        acikit(&[
            "--store",
            store,
            "export",
            "example.com/twin",
            exported.to_str().unwrap(),
        ])
    };
    let out = export_twin();
    let stderr = text(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("matches 2 images")
            && stderr.contains(&format!("using {newer_id}"))
            && stderr.contains(&older_id)
            && stderr.contains("image ID"),
        "{stderr}"
    );
    assert!(std::fs::read(&exported).unwrap() == std::fs::read(&newer).unwrap());
    assert!(!text(&out.stdout).contains("note:"), "notes go to stderr");

    // rm NAME: refused, nothing removed.
    let out = acikit(&["--store", store, "rm", "example.com/twin:1.0.0"]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("ambiguous_image")
            && stderr.contains(&older_id)
            && stderr.contains(&newer_id),
        "{stderr}"
    );
    let listed = text(&acikit(&["--store", store, "list", "--json"]).stdout);
    assert!(
        listed.contains(&older_id) && listed.contains(&newer_id),
        "{listed}"
    );

    // An ID names one image; then the name is no longer ambiguous.
    let out = acikit(&["--store", store, "rm", &newer_id]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let out = export_twin();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("note:"),
        "{}",
        text(&out.stderr)
    );
    assert!(std::fs::read(&exported).unwrap() == std::fs::read(&older).unwrap());
    let out = acikit(&["--store", store, "rm", "example.com/twin"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
}
