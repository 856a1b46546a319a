//! Re-creating original zstd, xz and bzip2 bytes (`archive::recompress`): a reproducible tar of a
//! few MB (text, random and structured binary, zeros) compressed by the real CLI tools (`zstd`,
//! `xz`, `bzip2`, `pbzip2`), Python's `lzma` and `bz2` and our own encoders. For each, `detect`
//! either finds parameters under which `recreate` writes the identical bytes, or says `None`
//! (the CLI tools may link other library versions than we do). Each test prints its table
//! (`--nocapture`); docs/ARCHITECTURE.md keeps it. A wrong parameter set writes other bytes, and
//! the caller's hash check is what refuses them.

use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::common::*;
use acikit::archive::Compression;
use acikit::testing::recompress::{RecompressParams, detect, recreate};
use acikit::{CancelToken, ErrorKind};

/// A reproducible tar of about 5 MB in `dir`: text, random bytes, structured binary and zeros,
/// written by GNU tar with fixed owners, times and order.
fn test_tar(dir: &Path) -> PathBuf {
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("bin")).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    const WORDS: &[&str] = &[
        "image",
        "archive",
        "layer",
        "manifest",
        "rootfs",
        "content",
        "object",
        "store",
        "the",
        "of",
        "and",
        "a",
        "to",
        "in",
        "is",
        "signature",
        "publisher",
        "compressed",
        "bytes",
        "zstd",
        "xz",
        "bzip2",
        "gzip",
        "block",
        "frame",
        "stream",
        "window",
        "level",
        "index",
    ];
    let mut text = String::new();
    while text.len() < 2_500_000 {
        let n = next();
        text.push_str(WORDS[(n % WORDS.len() as u64) as usize]);
        text.push(if n % 11 == 0 { '\n' } else { ' ' });
        if n % 97 == 0 {
            text.push_str(&format!("{}\n", n % 100_000));
        }
    }
    std::fs::write(tree.join("notes.txt"), &text).unwrap();
    let random: Vec<u8> = (0..1_000_000 / 8)
        .flat_map(|_| next().to_le_bytes())
        .collect();
    std::fs::write(tree.join("bin/random"), &random).unwrap();
    let structured: Vec<u8> = (0..262_144u32)
        .flat_map(|i| (i.wrapping_mul(2_654_435_761) >> 20 ^ (next() as u32 & 3)).to_le_bytes())
        .collect();
    std::fs::write(tree.join("bin/table"), &structured).unwrap();
    std::fs::write(tree.join("bin/zeros"), vec![0u8; 256 * 1024]).unwrap();
    let tar = dir.join("t.tar");
    sh(
        dir,
        "tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner --format=gnu \
         -cf t.tar -C tree .",
    );
    tar
}

/// What `detect` and `recreate` gave for one original.
struct Outcome {
    case: String,
    params: Option<RecompressParams>,
}

/// Runs `detect` on `original` (a file) against `tar`; if it finds parameters, `recreate` must
/// write `original` byte for byte.
fn check(case: &str, compression: Compression, original: &Path, tar: &Path) -> Outcome {
    let orig = original.to_path_buf();
    let plain = tar.to_path_buf();
    let mut open_original = move || -> std::io::Result<Box<dyn std::io::Read + Send>> {
        Ok(Box::new(std::fs::File::open(&orig)?))
    };
    let mut open_tar = move || -> std::io::Result<Box<dyn std::io::Read + Send>> {
        Ok(Box::new(std::fs::File::open(&plain)?))
    };
    let started = std::time::Instant::now();
    let params = detect(
        compression,
        &mut open_original,
        &mut open_tar,
        &CancelToken::new(),
    )
    .unwrap_or_else(|e| panic!("{case}: detect failed: {e}"));
    eprintln!("{case}: detect took {:.1?}", started.elapsed());
    if let Some(params) = &params {
        let mut out = Vec::new();
        recreate(
            params,
            &mut std::fs::File::open(tar).unwrap(),
            &mut out,
            &CancelToken::new(),
        )
        .unwrap();
        let expected = std::fs::read(original).unwrap();
        assert!(
            out == expected,
            "{case}: detect returned {params:?} but recreate wrote other bytes ({} vs {})",
            out.len(),
            expected.len()
        );
    }
    Outcome {
        case: case.to_string(),
        params,
    }
}

