//! What a build without some of the core's cargo features does. Run with
//! `cargo test -p acikit --no-default-features --test features` (in the default build, with
//! every feature, there is nothing to check here).

/// Without `postgres`, a store asked to use PostgreSQL fails to open with `unsupported`,
/// naming the missing feature, and its folder is not created.
#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn a_postgres_store_without_the_feature_is_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("store");
    let options = acikit::store::StoreOptions::default()
        .database_url("postgres://ann:secret@127.0.0.1:5432/images");
    let err = match acikit::Store::open_with(&store_dir, options).await {
        Ok(_) => panic!("a PostgreSQL store opened without the postgres feature"),
        Err(err) => err,
    };
    assert_eq!(err.kind(), acikit::ErrorKind::Unsupported, "{err}");
    assert!(err.message().contains("`postgres`"), "{err}");
    assert!(!err.message().contains("secret"), "{err}");
    assert!(!store_dir.exists());
}
