//! Feeds arbitrary bytes to the tar block reader (`TarReader` over a `&[u8]`, with a
//! `RecordLog` sink), reading every entry and all of its content.
//!
//! Properties checked when the whole archive reads without error:
//! - each entry's content is exactly `entry.size` bytes, and only regular files (and unknown
//!   type flags, read as regular files) have content;
//! - the reader consumed every byte of the input;
//! - `records + contents`, written back, give the input byte for byte.
//!
//! An error is a fine outcome; a panic, a hang or a huge allocation is a bug.
#![no_main]

use std::sync::OnceLock;

use acikit::testing::tar::{EntryKind, RecordLog, TarReader};
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
    })
}

/// Reads the whole archive: `(records, contents)`, or the reader's error.
async fn read_all(data: &[u8]) -> acikit::Result<(RecordLog, Vec<Vec<u8>>)> {
    let mut reader = TarReader::with_sink(data, RecordLog::default());
    let mut contents = Vec::new();
    while let Some(entry) = reader.next_entry().await? {
        let mut content = Vec::new();
        while let Some(chunk) = reader.read_content().await? {
            content.extend_from_slice(&chunk);
        }
        assert_eq!(
            content.len() as u64,
            entry.size,
            "content length of entry {} ({:?})",
            entry.index,
            String::from_utf8_lossy(&entry.path)
        );
        // Links, devices, directories and fifos never carry data (the reader refuses them
        // when their size is not 0); unknown type flags are read as regular files (POSIX).
        if !matches!(entry.kind, EntryKind::Regular | EntryKind::Other(_)) {
            assert!(content.is_empty(), "a {:?} entry with content", entry.kind);
        }
        contents.push(content);
    }
    assert_eq!(
        reader.position(),
        data.len() as u64,
        "the reader consumed every byte"
    );
    Ok((reader.into_sink(), contents))
}

fuzz_target!(|data: &[u8]| {
    let Ok((log, contents)) = runtime().block_on(read_all(data)) else {
        return;
    };
    let mut rebuilt = Vec::with_capacity(data.len());
    log.rebuild(&mut rebuilt, |index, len, out| {
        let content = contents
            .get(index as usize)
            .unwrap_or_else(|| panic!("a content record for entry {index}, of {}", contents.len()));
        assert_eq!(
            content.len() as u64,
            len,
            "content record length of entry {index}"
        );
        out.extend_from_slice(content);
        Ok(())
    })
    .expect("rebuild into a Vec");
    assert!(rebuilt == data, "records + contents rebuild the input");
});