/// Compresses `tar` with a shell command (`$IN`, `$OUT`) and checks the result.
fn cli(case: &str, compression: Compression, script: &str, tar: &Path) -> Outcome {
    let dir = tar.parent().unwrap();
    let out = dir.join(format!("out-{}", case.replace([' ', '/', '='], "_")));
    sh(
        dir,
        &format!("IN='{}'; OUT='{}'; {script}", tar.display(), out.display()),
    );
    let outcome = check(case, compression, &out, tar);
    std::fs::remove_file(&out).unwrap();
    outcome
}

/// Prints the outcomes as the table docs/ARCHITECTURE.md keeps.
fn print_table(outcomes: &[Outcome]) {
    for o in outcomes {
        match &o.params {
            Some(p) => eprintln!(
                "| `{}` | re-created | `{}` |",
                o.case,
                serde_json::to_string(p).unwrap()
            ),
            None => eprintln!("| `{}` | kept (None) | |", o.case),
        }
    }
}

/// The outcome of `case`.
fn outcome<'a>(outcomes: &'a [Outcome], case: &str) -> &'a Option<RecompressParams> {
    &outcomes.iter().find(|o| o.case == case).unwrap().params
}

#[test]
fn zstd_originals() {
    let dir = tempfile::tempdir().unwrap();
    let tar = test_tar(dir.path());
    let data = std::fs::read(&tar).unwrap();
    let z = Compression::Zstd;
    let mut outcomes = Vec::new();
    for level in [1, 3, 19] {
        outcomes.push(cli(
            &format!("zstd -{level} FILE"),
            z,
            &format!("zstd -q -{level} \"$IN\" -o \"$OUT\""),
            &tar,
        ));
    }
    outcomes.push(cli(
        "zstd -3 < STDIN",
        z,
        "zstd -q -3 -c < \"$IN\" > \"$OUT\"",
        &tar,
    ));
    outcomes.push(cli(
        "zstd --long=27 FILE",
        z,
        "zstd -q --long=27 \"$IN\" -o \"$OUT\"",
        &tar,
    ));
    outcomes.push(cli(
        "zstd -T2 -3 FILE",
        z,
        "zstd -q -T2 -3 \"$IN\" -o \"$OUT\"",
        &tar,
    ));
    outcomes.push(cli(
        "zstd --single-thread -3 FILE",
        z,
        "zstd -q --single-thread -3 \"$IN\" -o \"$OUT\"",
        &tar,
    ));
    // Our own encoder: plain (no checksum, no content size), and as the CLI sets it up.
    let ours = dir.path().join("ours.zst");
    std::fs::write(&ours, zstd::stream::encode_all(&data[..], 3).unwrap()).unwrap();
    outcomes.push(check("ours: zstd 3, plain", z, &ours, &tar));
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 19).unwrap();
    encoder.include_checksum(true).unwrap();
    encoder
        .set_pledged_src_size(Some(data.len() as u64))
        .unwrap();
    encoder.write_all(&data).unwrap();
    std::fs::write(&ours, encoder.finish().unwrap()).unwrap();
    outcomes.push(check("ours: zstd 19, checksum, size", z, &ours, &tar));
    // Our multi-threaded job layout (what the CLI writes above 512 KiB when its libzstd is ours).
    let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
    encoder.include_checksum(true).unwrap();
    encoder
        .set_pledged_src_size(Some(data.len() as u64))
        .unwrap();
    encoder.multithread(2).unwrap();
    encoder.write_all(&data).unwrap();
    std::fs::write(&ours, encoder.finish().unwrap()).unwrap();
    outcomes.push(check("ours: zstd 1, 2 workers", z, &ours, &tar));
    // Two frames: not a layout we re-create.
    let two = [
        zstd::stream::encode_all(&data[..1_000_000], 3).unwrap(),
        zstd::stream::encode_all(&data[1_000_000..], 3).unwrap(),
    ]
    .concat();
    std::fs::write(&ours, two).unwrap();
    outcomes.push(check("ours: two frames", z, &ours, &tar));
    print_table(&outcomes);
    for case in [
        "ours: zstd 3, plain",
        "ours: zstd 19, checksum, size",
        "ours: zstd 1, 2 workers",
    ] {
        assert!(outcome(&outcomes, case).is_some(), "{case}: not re-created");
    }
    assert!(outcome(&outcomes, "ours: two frames").is_none());
}

