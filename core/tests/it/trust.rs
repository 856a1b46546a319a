//! `acikit::trust` against real GnuPG: keys and signatures are made by `gpg` at test set-up in a
//! throw-away GNUPGHOME (RSA 2048, Ed25519, an Ed25519 signing subkey; an expired key made
//! with `--faked-system-time` in 2020; a key revoked with its own revocation certificate; a key
//! whose signing flag was dropped with `change-usage` after it signed; a signing subkey revoked
//! after it signed; a signing subkey that expired in 2020; a SHA-1 signature), then
//! checked through `TrustStore` and `verify_detached` / `StreamingVerifier`.
//!
//! Keys that are revoked or expired cannot be added (that is tested too), so a store that holds
//! one, as it would once a trusted key expires or its owner's revocation is copied in, is made
//! by writing the key file where the store's documented layout puts it.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

use crate::common::gpg::Gpg;
use crate::common::pseudo_random;

use acikit::trust::{
    StreamingVerifier, TrustScope, TrustStore, VerifiedSignature, verify_detached,
};
use acikit::{ErrorKind, Result};

// ---------------------------------------------------------------------------------------
// Fixtures made by gpg.

/// A key made by gpg: its fingerprint (lowercase), armored public key, and its armored
/// detached signature of [`Fixtures::data`] (SHA-256).
struct Key {
    fpr: String,
    public: Vec<u8>,
    sig: Vec<u8>,
}

struct Fixtures {
    /// The signed data: 1 MiB + 123 bytes, so it spans many chunks.
    data: Vec<u8>,
    rsa: Key,
    ed: Key,
    /// A certify-only Ed25519 primary key with an Ed25519 signing subkey that made `sig`.
    sub: Key,
    sub_signing_fpr: String,
    /// Like `sub`, but the signing subkey was revoked after it signed: `public` holds the
    /// revocation, `public_before` does not.
    subrev: Key,
    subrev_public_before: Vec<u8>,
    /// A primary key without expiry (made 2020-01-01, faked time) whose signing subkey was made
    /// with a 2-day lifetime and signed on 2020-01-01.
    subexp: Key,
    /// Never trusted.
    other: Key,
    /// Made on 2020-01-01 (faked time) with a 2-day expiry; signed on 2020-01-01.
    expired: Key,
    /// `public` is revoked (revocation certificate imported); `public_before` is the same
    /// key exported before.
    revoked: Key,
    revoked_public_before: Vec<u8>,
    /// Signed while it could; `public` is exported after `change-usage` dropped its sign flag.
    nosign: Key,
    /// The RSA key's signature of `data` with `--digest-algo SHA1`.
    rsa_sha1_sig: Vec<u8>,
    /// The Ed25519 key's signature of `data`, binary (no armor).
    ed_binary_sig: Vec<u8>,
    /// The `other` key's armored secret key.
    other_secret: Vec<u8>,
    /// The `other` key's public key, binary (no armor).
    other_binary_public: Vec<u8>,
    /// The RSA and Ed25519 public keys in one armored block.
    two_public: Vec<u8>,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(make_fixtures)
}

