//! Ctrl-C tests of the long commands: a real `acikit` process and a real SIGINT, sent while
//! the command's work folder is seen in the store's `tmp/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use super::sh;

/// The names in `dir` starting with `prefix` (none if `dir` is missing).
pub fn named(dir: &Path, prefix: &str) -> Vec<String> {
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

/// Writes the layout of `example.test/many` in `dir/layout` (its rootfs made by
/// `rootfs_script`) and archives it with `archive` (a shell command run in the layout that
/// writes `../many.aci` from `manifest` and `rootfs`); returns the archive's path.
pub fn many_image(dir: &Path, rootfs_script: &str, archive: &str) -> PathBuf {
    let layout = dir.join("layout");
    std::fs::create_dir_all(layout.join("rootfs")).unwrap();
    std::fs::write(
        layout.join("manifest"),
        r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.test/many","labels":[{"name":"os","value":"linux"},{"name":"arch","value":"amd64"}]}"#,
    )
    .unwrap();
    sh(&layout.join("rootfs"), rootfs_script);
    sh(&layout, archive);
    dir.join("many.aci")
}

/// Runs `acikit --store STORE ARGS...`, sends it SIGINT once `STORE/tmp` holds a folder
/// whose name starts with `stage_prefix`, and returns its output. Panics if the command ends
/// before that folder is seen (the test could not tell a cancel from a finished run).
pub fn interrupted(store: &Path, args: &[&str], stage_prefix: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_acikit"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env_remove("ACIKIT_DATABASE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while named(&store.join("tmp"), stage_prefix).is_empty() {
        if child.try_wait().unwrap().is_some() {
            panic!("`acikit {args:?}` ended before its {stage_prefix}* folder was seen");
        }
        std::thread::yield_now();
    }
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
    child.wait_with_output().unwrap()
}