#[test]
fn xz_originals() {
    let dir = tempfile::tempdir().unwrap();
    let tar = test_tar(dir.path());
    let data = std::fs::read(&tar).unwrap();
    let x = Compression::Xz;
    let mut outcomes = Vec::new();
    for flags in [
        "-0",
        "-6",
        "-9",
        "-6e",
        "-6 -T2",
        "-0 -T2",
        "-0 -T2 --block-size=1MiB",
    ] {
        outcomes.push(cli(
            &format!("xz {flags} FILE"),
            x,
            &format!("xz -q {flags} -k -c \"$IN\" > \"$OUT\""),
            &tar,
        ));
    }
    outcomes.push(cli(
        "xz -6 < STDIN",
        x,
        "xz -q -6 -c < \"$IN\" > \"$OUT\"",
        &tar,
    ));
    outcomes.push(cli(
        "xz -6 -C sha256 FILE",
        x,
        "xz -q -6 -C sha256 -k -c \"$IN\" > \"$OUT\"",
        &tar,
    ));
    outcomes.push(cli(
        "python3 lzma.compress",
        x,
        "python3 -c 'import lzma,sys; sys.stdout.buffer.write(lzma.compress(open(sys.argv[1],\"rb\").read()))' \"$IN\" > \"$OUT\"",
        &tar,
    ));
    let ours = dir.path().join("ours.xz");
    let mut encoder = liblzma::write::XzEncoder::new(Vec::new(), 6);
    encoder.write_all(&data).unwrap();
    std::fs::write(&ours, encoder.finish().unwrap()).unwrap();
    outcomes.push(check("ours: xz 6", x, &ours, &tar));
    let mut encoder =
        liblzma::write::XzEncoder::new(Vec::new(), 1 | liblzma::stream::PRESET_EXTREME);
    encoder.write_all(&data).unwrap();
    std::fs::write(&ours, encoder.finish().unwrap()).unwrap();
    outcomes.push(check("ours: xz 1e", x, &ours, &tar));
    // Two streams: not a layout we re-create.
    outcomes.push(cli(
        "xz two streams",
        x,
        "head -c 1000000 \"$IN\" | xz -q -1 -c > \"$OUT\"; tail -c +1000001 \"$IN\" | xz -q -1 -c >> \"$OUT\"",
        &tar,
    ));
    print_table(&outcomes);
    for case in ["ours: xz 6", "ours: xz 1e"] {
        assert!(outcome(&outcomes, case).is_some(), "{case}: not re-created");
    }
    assert!(outcome(&outcomes, "xz two streams").is_none());
}