fn make_fixtures() -> Fixtures {
    let home = tempfile::Builder::new().prefix("gpg").tempdir().unwrap();
    std::fs::set_permissions(
        home.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let gpg = Gpg::in_dir(home);
    let work = tempfile::tempdir().unwrap();
    let data = pseudo_random(7, (1 << 20) + 123);
    let data_path = work.path().join("image.aci");
    std::fs::write(&data_path, &data).unwrap();
    let sha256 = ["--digest-algo", "SHA256"];

    let key = |uid: &str, algo: &str, forced: bool| -> Key {
        let fpr = gpg.gen_key(&[], uid, algo, "sign", "never");
        let signer = if forced {
            format!("{fpr}!")
        } else {
            fpr.clone()
        };
        Key {
            public: gpg.export(&fpr),
            sig: gpg.sign(&sha256, &signer, &data_path),
            fpr,
        }
    };
    let rsa = key("RSA Signer <rsa@example.com>", "rsa2048", true);
    let ed = key("Ed Signer <ed@example.com>", "ed25519", true);
    let other = key("Other Signer <other@example.com>", "ed25519", true);

    // A certify-only primary key and a signing subkey; gpg signs with the subkey.
    let sub_uid = "Subkey Signer <sub@example.com>";
    let sub_fpr = gpg.gen_key(&[], sub_uid, "ed25519", "cert", "never");
    gpg.run(
        &["--quick-add-key", &sub_fpr, "ed25519", "sign", "never"],
        None,
    );
    let listing =
        String::from_utf8(gpg.run(&["--with-colons", "--list-keys", &sub_fpr], None)).unwrap();
    let sub_signing_fpr = listing
        .lines()
        .filter_map(|l| l.strip_prefix("fpr:"))
        .filter_map(|l| l.split(':').nth(8))
        .nth(1)
        .expect("the subkey's fingerprint")
        .to_lowercase();
    let sub = Key {
        public: gpg.export(&sub_fpr),
        sig: gpg.sign(&sha256, &sub_fpr, &data_path),
        fpr: sub_fpr,
    };

    // A signing subkey revoked (gpg --edit-key: key 1, revkey) after it signed.
    let subrev_uid = "Revoked Subkey <subrev@example.com>";
    let subrev_fpr = gpg.gen_key(&[], subrev_uid, "ed25519", "cert", "never");
    gpg.run(
        &["--quick-add-key", &subrev_fpr, "ed25519", "sign", "never"],
        None,
    );
    let subrev_sig = gpg.sign(&sha256, &subrev_fpr, &data_path);
    let subrev_public_before = gpg.export(&subrev_fpr);
    gpg.run(
        &["--command-fd", "0", "--edit-key", &subrev_fpr],
        Some(b"key 1\nrevkey\ny\n0\n\ny\nsave\n"),
    );
    let subrev = Key {
        public: gpg.export(&subrev_fpr),
        sig: subrev_sig,
        fpr: subrev_fpr,
    };

    // A signing subkey with a 2-day lifetime under a primary key that never expires.
    let in_2020 = ["--faked-system-time", "20200101T000000!"];
    let subexp_uid = "Expiring Subkey <subexp@example.com>";
    let subexp_fpr = gpg.gen_key(&in_2020, subexp_uid, "ed25519", "cert", "never");
    gpg.run(
        &[
            &in_2020[..],
            &["--quick-add-key", &subexp_fpr, "ed25519", "sign", "2d"],
        ]
        .concat(),
        None,
    );
    let subexp = Key {
        public: gpg.export(&subexp_fpr),
        sig: gpg.sign(
            &[
                "--faked-system-time",
                "20200101T120000!",
                "--digest-algo",
                "SHA256",
            ],
            &subexp_fpr,
            &data_path,
        ),
        fpr: subexp_fpr,
    };

    // Expired: made and used on 2020-01-01 with a 2-day lifetime.
    let made = ["--faked-system-time", "20200101T000000!"];
    let exp_fpr = gpg.gen_key(
        &made,
        "Expired Signer <expired@example.com>",
        "ed25519",
        "sign",
        "2d",
    );
    let expired = Key {
        public: gpg.export(&exp_fpr),
        sig: gpg.sign(
            &[
                "--faked-system-time",
                "20200101T120000!",
                "--digest-algo",
                "SHA256",
            ],
            &format!("{exp_fpr}!"),
            &data_path,
        ),
        fpr: exp_fpr,
    };

    // Revoked with the revocation certificate gpg wrote when it made the key.
    let rev_fpr = gpg.gen_key(
        &[],
        "Revoked Signer <revoked@example.com>",
        "ed25519",
        "sign",
        "never",
    );
    let revoked_public_before = gpg.export(&rev_fpr);
    let rev_sig = gpg.sign(&sha256, &format!("{rev_fpr}!"), &data_path);
    let cert_path = gpg
        .home()
        .join("openpgp-revocs.d")
        .join(format!("{}.rev", rev_fpr.to_uppercase()));
    let cert = std::fs::read_to_string(&cert_path).unwrap();
    // gpg guards the certificate with a leading ':' so it is not imported by accident.
    let cert = cert.replace(
        ":-----BEGIN PGP PUBLIC KEY BLOCK-----",
        "-----BEGIN PGP PUBLIC KEY BLOCK-----",
    );
    gpg.run(&["--import"], Some(cert.as_bytes()));
    let revoked = Key {
        public: gpg.export(&rev_fpr),
        sig: rev_sig,
        fpr: rev_fpr,
    };

    // Signs, then loses its sign flag (gpg --edit-key change-usage, toggling S).
    let ns_fpr = gpg.gen_key(
        &[],
        "No Sign <nosign@example.com>",
        "ed25519",
        "sign",
        "never",
    );
    let ns_sig = gpg.sign(&sha256, &format!("{ns_fpr}!"), &data_path);
    // A later self-signature than the first one (they are dated to the second).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    gpg.run(
        &["--expert", "--command-fd", "0", "--edit-key", &ns_fpr],
        Some(b"change-usage\nS\nQ\nsave\n"),
    );
    let nosign = Key {
        public: gpg.export(&ns_fpr),
        sig: ns_sig,
        fpr: ns_fpr,
    };

    let rsa_sha1_sig = gpg.sign(
        &["--digest-algo", "SHA1", "--weak-digest", "SHA224"],
        &format!("{}!", rsa.fpr),
        &data_path,
    );
    let ed_binary_sig = gpg.run(
        &[
            "--local-user",
            &format!("{}!", ed.fpr),
            "--digest-algo",
            "SHA256",
            "--detach-sign",
            "--output",
            "-",
            data_path.to_str().unwrap(),
        ],
        None,
    );
    let other_secret = gpg.run(&["--armor", "--export-secret-keys", &other.fpr], None);
    let other_binary_public = gpg.run(&["--export", &other.fpr], None);
    let two_public = gpg.run(&["--armor", "--export", &rsa.fpr, &ed.fpr], None);

    Fixtures {
        data,
        rsa,
        ed,
        sub,
        sub_signing_fpr,
        subrev,
        subrev_public_before,
        subexp,
        other,
        expired,
        revoked,
        revoked_public_before,
        nosign,
        rsa_sha1_sig,
        ed_binary_sig,
        other_secret,
        other_binary_public,
        two_public,
    }
}

