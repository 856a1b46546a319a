//! `acikit::trust::sign_detached` against real GnuPG: keys made by `gpg` in a throw-away
//! GNUPGHOME and exported with `--export-secret-keys`; our signatures must pass
//! `gpg --verify` and our own `verify_detached` with the public key trusted.

use std::path::Path;

use crate::common::gpg::Gpg;

use acikit::ErrorKind;
use acikit::trust::{
    TrustScope, TrustStore, sign_detached, sign_detached_with_info, verify_detached,
};

const NAME: &str = "example.com/app";

fn gpg() -> Gpg {
    Gpg::in_dir(tempfile::Builder::new().prefix("gpg").tempdir().unwrap())
}

fn data(dir: &Path) -> (std::path::PathBuf, Vec<u8>) {
    let bytes: Vec<u8> = (0..(1 << 20) + 77u32)
        .map(|i| (i * 31 % 253) as u8)
        .collect();
    let path = dir.join("image.aci");
    std::fs::write(&path, &bytes).unwrap();
    (path, bytes)
}

/// Signs with the secret key of `fpr`, then checks with gpg and with our verifier.
fn sign_and_check(gpg: &Gpg, fpr: &str, expect_signer: &str) {
    let work = tempfile::tempdir().unwrap();
    let (path, bytes) = data(work.path());
    let secret = gpg.export_secret(fpr);
    let signed = sign_detached_with_info(&secret, None, &bytes[..]).unwrap();
    assert_eq!(signed.fingerprint, fpr);
    assert_eq!(signed.signing_key, expect_signer);
    assert_eq!(signed.data_len, bytes.len() as u64);
    assert!(signed.armored.starts_with(b"-----BEGIN PGP SIGNATURE-----"));
    let sig_path = work.path().join("image.aci.asc");
    std::fs::write(&sig_path, &signed.armored).unwrap();

    let (ok, status) = gpg.verify(&sig_path, &path);
    assert!(ok, "gpg --verify refused our signature: {status}");
    assert!(status.contains("[GNUPG:] GOODSIG"), "{status}");
    assert!(
        status.contains(&format!("VALIDSIG {}", expect_signer.to_uppercase())),
        "{status}"
    );

    let trust = TrustStore::new(work.path().join("trust"));
    trust
        .add(&gpg.export(fpr), TrustScope::prefix("example.com").unwrap())
        .unwrap();
    let verified = verify_detached(&trust, NAME, &signed.armored, &bytes[..]).unwrap();
    assert_eq!(verified.fingerprint, fpr);
    assert_eq!(verified.signing_key, expect_signer);
    assert_eq!(verified.data_len, bytes.len() as u64);

    // The signature is of these bytes: one changed byte fails both verifiers.
    let mut tampered = bytes.clone();
    tampered[1000] ^= 1;
    std::fs::write(&path, &tampered).unwrap();
    let (ok, status) = gpg.verify(&sig_path, &path);
    assert!(!ok, "gpg accepted a signature of other data: {status}");
    let err = verify_detached(&trust, NAME, &signed.armored, &tampered[..]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadSignature);
}

#[test]
fn ed25519_signature_passes_gpg_and_our_verifier() {
    let gpg = gpg();
    let fpr = gpg.gen_key(&[], "Ed <ed@example.com>", "ed25519", "sign", "never");
    sign_and_check(&gpg, &fpr, &fpr);
}

#[test]
fn rsa_signature_passes_gpg_and_our_verifier() {
    let gpg = gpg();
    let fpr = gpg.gen_key(&[], "Rsa <rsa@example.com>", "rsa2048", "sign", "never");
    sign_and_check(&gpg, &fpr, &fpr);
}

#[test]
fn certify_only_primary_signs_with_its_signing_subkey() {
    let gpg = gpg();
    let fpr = gpg.gen_key(&[], "Sub <sub@example.com>", "ed25519", "cert", "never");
    gpg.run(&["--quick-add-key", &fpr, "ed25519", "sign", "never"], None);
    let listing =
        String::from_utf8(gpg.run(&["--with-colons", "--list-keys", &fpr], None)).unwrap();
    let sub_fpr = listing
        .lines()
        .filter_map(|l| l.strip_prefix("fpr:"))
        .filter_map(|l| l.split(':').nth(8))
        .nth(1)
        .expect("the subkey's fingerprint")
        .to_lowercase();
    sign_and_check(&gpg, &fpr, &sub_fpr);
}

#[test]
fn key_that_cannot_sign_is_refused() {
    let gpg = gpg();
    let fpr = gpg.gen_key(&[], "Cert <cert@example.com>", "rsa2048", "cert", "never");
    let err = sign_detached(&gpg.export_secret(&fpr), None, &b"data"[..]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyNotSigning, "{err}");
}

#[test]
fn expired_key_is_refused() {
    let gpg = gpg();
    // Made in 2020 with a 2-day lifetime.
    let fpr = gpg.gen_key(
        &["--faked-system-time", "20200101T000000!"],
        "Old <old@example.com>",
        "ed25519",
        "sign",
        "2d",
    );
    let err = sign_detached(&gpg.export_secret(&fpr), None, &b"data"[..]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::KeyExpired, "{err}");
}

#[test]
fn public_key_or_garbage_as_secret_key_is_bad_openpgp() {
    let gpg = gpg();
    let fpr = gpg.gen_key(&[], "Pub <pub@example.com>", "ed25519", "sign", "never");
    let err = sign_detached(&gpg.export(&fpr), None, &b"data"[..]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadOpenpgp, "{err}");
    assert!(err.message().contains("public key"), "{err}");
    let err = sign_detached(b"not a key", None, &b"data"[..]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadOpenpgp, "{err}");
    let mut two = gpg.export_secret(&fpr);
    two.extend(gpg.export_secret(&fpr));
    let err = sign_detached(&two, None, &b"data"[..]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::BadOpenpgp, "{err}");
}

#[test]
fn protected_key_needs_its_passphrase() {
    let gpg = gpg();
    let uid = "Locked <locked@example.com>";
    // Made with a passphrase (the later --passphrase wins over the helper's empty one).
    let fpr = gpg.gen_key(&["--passphrase", "s3cret"], uid, "ed25519", "sign", "never");
    let secret = gpg.run(
        &[
            "--passphrase",
            "s3cret",
            "--armor",
            "--export-secret-keys",
            &fpr,
        ],
        None,
    );
    let err = sign_detached(&secret, None, &b"data"[..]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let err = sign_detached(&secret, Some("wrong"), &b"data"[..]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}");
    let work = tempfile::tempdir().unwrap();
    let (path, bytes) = data(work.path());
    let sig = sign_detached(&secret, Some("s3cret"), &bytes[..]).unwrap();
    let sig_path = work.path().join("image.aci.asc");
    std::fs::write(&sig_path, &sig).unwrap();
    let (ok, status) = gpg.verify(&sig_path, &path);
    assert!(ok, "{status}");
}
