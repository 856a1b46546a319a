//! `acikit export IMAGE OUT --compression original`: a gzip image written by GNU gzip comes
//! back byte for byte, `stats` shows its original form and the bytes kept for it, and an
//! image imported without `--original` has none (a clear error, exit 1).

use std::process::Command;

use crate::common::{acikit_in, describe, manifest_for, text};

#[test]
fn export_original_gives_back_the_gzip_bytes_and_stats_show_them() {
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    std::fs::create_dir_all(layout.join("rootfs/etc")).unwrap();
    std::fs::write(
        layout.join("manifest"),
        manifest_for("example.com/original", "1.0.0"),
    )
    .unwrap();
    let text_file: String = (0..20_000)
        .map(|i| format!("line {i} of a config file\n"))
        .collect();
    std::fs::write(layout.join("rootfs/etc/config"), text_file).unwrap();
    let aci = dir.path().join("image.aci");
    let status = Command::new("sh")
        .arg("-ec")
        .arg(format!(
            "tar --format=gnu -cf - manifest rootfs | gzip -9 > '{}'",
            aci.display()
        ))
        .current_dir(&layout)
        .status()
        .unwrap();
    assert!(status.success());
    let store = dir.path().join("store");
    let aci_s = aci.to_str().unwrap();

    let out = acikit_in(&store, &["import", "--original", aci_s]);
    assert!(out.status.success(), "{}", describe("import", &out));
    assert!(
        text(&out.stdout).contains("original kept whole"),
        "{}",
        describe("import", &out)
    );
    // Given back as kept, then compacted by gc and given back from the correction record.
    for step in ["kept", "compacted"] {
        if step == "compacted" {
            let out = acikit_in(&store, &["gc"]);
            assert!(out.status.success(), "{}", describe("gc", &out));
            assert!(
                text(&out.stdout).contains("originals: 1 compacted"),
                "{}",
                describe("gc", &out)
            );
        }
        let exported = dir.path().join(format!("back-{step}.aci"));
        let out = acikit_in(
            &store,
            &[
                "export",
                "example.com/original",
                exported.to_str().unwrap(),
                "--compression",
                "original",
            ],
        );
        assert!(out.status.success(), "{step}: {}", describe("export", &out));
        assert!(
            std::fs::read(&exported).unwrap() == std::fs::read(&aci).unwrap(),
            "{step}: the original bytes"
        );
    }
    let out = acikit_in(&store, &["stats"]);
    assert!(out.status.success(), "{}", describe("stats", &out));
    let stdout = text(&out.stdout);
    assert!(
        stdout.contains("original forms         1 images"),
        "{stdout}"
    );
    assert!(stdout.contains("gzip 1"), "{stdout}");
    let out = acikit_in(&store, &["stats", "--json"]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["original_records"], 1);
    assert_eq!(json["original_images"][0]["original"]["form"], "gzip");
    let kept = json["original_kept_bytes"].as_u64().unwrap();
    assert!(
        kept > 0 && kept < std::fs::metadata(&aci).unwrap().len() / 10,
        "{json}"
    );

    // Recording off: no original to export.
    let other = dir.path().join("store-off");
    let out = acikit_in(&other, &["import", aci_s]);
    assert!(out.status.success(), "{}", describe("import", &out));
    let out = acikit_in(
        &other,
        &[
            "export",
            "example.com/original",
            dir.path().join("none.aci").to_str().unwrap(),
            "--compression",
            "original",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", describe("export", &out));
    assert!(
        text(&out.stderr).contains("no original form"),
        "{}",
        text(&out.stderr)
    );
    assert!(!dir.path().join("none.aci").exists());
}