// ---------------------------------------------------------------------------------------
// Helpers.

fn prefix(p: &str) -> TrustScope {
    TrustScope::prefix(p).unwrap()
}

struct Trust {
    _dir: tempfile::TempDir,
    store: TrustStore,
}

fn trust_with(keys: &[(&Key, TrustScope)]) -> Trust {
    let dir = tempfile::tempdir().unwrap();
    let store = TrustStore::new(dir.path().join("trust"));
    for (key, scope) in keys {
        store.add(&key.public, scope.clone()).unwrap();
    }
    Trust { _dir: dir, store }
}

/// Writes a key file where the layout puts a key trusted for `scope`, as `add` would have
/// when the key was still valid.
fn plant(store: &TrustStore, scope: &TrustScope, key: &Key, public: &[u8]) -> PathBuf {
    let dir = match scope {
        TrustScope::Root => store.dir().join("root.d"),
        TrustScope::Prefix(p) => store.dir().join("prefix.d").join(p.replace('/', ",")),
    };
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{}.asc", key.fpr));
    std::fs::write(&path, public).unwrap();
    path
}

fn verify(trust: &Trust, name: &str, sig: &[u8], data: &[u8]) -> Result<VerifiedSignature> {
    verify_detached(&trust.store, name, sig, data)
}

/// The same verification through the streaming verifier, written in uneven chunks.
fn verify_streaming(
    trust: &Trust,
    name: &str,
    sig: &[u8],
    data: &[u8],
) -> Result<VerifiedSignature> {
    let (mut sink, handle) = StreamingVerifier::start(&trust.store, name, sig)?;
    let writer = std::thread::spawn({
        let data = data.to_vec();
        move || {
            let mut rest = &data[..];
            let mut size = 1;
            while !rest.is_empty() {
                let n = size.min(rest.len());
                sink.write_all(&rest[..n]).unwrap();
                rest = &rest[n..];
                size = size * 3 % 100_003 + 1;
            }
            drop(sink);
        }
    });
    writer.join().unwrap();
    handle.finish()
}

#[track_caller]
fn assert_kind<T: std::fmt::Debug>(result: Result<T>, kind: ErrorKind) -> String {
    match result {
        Ok(value) => panic!("expected {kind}, got Ok({value:?})"),
        Err(err) => {
            assert_eq!(err.kind(), kind, "expected {kind}, got {err}");
            err.message().to_string()
        }
    }
}

fn tampered(data: &[u8]) -> Vec<u8> {
    let mut bad = data.to_vec();
    let middle = bad.len() / 2;
    bad[middle] ^= 0x01;
    bad
}

// ---------------------------------------------------------------------------------------
// Good signatures.