#[test]
fn bzip2_originals() {
    let dir = tempfile::tempdir().unwrap();
    let tar = test_tar(dir.path());
    let data = std::fs::read(&tar).unwrap();
    let b = Compression::Bzip2;
    let mut outcomes = Vec::new();
    for level in [1, 9] {
        outcomes.push(cli(
            &format!("bzip2 -{level}"),
            b,
            &format!("bzip2 -{level} -c < \"$IN\" > \"$OUT\""),
            &tar,
        ));
    }
    outcomes.push(cli(
        "python3 bz2.compress",
        b,
        "python3 -c 'import bz2,sys; sys.stdout.buffer.write(bz2.compress(open(sys.argv[1],\"rb\").read()))' \"$IN\" > \"$OUT\"",
        &tar,
    ));
    if have("pbzip2") {
        outcomes.push(cli(
            "pbzip2 -9 -p2",
            b,
            "pbzip2 -9 -p2 -c < \"$IN\" > \"$OUT\"",
            &tar,
        ));
    }
    let ours = dir.path().join("ours.bz2");
    let mut encoder = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(6));
    encoder.write_all(&data).unwrap();
    std::fs::write(&ours, encoder.finish().unwrap()).unwrap();
    outcomes.push(check("ours: bzip2 6", b, &ours, &tar));
    print_table(&outcomes);
    // libbz2-rs-sys is a port of libbzip2 1.0.8, which every one of these links.
    for case in [
        "bzip2 -1",
        "bzip2 -9",
        "python3 bz2.compress",
        "ours: bzip2 6",
    ] {
        assert!(outcome(&outcomes, case).is_some(), "{case}: not re-created");
    }
}

/// Parameters that name the wrong level write other bytes; the caller's hash check (size and
/// SHA-256 of what `recreate` writes, against the original's) is what refuses them.
#[test]
fn a_wrong_level_writes_other_bytes_and_the_hash_check_refuses_them() {
    let dir = tempfile::tempdir().unwrap();
    let tar = test_tar(dir.path());
    let data = std::fs::read(&tar).unwrap();
    let original = zstd::stream::encode_all(&data[..], 3).unwrap();
    let path = dir.path().join("ours.zst");
    std::fs::write(&path, &original).unwrap();
    let found = check("ours: zstd 3", Compression::Zstd, &path, &tar)
        .params
        .unwrap();
    let RecompressParams::Zstd { level, .. } = &found else {
        panic!("not zstd: {found:?}");
    };
    assert_eq!(*level, 3);
    // The hostile set: the same but level 4. It writes a valid stream of the same content...
    let mut hostile = found.clone();
    if let RecompressParams::Zstd { level, .. } = &mut hostile {
        *level = 4;
    }
    let mut out = Vec::new();
    recreate(&hostile, &mut &data[..], &mut out, &CancelToken::new()).unwrap();
    assert_eq!(zstd::stream::decode_all(&out[..]).unwrap(), data);
    // ...but not the original's bytes, and the caller's check refuses it before serving any.
    assert_ne!(out, original);
    let checked = |params: &RecompressParams| -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        recreate(params, &mut &data[..], &mut out, &CancelToken::new()).unwrap();
        let want = (original.len(), sha2::Sha256::digest(&original));
        if (out.len(), sha2::Sha256::digest(&out)) == want {
            Ok(out)
        } else {
            Err("the re-created stream's hash differs from the original's".into())
        }
    };
    assert!(checked(&hostile).is_err());
    assert_eq!(checked(&found).unwrap(), original);
    // The same for bzip2 (level 9 recorded as 8) and xz (preset 6 as 5).
    let bz = {
        let mut e = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::new(9));
        e.write_all(&data).unwrap();
        e.finish().unwrap()
    };
    let hostile_bz = RecompressParams::Bzip2 {
        library: "libbz2-rs-sys 0.2 (bzip2 1.0.8)".into(),
        level: 8,
        stream_size: None,
    };
    let mut out = Vec::new();
    recreate(&hostile_bz, &mut &data[..], &mut out, &CancelToken::new()).unwrap();
    assert_ne!(out, bz);
}

