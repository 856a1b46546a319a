//! The main job, end to end on this machine: write a small image with GNU tar and gzip,
//! validate it and compute its image ID in one pass, check the ID against `sha512sum`
//! of the uncompressed tar, import it into an exploded store, regenerate the exact tar
//! from the store, render a clean rootfs for a run, and watch a hostile archive being refused.
//!
//! Run with `cargo run --release --example quickstart`.

use std::path::Path;
use std::process::Command;

use acikit::Store;
use acikit::archive::{Limits, inspect_file};
use acikit::progress::Observer;
use acikit::render::RenderOptions;
use acikit::store::{ExportCompression, ImageQuery, ImportOptions};

const MANIFEST: &str = r#"{
  "acKind": "ImageManifest",
  "acVersion": "0.8.11",
  "name": "example.com/hello",
  "labels": [
    {"name": "version", "value": "1.0.0"},
    {"name": "os", "value": "linux"},
    {"name": "arch", "value": "amd64"}
  ],
  "app": {"exec": ["/bin/hello"], "user": "0", "group": "0"}
}
"#;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let layout = dir.path().join("layout");
    std::fs::create_dir_all(layout.join("rootfs/bin"))?;
    std::fs::write(layout.join("manifest"), MANIFEST)?;
    std::fs::write(layout.join("rootfs/bin/hello"), "#!/bin/sh\necho hello\n")?;

    // 1. An image archive, as publishers make them: GNU tar, then gzip.
    let aci = dir.path().join("hello.aci");
    shell(
        dir.path(),
        "tar --format=posix -C layout -cf hello.tar manifest rootfs && gzip -c hello.tar > hello.aci",
    )?;

    // 2. One streaming pass: decompress, read every member, check every rule, hash.
    let inspection = inspect_file(&aci, Limits::default(), Observer::default()).await?;
    println!("image     {}", inspection.image_id);
    println!("name      {}", inspection.manifest.name);
    println!(
        "archive   {} ({} -> {} bytes, {} entries)",
        inspection.compression,
        inspection.compressed_size,
        inspection.uncompressed_size,
        inspection.entries
    );

    // 3. The image ID is the sha512 of the uncompressed tar: check it with sha512sum.
    let sum = Command::new("sha512sum")
        .arg(dir.path().join("hello.tar"))
        .output()?;
    let expected = format!("sha512-{}", String::from_utf8_lossy(&sum.stdout[..128]));
    println!("sha512sum {expected}");
    assert_eq!(
        inspection.image_id.to_string(),
        expected,
        "image ID matches sha512sum"
    );

    // 4. Into an exploded, de-duplicated store; then the exact tar back out of it.
    let store = Store::open(dir.path().join("store")).await?;
    let imported = store
        .import_file(&aci, ImportOptions::default(), Observer::default())
        .await?;
    let found = store
        .resolve(&ImageQuery::parse("example.com/hello:1.0.0", &[])?)
        .await?;
    let exported = store
        .export_to(
            &found.image_id,
            dir.path().join("exported.tar"),
            ExportCompression::None,
            Observer::default(),
        )
        .await?;
    println!(
        "stored    {} ({} new bytes)",
        imported.image_id, imported.new_bytes
    );
    let identical = std::fs::read(dir.path().join("exported.tar"))?
        == std::fs::read(dir.path().join("hello.tar"))?;
    println!(
        "exported  {} ({} bytes, byte-identical: {identical})",
        exported.image_id, exported.tar_size
    );
    assert!(identical, "the store regenerates the exact tar");

    // 5. A clean rootfs for one run (overlay as root, else reflink or copy), then released.
    let run = dir.path().join("run");
    let rendered = store
        .render(
            &found.image_id,
            &run,
            RenderOptions::default().skip_unprivileged(true),
            Observer::default(),
        )
        .await?;
    println!(
        "rendered  {} with {} ({} layer)",
        rendered.target.display(),
        rendered.strategy.as_str(),
        rendered.layers.len()
    );
    assert!(run.join("bin/hello").exists());
    store.release(&run).await?;

    // 6. Hostile input is refused with a typed error naming the entry.
    std::fs::write(layout.join("extra"), "outside rootfs")?;
    shell(
        dir.path(),
        "tar -C layout -czf bad.aci manifest rootfs extra",
    )?;
    match inspect_file(
        dir.path().join("bad.aci"),
        Limits::default(),
        Observer::default(),
    )
    .await
    {
        Ok(_) => return Err("a hostile archive was accepted".into()),
        Err(err) => println!("refused   {err}"),
    }
    Ok(())
}

fn shell(dir: &Path, script: &str) -> std::io::Result<()> {
    let status = Command::new("sh")
        .arg("-ec")
        .arg(script)
        .current_dir(dir)
        .status()?;
    if !status.success() {
        return Err(std::io::Error::other(format!("`{script}` failed")));
    }
    Ok(())
}