#[test]
fn rsa_signature_verifies() {
    let f = fixtures();
    let trust = trust_with(&[(&f.rsa, prefix("example.com/app"))]);
    let ok = verify(&trust, "example.com/app", &f.rsa.sig, &f.data).unwrap();
    assert_eq!(ok.fingerprint, f.rsa.fpr);
    assert_eq!(ok.signing_key, f.rsa.fpr);
    assert_eq!(ok.user_ids, ["RSA Signer <rsa@example.com>"]);
    assert_eq!(ok.scope, prefix("example.com/app"));
    assert_eq!(ok.hash_algorithm, "SHA256");
    assert_eq!(ok.data_len, f.data.len() as u64);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        ok.created_at <= now && ok.created_at + 3600 > now,
        "{}",
        ok.created_at
    );
    assert!(ok.key_path.starts_with(trust.store.dir()));
}

#[test]
fn ed25519_signature_verifies() {
    let f = fixtures();
    let trust = trust_with(&[(&f.ed, TrustScope::Root)]);
    let ok = verify(&trust, "example.org/tool", &f.ed.sig, &f.data).unwrap();
    assert_eq!(ok.fingerprint, f.ed.fpr);
    assert_eq!(ok.signing_key, f.ed.fpr);
    assert_eq!(ok.scope, TrustScope::Root);
    let listed = trust.store.list().unwrap();
    assert_eq!(listed[0].algorithm, "ed25519");
}

#[test]
fn signing_subkey_verifies_and_names_the_subkey() {
    let f = fixtures();
    let trust = trust_with(&[(&f.sub, prefix("example.com"))]);
    let ok = verify(&trust, "example.com/sub/app", &f.sub.sig, &f.data).unwrap();
    assert_eq!(ok.fingerprint, f.sub.fpr);
    assert_eq!(ok.signing_key, f.sub_signing_fpr);
    assert_ne!(ok.signing_key, ok.fingerprint);
    let listed = trust.store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert!(
        listed[0].subkeys.contains(&f.sub_signing_fpr),
        "{:?}",
        listed[0]
    );
}

#[test]
fn root_key_covers_every_name() {
    let f = fixtures();
    let trust = trust_with(&[(&f.rsa, TrustScope::Root)]);
    for name in [
        "example.com/app",
        "a",
        "other.org/deep/name/x",
        "example.com/foobar",
    ] {
        let ok = verify(&trust, name, &f.rsa.sig, &f.data).unwrap();
        assert_eq!(ok.scope, TrustScope::Root, "{name}");
    }
}

#[test]
fn the_most_specific_scope_is_reported() {
    let f = fixtures();
    let trust = trust_with(&[
        (&f.ed, TrustScope::Root),
        (&f.ed, prefix("example.com")),
        (&f.ed, prefix("example.com/foo")),
    ]);
    let ok = verify(&trust, "example.com/foo/x", &f.ed.sig, &f.data).unwrap();
    assert_eq!(ok.scope, prefix("example.com/foo"));
    let ok = verify(&trust, "example.com/bar", &f.ed.sig, &f.data).unwrap();
    assert_eq!(ok.scope, prefix("example.com"));
    let ok = verify(&trust, "example.net/bar", &f.ed.sig, &f.data).unwrap();
    assert_eq!(ok.scope, TrustScope::Root);
}

// ---------------------------------------------------------------------------------------
// Failures, each with its kind.

#[test]
fn tampered_data_is_a_bad_signature() {
    let f = fixtures();
    let trust = trust_with(&[
        (&f.rsa, TrustScope::Root),
        (&f.ed, TrustScope::Root),
        (&f.sub, TrustScope::Root),
    ]);
    let bad = tampered(&f.data);
    for key in [&f.rsa, &f.ed, &f.sub] {
        let msg = assert_kind(
            verify(&trust, "example.com/app", &key.sig, &bad),
            ErrorKind::BadSignature,
        );
        assert!(msg.contains("does not match"), "{msg}");
    }
    // Truncated and extended data too.
    assert_kind(
        verify(
            &trust,
            "example.com/app",
            &f.rsa.sig,
            &f.data[..f.data.len() - 1],
        ),
        ErrorKind::BadSignature,
    );
    let mut longer = f.data.clone();
    longer.push(0);
    assert_kind(
        verify(&trust, "example.com/app", &f.ed.sig, &longer),
        ErrorKind::BadSignature,
    );
    // A signature of other data by a trusted key.
    assert_kind(
        verify(&trust, "example.com/app", &f.rsa.sig, b"other data"),
        ErrorKind::BadSignature,
    );
}

