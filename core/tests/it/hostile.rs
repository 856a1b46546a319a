//! Invalid and hostile image archives are refused, each with its own error kind and, for
//! errors about one entry, that entry's name: path traversal, absolute paths, writing through
//! symlinks, bad hardlinks, layout errors, duplicates, invalid manifests (every problem
//! reported with its JSON path), truncated or corrupt streams, random bytes, oversized
//! manifests, PAX size desync, PGP encryption, data on directories, volume labels and bad
//! header checksums. Every archive is made here, by Python's tarfile, GNU tar or by hand.

use std::path::Path;

use crate::common::*;
use acikit::archive::Limits;
use acikit::archive::{inspect, inspect_file};
use acikit::progress::Observer;
use acikit::{Error, ErrorKind};

/// What the error must say about the entry.
#[derive(Debug, Clone, Copy)]
enum Entry {
    /// `err.entry()` is exactly this.
    Is(&'static str),
    /// `err.entry()` is `None` (the error is about the whole archive).
    No,
}

struct Case {
    name: &'static str,
    /// Program the builder needs (the case is skipped without it).
    needs: &'static str,
    kind: ErrorKind,
    entry: Entry,
    /// Makes the archive bytes in the given (fresh) folder.
    build: fn(&Path) -> Vec<u8>,
}

const fn case(
    name: &'static str,
    kind: ErrorKind,
    entry: Entry,
    build: fn(&Path) -> Vec<u8>,
) -> Case {
    Case {
        name,
        needs: "python3",
        kind,
        entry,
        build,
    }
}

const fn case_needing(needs: &'static str, c: Case) -> Case {
    Case { needs, ..c }
}

fn gnu(dir: &Path, body: &str) -> Vec<u8> {
    py_tar(dir, "gnu", body)
}

/// A valid `.aci` (gzip) encrypted by gpg with a passphrase, binary or ASCII-armored.
fn gpg_encrypted(dir: &Path, armor: bool) -> Vec<u8> {
    valid_gzip(dir);
    let home = dir.join("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let armor = if armor { "--armor" } else { "" };
    let script = format!(
        "GNUPGHOME='{home}'; export GNUPGHOME; \
         status=0; gpg --batch --yes --quiet --passphrase x --pinentry-mode loopback \
         --cipher-algo AES256 {armor} --symmetric -o encrypted.aci valid.aci || status=$?; \
         gpgconf --kill all 2>/dev/null || true; exit $status",
        home = home.display()
    );
    sh(dir, &script);
    std::fs::read(dir.join("encrypted.aci")).unwrap()
}

/// 64 KiB from a seeded xorshift PRNG.
fn random_bytes(_: &Path) -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..64 * 1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// The valid image with a 10 KiB `rootfs/big` and a member after it, uncompressed.
fn tar_with_big_file(dir: &Path) -> Vec<u8> {
    gnu(
        dir,
        "base(); f('rootfs/big', bytes(range(256)) * 40); f('rootfs/after', b'x')",
    )
}

fn cases() -> Vec<Case> {
    use ErrorKind as K;
    vec![
        // Paths.
        case("dotdot", K::PathTraversal, Entry::Is("rootfs/../x"), |d| {
            gnu(d, "base(); f('rootfs/../x', b'x')")
        }),
        case(
            "dotdot-deep",
            K::PathTraversal,
            Entry::Is("rootfs/a/../../x"),
            |d| gnu(d, "base(); d('rootfs/a'); f('rootfs/a/../../x', b'x')"),
        ),
        case(
            "absolute-python",
            K::AbsolutePath,
            Entry::Is("/rootfs/x"),
            |d| gnu(d, "base(); f('/rootfs/x', b'x')"),
        ),
        case_needing(
            "tar",
            case(
                "absolute-gnu-tar-P",
                K::AbsolutePath,
                Entry::Is("/rootfs/x"),
                |d| {
                    let layout = small_layout(d, MANIFEST.as_bytes());
                    std::fs::write(layout.join("evil"), "x").unwrap();
                    sh(
                        &layout,
                        "tar -P --transform='s,^.*/evil$,/rootfs/x,' -cf ../abs.tar manifest rootfs \"$PWD/evil\"",
                    );
                    std::fs::read(d.join("abs.tar")).unwrap()
                },
            ),
        ),
        case(
            "through-symlink",
            K::ParentNotDirectory,
            Entry::Is("rootfs/a/passwd"),
            |d| {
                gnu(
                    d,
                    "base(); sym('rootfs/a', '/etc'); f('rootfs/a/passwd', b'root::0:0')",
                )
            },
        ),
        // Hardlinks.
        case(
            "hardlink-to-manifest",
            K::BadHardlink,
            Entry::Is("rootfs/h"),
            |d| gnu(d, "base(); hard('rootfs/h', 'manifest')"),
        ),
        case(
            "hardlink-dotdot",
            K::BadHardlink,
            Entry::Is("rootfs/h"),
            |d| gnu(d, "base(); f('rootfs/a', b'a'); hard('rootfs/h', '../x')"),
        ),
        case(
            "hardlink-to-later",
            K::BadHardlink,
            Entry::Is("rootfs/h"),
            |d| {
                gnu(
                    d,
                    "base(); hard('rootfs/h', 'rootfs/b'); f('rootfs/b', b'b')",
                )
            },
        ),
        // Layout.
        case("missing-manifest", K::MissingManifest, Entry::No, |d| {
            gnu(d, "d('rootfs'); f('rootfs/a', b'a')")
        }),
        case("missing-rootfs", K::MissingRootfs, Entry::No, |d| {
            gnu(d, "f('manifest', M)")
        }),
        case(
            "extra-top-level",
            K::ExtraTopLevelEntry,
            Entry::Is("extra"),
            |d| gnu(d, "base(); f('rootfs/a', b'a'); f('extra', b'x')"),
        ),
        case(
            "rootfs2",
            K::ExtraTopLevelEntry,
            Entry::Is("rootfs2/"),
            |d| gnu(d, "base(); d('rootfs2'); f('rootfs2/x', b'x')"),
        ),
        case(
            "manifest-is-dir",
            K::WrongTopLevelType,
            Entry::Is("manifest/"),
            |d| gnu(d, "d('manifest'); d('rootfs')"),
        ),
        case("duplicate", K::DuplicateEntry, Entry::Is("rootfs/a"), |d| {
            gnu(
                d,
                "base(); f('rootfs/a', b'1'); f('rootfs/b', b'2'); f('rootfs/a', b'3')",
            )
        }),
        // Truncation and corruption.
        case(
            "truncated-in-content",
            K::TruncatedArchive,
            Entry::Is("rootfs/big"),
            |d| {
                let tar = tar_with_big_file(d);
                let at = header_offset(&tar, b"rootfs/big");
                tar[..at + 512 + 5000].to_vec()
            },
        ),
        case("truncated-in-header", K::TruncatedArchive, Entry::No, |d| {
            let tar = tar_with_big_file(d);
            let at = header_offset(&tar, b"rootfs/after");
            tar[..at + 100].to_vec()
        }),
        case(
            "truncated-before-end-blocks",
            K::TruncatedArchive,
            Entry::No,
            |d| {
                let tar = tar_with_big_file(d);
                let at = header_offset(&tar, b"rootfs/after");
                tar[..at + 1024].to_vec()
            },
        ),
        case_needing(
            "gzip",
            case("truncated-gzip", K::CorruptCompression, Entry::No, |d| {
                let gz = valid_gzip(d);
                gz[..gz.len() / 2].to_vec()
            }),
        ),
        case_needing(
            "gzip",
            case("gzip-bad-crc", K::CorruptCompression, Entry::No, |d| {
                let mut gz = valid_gzip(d);
                let at = gz.len() - 8; // CRC32, then ISIZE
                gz[at] ^= 0x01;
                gz
            }),
        ),
        case_needing(
            "gzip",
            case(
                "gzip-trailing-garbage",
                K::CorruptCompression,
                Entry::No,
                |d| {
                    let mut gz = valid_gzip(d);
                    gz.extend_from_slice(b"not gzip at all");
                    gz
                },
            ),
        ),
        case("random-bytes", K::NotATar, Entry::No, random_bytes),
        case("empty", K::EmptyArchive, Entry::No, |_| Vec::new()),
        case("bad-checksum-mid-archive", K::BadHeader, Entry::No, |d| {
            let mut tar = tar_with_big_file(d);
            let at = header_offset(&tar, b"rootfs/after");
            // A digit of the mtime field: the stored checksum no longer matches.
            assert!(tar[at + 140].is_ascii_digit());
            tar[at + 140] = if tar[at + 140] == b'1' { b'2' } else { b'1' };
            tar
        }),
        // Sizes.
        case(
            "manifest-2MiB",
            K::ManifestTooLarge,
            Entry::Is("manifest"),
            |d| {
                gnu(
                    d,
                    "f('manifest', b'{\"x\": \"' + b'a' * (2 << 20) + b'\"}'); d('rootfs')",
                )
            },
        ),
        // Tar-level tricks.
        case(
            "pax-size-mismatch",
            K::PaxSizeMismatch,
            Entry::Is("rootfs/a"),
            |d| {
                let tar = py_tar(
                    d,
                    "pax",
                    "base(); f('rootfs/a', b'hello', pax_headers={'size': str(5 + 512)}); f('rootfs/b', b'b')",
                );
                assert!(
                    tar.windows(12).any(|w| w == b"12 size=517\n"),
                    "Python wrote the PAX size record"
                );
                tar
            },
        ),
        case(
            "directory-with-data",
            K::UnexpectedData,
            Entry::Is("rootfs/d/"),
            |d| {
                let tar = gnu(
                    d,
                    "base(); add('rootfs/d', tarfile.DIRTYPE, b'DIR-DATA-0123'); f('rootfs/e', b'e')",
                );
                let at = header_offset(&tar, b"rootfs/d/");
                assert_eq!(tar[at + 156], b'5', "a directory header");
                assert_eq!(
                    &tar[at + 124..at + 135],
                    b"00000000015",
                    "with 13 bytes of data"
                );
                tar
            },
        ),
        case_needing(
            "tar",
            case(
                "volume-label",
                K::UnsupportedEntryType,
                Entry::Is("ACI volume"),
                |d| {
                    let layout = small_layout(d, MANIFEST.as_bytes());
                    sh(
                        &layout,
                        "tar --format=gnu -V 'ACI volume' -cf ../label.tar manifest rootfs",
                    );
                    let tar = std::fs::read(d.join("label.tar")).unwrap();
                    assert_eq!(tar[156], b'V', "GNU tar wrote a volume label first");
                    tar
                },
            ),
        ),
        case_needing(
            "gpg",
            case("pgp-binary", K::Encrypted, Entry::No, |d| {
                gpg_encrypted(d, false)
            }),
        ),
        case_needing(
            "gpg",
            case("pgp-armored", K::Encrypted, Entry::No, |d| {
                gpg_encrypted(d, true)
            }),
        ),
    ]
}

/// Checks one refusal against the expectation; returns a description of any mismatch.
fn mismatch(how: &str, err: &Error, kind: ErrorKind, entry: Entry) -> Option<String> {
    if err.kind() != kind {
        return Some(format!("{how}: expected {kind}, got {err}"));
    }
    let ok = match entry {
        Entry::Is(name) => err.entry() == Some(name),
        Entry::No => err.entry().is_none(),
    };
    (!ok).then(|| {
        format!(
            "{how}: expected entry {entry:?}, got {:?} ({err})",
            err.entry()
        )
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_archives_are_refused_with_their_own_kind() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    let mut ran = 0;
    for case in cases() {
        if !have(case.needs) {
            eprintln!("skipping {}: {} is not installed", case.name, case.needs);
            continue;
        }
        let work = dir.path().join(case.name);
        std::fs::create_dir_all(&work).unwrap();
        let bytes = (case.build)(&work);
        let file = work.join("image.aci");
        std::fs::write(&file, &bytes).unwrap();

        let from_file = inspect_file(&file, Limits::default(), Observer::default()).await;
        let from_reader = inspect(
            std::io::Cursor::new(bytes),
            Limits::default(),
            Observer::default(),
        )
        .await;
        for (how, result) in [("inspect_file", from_file), ("inspect", from_reader)] {
            let how = format!("{} ({how})", case.name);
            match result {
                Ok(_) => failures.push(format!("{how}: accepted, expected {}", case.kind)),
                Err(err) => failures.extend(mismatch(&how, &err, case.kind, case.entry)),
            }
        }
        ran += 1;
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(ran >= 25, "only {ran} cases ran");
}

/// A manifest case: the manifest text, and every (JSON path, problem code) expected.
struct ManifestCase {
    name: &'static str,
    manifest: &'static str,
    problems: &'static [(&'static str, &'static str)],
}

const MANIFEST_CASES: &[ManifestCase] = &[
    ManifestCase {
        name: "not-json",
        manifest: r#"{"acKind": "ImageManifest", "#,
        problems: &[("$", "not_json")],
    },
    ManifestCase {
        name: "wrong-kind",
        manifest: r#"{"acKind":"PodManifest","acVersion":"0.8.11","name":"example.com/x"}"#,
        problems: &[("$.acKind", "wrong_kind")],
    },
    ManifestCase {
        name: "bad-name",
        manifest: r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"-Bad Name-"}"#,
        problems: &[("$.name", "bad_name")],
    },
    ManifestCase {
        name: "bad-version",
        manifest: r#"{"acKind":"ImageManifest","acVersion":"one.two","name":"example.com/x"}"#,
        problems: &[("$.acVersion", "bad_version")],
    },
    ManifestCase {
        name: "bad-os-arch",
        manifest: r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/x",
            "labels":[{"name":"os","value":"linux"},{"name":"arch","value":"sparc"}]}"#,
        problems: &[("$.labels[1].value", "bad_os_arch")],
    },
    ManifestCase {
        name: "duplicate-labels",
        manifest: r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/x",
            "labels":[{"name":"version","value":"1"},{"name":"version","value":"2"}]}"#,
        problems: &[("$.labels[1].name", "duplicate_label")],
    },
    ManifestCase {
        name: "bad-ports",
        manifest: r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/x",
            "app":{"exec":["/bin/sh"],"user":"0","group":"0","ports":[
                {"name":"low","protocol":"tcp","port":0},
                {"name":"high","protocol":"tcp","port":70000}]}}"#,
        problems: &[
            ("$.app.ports[0].port", "bad_port"),
            ("$.app.ports[1].port", "bad_port"),
        ],
    },
    ManifestCase {
        name: "bad-dependency-id",
        manifest: r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/x",
            "dependencies":[{"imageName":"example.com/base","imageID":"sha512-abc"}]}"#,
        problems: &[("$.dependencies[0].imageID", "bad_image_id")],
    },
    ManifestCase {
        name: "relative-whitelist",
        manifest: r#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/x",
            "pathWhitelist":["etc/x"]}"#,
        problems: &[("$.pathWhitelist[0]", "relative_path")],
    },
    ManifestCase {
        name: "many-problems",
        manifest: r#"{"acKind":"PodManifest","acVersion":"x","name":"-Bad Name-",
            "labels":[{"name":"os","value":"linux"},{"name":"arch","value":"amd64"},{"name":"os","value":"linux"}],
            "app":{"exec":["/bin/sh"],"user":"0","group":"0",
                "ports":[{"name":"p","protocol":"tcp","port":70000}]},
            "dependencies":[{"imageName":"example.com/base","imageID":"sha512-abc"}],
            "pathWhitelist":["/etc/ok","etc/x"]}"#,
        problems: &[
            ("$.acKind", "wrong_kind"),
            ("$.acVersion", "bad_version"),
            ("$.name", "bad_name"),
            ("$.labels[2].name", "duplicate_label"),
            ("$.app.ports[0].port", "bad_port"),
            ("$.dependencies[0].imageID", "bad_image_id"),
            ("$.pathWhitelist[1]", "relative_path"),
        ],
    },
];