/// `detect` and `recreate` stop with `cancelled` when the token is cancelled; other
/// compressions are not ours to re-create.
#[test]
fn cancellation_and_other_compressions() {
    let dir = tempfile::tempdir().unwrap();
    let tar = test_tar(dir.path());
    let data = std::fs::read(&tar).unwrap();
    let original = zstd::stream::encode_all(&data[..], 3).unwrap();
    let cancel = CancelToken::new();
    cancel.cancel();
    let (o, d) = (original.clone(), data.clone());
    let err = detect(
        Compression::Zstd,
        &mut move || Ok(Box::new(std::io::Cursor::new(o.clone()))),
        &mut move || Ok(Box::new(std::io::Cursor::new(d.clone()))),
        &cancel,
    )
    .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    let params = RecompressParams::Bzip2 {
        library: "x".into(),
        level: 9,
        stream_size: None,
    };
    let err = recreate(&params, &mut &data[..], &mut Vec::new(), &cancel).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Cancelled);
    for compression in [Compression::Gzip, Compression::None] {
        let (o, d) = (original.clone(), data.clone());
        let found = detect(
            compression,
            &mut move || Ok(Box::new(std::io::Cursor::new(o.clone()))),
            &mut move || Ok(Box::new(std::io::Cursor::new(d.clone()))),
            &CancelToken::new(),
        )
        .unwrap();
        assert_eq!(found, None);
    }
}

/// The figures of docs/ARCHITECTURE.md for a large image, on demand:
/// `ACIKIT_RECOMPRESS_ORIGINAL=IMAGE.aci.xz (or .zst, .bz2) ACIKIT_RECOMPRESS_TAR=IMAGE.tar cargo test -p acikit
/// --test it -- recompress::large_image --ignored --nocapture` prints how long `detect` and
/// `recreate` take and what they found; the re-created bytes must be the original's.
#[test]
#[ignore]
fn large_image() {
    let original = PathBuf::from(std::env::var("ACIKIT_RECOMPRESS_ORIGINAL").unwrap());
    let tar = PathBuf::from(std::env::var("ACIKIT_RECOMPRESS_TAR").unwrap());
    let compression = match original.extension().and_then(|e| e.to_str()) {
        Some("zst") => Compression::Zstd,
        Some("xz") => Compression::Xz,
        Some("bz2") => Compression::Bzip2,
        other => panic!("name the original *.zst, *.xz or *.bz2, not {other:?}"),
    };
    let started = std::time::Instant::now();
    let outcome = check("large image", compression, &original, &tar);
    eprintln!(
        "{}: {compression}: detect + recreate took {:.1?}: {:?}",
        original.display(),
        started.elapsed(),
        outcome.params
    );
}

/// zstd's multi-threaded job layout over more than the prefix the filter reads (8 MiB): the
/// jobs (2 MiB at level 1, 8 MiB at level 3) cross the prefix's end, and the layout is still
/// found and re-created.
#[test]
fn zstd_multi_threaded_layout_beyond_the_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let tar = test_tar(dir.path());
    let one = std::fs::read(&tar).unwrap();
    // 12.6 MB: the tar twice, then its first 3 MB again.
    let data = [&one[..], &one[..], &one[..3_000_000]].concat();
    let big = dir.path().join("big.tar");
    std::fs::write(&big, &data).unwrap();
    let ours = dir.path().join("big.zst");
    for level in [1, 3] {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), level).unwrap();
        encoder.include_checksum(true).unwrap();
        encoder
            .set_pledged_src_size(Some(data.len() as u64))
            .unwrap();
        encoder.multithread(2).unwrap();
        encoder.write_all(&data).unwrap();
        std::fs::write(&ours, encoder.finish().unwrap()).unwrap();
        let case = format!("ours: zstd {level}, 2 workers, 12.6 MB");
        let found = check(&case, Compression::Zstd, &ours, &big).params;
        match found {
            Some(RecompressParams::Zstd {
                level: l, workers, ..
            }) => {
                assert_eq!((l, workers), (level, 1), "{case}")
            }
            other => panic!("{case}: {other:?}"),
        }
    }
}