#[test]
fn untrusted_key_is_refused() {
    let f = fixtures();
    let empty = trust_with(&[]);
    let msg = assert_kind(
        verify(&empty, "example.com/app", &f.rsa.sig, &f.data),
        ErrorKind::UntrustedKey,
    );
    assert!(msg.contains(&f.rsa.fpr), "{msg}");
    let trust = trust_with(&[(&f.rsa, TrustScope::Root), (&f.ed, prefix("example.com"))]);
    let msg = assert_kind(
        verify(&trust, "example.com/app", &f.other.sig, &f.data),
        ErrorKind::UntrustedKey,
    );
    assert!(msg.contains(&f.other.fpr), "{msg}");
}

#[test]
fn key_trusted_for_another_prefix_is_refused() {
    let f = fixtures();
    let trust = trust_with(&[(&f.ed, prefix("example.com/foo"))]);
    for name in [
        "example.com/foobar",
        "example.com",
        "example.com/fo",
        "other.org/foo",
    ] {
        let msg = assert_kind(
            verify(&trust, name, &f.ed.sig, &f.data),
            ErrorKind::KeyWrongPrefix,
        );
        assert!(
            msg.contains("example.com/foo") && msg.contains(&f.ed.fpr),
            "{msg}"
        );
    }
    for name in [
        "example.com/foo",
        "example.com/foo/bar",
        "example.com/foo/bar/baz",
    ] {
        let ok = verify(&trust, name, &f.ed.sig, &f.data).unwrap();
        assert_eq!(ok.scope, prefix("example.com/foo"), "{name}");
    }
    // A subkey's signature follows its primary key's scope.
    let trust = trust_with(&[(&f.sub, prefix("example.com/foo"))]);
    assert_kind(
        verify(&trust, "example.com/foobar", &f.sub.sig, &f.data),
        ErrorKind::KeyWrongPrefix,
    );
}

#[test]
fn sha1_signature_is_weak() {
    let f = fixtures();
    let trust = trust_with(&[(&f.rsa, TrustScope::Root)]);
    let msg = assert_kind(
        verify(&trust, "example.com/app", &f.rsa_sha1_sig, &f.data),
        ErrorKind::WeakSignatureHash,
    );
    assert!(msg.contains("SHA1"), "{msg}");
    // The hash is checked before the key is looked up.
    let empty = trust_with(&[]);
    assert_kind(
        verify(&empty, "example.com/app", &f.rsa_sha1_sig, &f.data),
        ErrorKind::WeakSignatureHash,
    );
}

#[test]
fn expired_key_is_refused() {
    let f = fixtures();
    let trust = trust_with(&[]);
    // Adding it now is refused.
    let msg = assert_kind(
        trust.store.add(&f.expired.public, TrustScope::Root),
        ErrorKind::KeyExpired,
    );
    assert!(
        msg.contains(&f.expired.fpr) && msg.contains("2020-01-03"),
        "{msg}"
    );
    // Trusted while it was valid: its signature made then no longer counts now.
    plant(
        &trust.store,
        &TrustScope::Root,
        &f.expired,
        &f.expired.public,
    );
    let listed = trust.store.list().unwrap();
    assert_eq!(
        listed[0].expires_at,
        Some(listed[0].created_at + 2 * 86_400)
    );
    let msg = assert_kind(
        verify(&trust, "example.com/app", &f.expired.sig, &f.data),
        ErrorKind::KeyExpired,
    );
    assert!(
        msg.contains("expired on 2020-01-03") && msg.contains("2020-01-01"),
        "{msg}"
    );
}

#[test]
fn revoked_key_is_refused() {
    let f = fixtures();
    let trust = trust_with(&[]);
    let msg = assert_kind(
        trust.store.add(&f.revoked.public, TrustScope::Root),
        ErrorKind::KeyRevoked,
    );
    assert!(msg.contains(&f.revoked.fpr), "{msg}");
    // Trusted before the revocation: its signatures verify...
    trust
        .store
        .add(&f.revoked_public_before, TrustScope::Root)
        .unwrap();
    verify(&trust, "example.com/app", &f.revoked.sig, &f.data).unwrap();
    // ...until the revocation is in the stored key.
    plant(
        &trust.store,
        &TrustScope::Root,
        &f.revoked,
        &f.revoked.public,
    );
    let msg = assert_kind(
        verify(&trust, "example.com/app", &f.revoked.sig, &f.data),
        ErrorKind::KeyRevoked,
    );
    assert!(
        msg.contains(&f.revoked.fpr) && msg.contains("revoked"),
        "{msg}"
    );
    // A stale copy cannot undo the revocation, in any scope.
    assert_kind(
        trust
            .store
            .add(&f.revoked_public_before, prefix("example.com")),
        ErrorKind::KeyRevoked,
    );
    assert_kind(
        trust.store.add(&f.revoked_public_before, TrustScope::Root),
        ErrorKind::KeyRevoked,
    );
}