#[tokio::test(flavor = "multi_thread")]
async fn invalid_manifests_report_every_problem_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for case in MANIFEST_CASES {
        let layout = small_layout(&dir.path().join(case.name), case.manifest.as_bytes());
        sh(&layout, "tar --format=gnu -cf image.aci manifest rootfs");
        let err = match inspect_file(
            layout.join("image.aci"),
            Limits::default(),
            Observer::default(),
        )
        .await
        {
            Ok(_) => {
                failures.push(format!("{}: accepted", case.name));
                continue;
            }
            Err(err) => err,
        };
        if err.kind() != ErrorKind::InvalidManifest {
            failures.push(format!(
                "{}: expected invalid_manifest, got {err}",
                case.name
            ));
            continue;
        }
        // Exactly the expected problems (in any order), each at its JSON path.
        let mut got: Vec<(&str, &str)> = err
            .problems()
            .iter()
            .map(|p| (p.path.as_str(), p.code))
            .collect();
        got.sort();
        let mut want = case.problems.to_vec();
        want.sort();
        if got != want {
            failures.push(format!("{}: expected {want:?}, got {got:?}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn manifest_size_limit_is_configurable() {
    let dir = tempfile::tempdir().unwrap();
    let valid = dir.path().join("valid.tar");
    std::fs::write(&valid, valid_tar(dir.path())).unwrap();
    assert!(MANIFEST.len() > 100);
    let mut small = Limits::default();
    small.max_manifest_size = 100;
    let err = inspect_file(&valid, small, Observer::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ManifestTooLarge, "{err}");
    assert_eq!(err.entry(), Some("manifest"));
    let mut exact = Limits::default();
    exact.max_manifest_size = MANIFEST.len() as u64;
    inspect_file(&valid, exact, Observer::default())
        .await
        .expect("a manifest exactly at the limit is accepted");

    // The 2 MiB manifest is refused for its size only: with a higher limit, it is read
    // (and refused as JSON that is not a manifest).
    let big = dir.path().join("big.tar");
    std::fs::write(
        &big,
        gnu(
            &dir.path().join("big"),
            "f('manifest', b'{\"x\": \"' + b'a' * (2 << 20) + b'\"}'); d('rootfs')",
        ),
    )
    .unwrap();
    let err = inspect_file(&big, Limits::default(), Observer::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ManifestTooLarge, "{err}");
    let mut large = Limits::default();
    large.max_manifest_size = 3 << 20;
    let err = inspect_file(&big, large, Observer::default())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidManifest, "{err}");
}