#[test]
fn revoked_signing_subkey_is_refused() {
    let f = fixtures();
    let before = trust_with(&[]);
    before
        .store
        .add(&f.subrev_public_before, TrustScope::Root)
        .unwrap();
    verify(&before, "example.com/app", &f.subrev.sig, &f.data).unwrap();
    // The primary key is not revoked, so the key can be added with the subkey's revocation.
    let after = trust_with(&[(&f.subrev, TrustScope::Root)]);
    let msg = assert_kind(
        verify(&after, "example.com/app", &f.subrev.sig, &f.data),
        ErrorKind::KeyRevoked,
    );
    assert!(
        msg.contains("signing subkey") && msg.contains(&f.subrev.fpr),
        "{msg}"
    );
}

#[test]
fn expired_signing_subkey_is_refused() {
    let f = fixtures();
    // The primary key never expires, so the key can be added.
    let trust = trust_with(&[(&f.subexp, TrustScope::Root)]);
    assert_eq!(trust.store.list().unwrap()[0].expires_at, None);
    let msg = assert_kind(
        verify(&trust, "example.com/app", &f.subexp.sig, &f.data),
        ErrorKind::KeyExpired,
    );
    assert!(
        msg.contains("signing subkey") && msg.contains("2020-01-03"),
        "{msg}"
    );
}

#[test]
fn key_without_signing_flag_is_refused() {
    let f = fixtures();
    // The key is valid (not revoked, not expired), so it can be trusted...
    let trust = trust_with(&[(&f.nosign, TrustScope::Root)]);
    // ...but its self-signature no longer allows signing.
    let msg = assert_kind(
        verify(&trust, "example.com/app", &f.nosign.sig, &f.data),
        ErrorKind::KeyNotSigning,
    );
    assert!(
        msg.contains(&f.nosign.fpr) && msg.contains("signing flag"),
        "{msg}"
    );
}

#[test]
fn malformed_signatures_are_bad_openpgp() {
    let f = fixtures();
    let trust = trust_with(&[(&f.ed, TrustScope::Root)]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("binary signature", f.ed_binary_sig.clone()),
        ("garbage", b"this is not a signature at all".to_vec()),
        ("empty", Vec::new()),
        ("a public key", f.ed.public.clone()),
        (
            "armor with a broken body",
            b"-----BEGIN PGP SIGNATURE-----\n\nAAAA!!!!\n-----END PGP SIGNATURE-----\n".to_vec(),
        ),
        ("truncated armor", f.ed.sig[..f.ed.sig.len() / 2].to_vec()),
    ];
    for (what, sig) in cases {
        let result = verify(&trust, "example.com/app", &sig, &f.data);
        assert_kind(result, ErrorKind::BadOpenpgp);
        let result = StreamingVerifier::start(&trust.store, "example.com/app", &sig).map(|_| what);
        assert_kind(result, ErrorKind::BadOpenpgp);
    }
}

#[test]
fn invalid_name_is_refused() {
    let f = fixtures();
    let trust = trust_with(&[(&f.ed, TrustScope::Root)]);
    assert_kind(
        verify(&trust, "Not A Name", &f.ed.sig, &f.data),
        ErrorKind::InvalidValue,
    );
}

// ---------------------------------------------------------------------------------------
// The trust store.

#[test]
fn add_list_remove_round_trip() {
    let f = fixtures();
    let trust = trust_with(&[]);
    let store = &trust.store;
    assert!(store.list().unwrap().is_empty());

    let added = store.add(&f.rsa.public, prefix("example.com/app")).unwrap();
    assert_eq!(added.fingerprint, f.rsa.fpr);
    assert_eq!(added.key_id, f.rsa.fpr[24..]);
    assert_eq!(added.user_ids, ["RSA Signer <rsa@example.com>"]);
    assert_eq!(added.algorithm, "rsa2048");
    assert_eq!(added.expires_at, None);
    assert_eq!(
        added.path,
        store
            .dir()
            .join("prefix.d")
            .join("example.com,app")
            .join(format!("{}.asc", f.rsa.fpr))
    );
    store.add(&f.ed.public, TrustScope::Root).unwrap();
    store.add(&f.rsa.public, TrustScope::Root).unwrap();
    // Adding again replaces, never duplicates.
    store.add(&f.rsa.public, TrustScope::Root).unwrap();
    assert!(
        store
            .dir()
            .join("root.d")
            .join(format!("{}.asc", f.ed.fpr))
            .is_file()
    );

    let listed = store.list().unwrap();
    let summary: Vec<(&str, &TrustScope)> = listed
        .iter()
        .map(|k| (k.fingerprint.as_str(), &k.scope))
        .collect();
    let mut root = [f.rsa.fpr.as_str(), f.ed.fpr.as_str()];
    root.sort();
    assert_eq!(
        summary,
        [
            (root[0], &TrustScope::Root),
            (root[1], &TrustScope::Root),
            (f.rsa.fpr.as_str(), &prefix("example.com/app")),
        ]
    );
    // No temporary files left behind.
    for dir in [
        store.dir().join("root.d"),
        store.dir().join("prefix.d/example.com,app"),
    ] {
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name();
            assert!(name.to_string_lossy().ends_with(".asc"), "{name:?}");
        }
    }

    assert_eq!(store.keys_for("example.com/app").unwrap().len(), 3);
    assert_eq!(store.keys_for("example.com/application").unwrap().len(), 2);

    // Removal by fingerprint, in any case and with spaces, from every scope.
    let spaced: String = f
        .rsa
        .fpr
        .to_uppercase()
        .as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    let removed = store.remove(&spaced).unwrap();
    assert_eq!(removed.len(), 2);
    assert!(removed.iter().all(|k| k.fingerprint == f.rsa.fpr));
    assert!(!store.dir().join("prefix.d/example.com,app").exists());
    let listed = store.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].fingerprint, f.ed.fpr);

    // Removal by long key ID.
    let removed = store.remove(&f.ed.fpr[24..]).unwrap();
    assert_eq!(removed.len(), 1);
    assert!(store.list().unwrap().is_empty());

    let msg = assert_kind(store.remove(&f.ed.fpr), ErrorKind::NotFound);
    assert!(msg.contains(&f.ed.fpr), "{msg}");
    assert_kind(
        store.remove("not-a-fingerprint"),
        ErrorKind::InvalidArgument,
    );
}

#[test]
fn add_refuses_what_is_not_one_public_key() {
    let f = fixtures();
    let trust = trust_with(&[]);
    let store = &trust.store;
    let msg = assert_kind(
        store.add(&f.other_secret, TrustScope::Root),
        ErrorKind::BadOpenpgp,
    );
    assert!(msg.contains("secret key"), "{msg}");
    assert_kind(
        store.add(&f.other_binary_public, TrustScope::Root),
        ErrorKind::BadOpenpgp,
    );
    assert_kind(
        store.add(b"garbage", TrustScope::Root),
        ErrorKind::BadOpenpgp,
    );
    assert_kind(
        store.add(&f.rsa.sig, TrustScope::Root),
        ErrorKind::BadOpenpgp,
    );
    assert_kind(
        store.add(
            b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n-----END PGP PUBLIC KEY BLOCK-----\n",
            TrustScope::Root,
        ),
        ErrorKind::BadOpenpgp,
    );
    // Two keys in one armored block (gpg --armor --export A B), or two armored blocks.
    let msg = assert_kind(
        store.add(&f.two_public, TrustScope::Root),
        ErrorKind::BadOpenpgp,
    );
    assert!(msg.contains("2 public keys"), "{msg}");
    let concatenated = [f.rsa.public.clone(), f.ed.public.clone()].concat();
    let msg = assert_kind(
        store.add(&concatenated, TrustScope::Root),
        ErrorKind::BadOpenpgp,
    );
    assert!(msg.contains("2 armored blocks"), "{msg}");
    // An invalid prefix.
    assert_kind(
        store.add(&f.rsa.public, TrustScope::Prefix("Bad Prefix".into())),
        ErrorKind::InvalidValue,
    );
    assert!(TrustScope::prefix("example.com/").is_err());
    // Nothing was stored by the refusals.
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn damaged_trust_store_fails_closed() {
    let f = fixtures();
    let trust = trust_with(&[(&f.ed, TrustScope::Root)]);
    let path = trust
        .store
        .dir()
        .join("root.d")
        .join(format!("{}.asc", f.rsa.fpr));
    // A key under another key's name.
    std::fs::write(&path, &f.ed.public).unwrap();
    let msg = assert_kind(trust.store.list(), ErrorKind::BadOpenpgp);
    assert!(msg.contains(&f.rsa.fpr), "{msg}");
    assert_kind(
        verify(&trust, "example.com/app", &f.ed.sig, &f.data),
        ErrorKind::BadOpenpgp,
    );
    std::fs::write(&path, b"garbage").unwrap();
    assert_kind(trust.store.list(), ErrorKind::BadOpenpgp);
    std::fs::remove_file(&path).unwrap();
    // Temporary files and other names are ignored.
    std::fs::write(
        trust.store.dir().join("root.d").join(".x.asc.tmp-1-2"),
        b"partial",
    )
    .unwrap();
    std::fs::write(trust.store.dir().join("root.d").join("README"), b"notes").unwrap();
    assert_eq!(trust.store.list().unwrap().len(), 1);
}

#[tokio::test]
async fn store_facade_gives_the_config_trust_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = acikit::Store::open(dir.path()).await.unwrap();
    let trust = store.trust().unwrap();
    assert_eq!(trust.dir(), dir.path().join("config").join("trust"));
    assert!(trust.dir().is_dir());
    let f = fixtures();
    trust.add(&f.ed.public, TrustScope::Root).unwrap();
    assert_eq!(store.trust().unwrap().list().unwrap().len(), 1);
}

// ---------------------------------------------------------------------------------------
// The streaming verifier.

#[test]
fn streaming_verifier_agrees_with_verify_detached() {
    let f = fixtures();
    let trust = trust_with(&[
        (&f.rsa, prefix("example.com/app")),
        (&f.ed, TrustScope::Root),
        (&f.sub, prefix("example.com")),
        (&f.nosign, TrustScope::Root),
    ]);
    plant(
        &trust.store,
        &TrustScope::Root,
        &f.expired,
        &f.expired.public,
    );
    let bad = tampered(&f.data);
    let cases: Vec<(&str, &[u8], &[u8])> = vec![
        ("example.com/app", &f.rsa.sig, &f.data),
        ("example.com/app", &f.ed.sig, &f.data),
        ("example.com/app/x", &f.sub.sig, &f.data),
        ("example.com/app", &f.rsa.sig, &bad),
        ("example.com/app", &f.sub.sig, &bad),
        ("example.com/application", &f.rsa.sig, &f.data),
        ("example.com/app", &f.other.sig, &f.data),
        ("example.com/app", &f.rsa_sha1_sig, &f.data),
        ("example.com/app", &f.expired.sig, &f.data),
        ("example.com/app", &f.nosign.sig, &f.data),
        ("example.com/app", &f.ed.sig, &[]),
    ];
    for (name, sig, data) in cases {
        let direct = verify(&trust, name, sig, data);
        let streamed = verify_streaming(&trust, name, sig, data);
        match (&direct, &streamed) {
            (Ok(a), Ok(b)) => assert_eq!(a, b, "{name}"),
            (Err(a), Err(b)) => {
                assert_eq!((a.kind(), a.message()), (b.kind(), b.message()), "{name}")
            }
            _ => panic!(
                "{name}: verify_detached gave {direct:?}, the streaming verifier {streamed:?}"
            ),
        }
    }
}

#[test]
fn streaming_verifier_refuses_before_any_data() {
    let f = fixtures();
    let trust = trust_with(&[(&f.ed, prefix("example.com/foo"))]);
    let result =
        StreamingVerifier::start(&trust.store, "example.com/foobar", &f.ed.sig).map(|_| ());
    assert_kind(result, ErrorKind::KeyWrongPrefix);
    let result = StreamingVerifier::start(&trust.store, "example.com/foo", &f.rsa.sig).map(|_| ());
    assert_kind(result, ErrorKind::UntrustedKey);
}

#[test]
fn read_errors_are_not_bad_signatures() {
    struct Failing(usize);
    impl std::io::Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.0 == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ConnectionReset,
                    "connection reset",
                ));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(0);
            self.0 -= n;
            Ok(n)
        }
    }
    let f = fixtures();
    let trust = trust_with(&[(&f.ed, TrustScope::Root)]);
    let msg = assert_kind(
        verify_detached(&trust.store, "example.com/app", &f.ed.sig, Failing(10_000)),
        ErrorKind::Io,
    );
    assert!(msg.contains("connection reset"), "{msg}");
}
