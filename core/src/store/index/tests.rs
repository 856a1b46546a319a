use std::time::{Duration, Instant};

#[cfg(feature = "postgres")]
use sqlx::postgres::PgPool;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};

use super::connect::MIGRATOR;
use super::*;
use crate::schema::ImageManifest;

fn manifest(name: &str, labels: &[(&str, &str)]) -> ImageManifest {
    let labels: Vec<String> = labels
        .iter()
        .map(|(n, v)| format!(r#"{{"name":"{n}","value":"{v}"}}"#))
        .collect();
    let json = format!(
        r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{name}","labels":[{}],"annotations":[{{"name":"authors","value":"Ann <ann@example.com>"}},{{"name":"created","value":"2024-01-02T03:04:05Z"}}]}}"#,
        labels.join(",")
    );
    ImageManifest::parse(json.as_bytes()).unwrap()
}

/// An image ID of 128 hex digits starting with `hex_start`.
fn id(hex_start: &str) -> ImageId {
    ImageId::parse(&format!("sha512-{hex_start:0<128}")).unwrap()
}

fn image(image_id: ImageId, manifest: ImageManifest, content_size: u64) -> NewImage {
    NewImage {
        image_id,
        manifest,
        archive_size: 1000,
        tar_size: 10_240,
        content_size,
        recipe_size: 300,
        entries: 5,
        origin: Some("/tmp/image.aci".into()),
    }
}

fn app(version: &str, os: &str) -> ImageManifest {
    manifest(
        "example.com/app",
        &[("version", version), ("os", os), ("arch", "amd64")],
    )
}

fn query(labels: &[(&str, &str)]) -> Vec<(String, String)> {
    labels
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

async fn count(index: &Index, sql: &'static str) -> i64 {
    index.query_i64(sql, None).await.unwrap()
}

/// The SQLite pool of an index opened from a file.
fn sqlite_pool(index: &Index) -> &SqlitePool {
    match &index.pool {
        Pool::Sqlite(pool) => pool,
        #[cfg(feature = "postgres")]
        Pool::Postgres(_) => panic!("a SQLite index was expected"),
    }
}

/// The PostgreSQL database the tests use: `$ACIKIT_TEST_POSTGRES`, else the role and
/// database that `.ci/run` creates on the local server.
#[cfg(feature = "postgres")]
fn test_postgres_url() -> String {
    std::env::var("ACIKIT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://acikit:acikit@127.0.0.1:5432/acikit_test".into())
}

/// An empty index for one test: a SQLite file in a temporary folder, or a schema of
/// its own in the test PostgreSQL database.
struct TestDb {
    index: Index,
    location: Location,
}

enum Location {
    Sqlite(tempfile::TempDir),
    #[cfg(feature = "postgres")]
    Postgres {
        admin: PgPool,
        url: String,
        schema: String,
    },
}

impl TestDb {
    async fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(&dir.path().join(INDEX_FILE_NAME))
            .await
            .unwrap();
        TestDb {
            index,
            location: Location::Sqlite(dir),
        }
    }

    #[cfg(feature = "postgres")]
    async fn postgres() -> TestDb {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let base = test_postgres_url();
        let admin = PgPool::connect(&base).await.unwrap_or_else(|e| {
            panic!(
                "the test PostgreSQL at {} is not reachable ({e}): start it and create its \
                 role and database as .ci/run does, or set ACIKIT_TEST_POSTGRES",
                database_identity(&base).unwrap_or_default()
            )
        });
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let schema = format!("index_unit_{}_{n}", std::process::id());
        for sql in [
            format!("DROP SCHEMA IF EXISTS {schema} CASCADE"),
            format!("CREATE SCHEMA {schema}"),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&admin)
                .await
                .unwrap();
        }
        let separator = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");
        let index = Index::connect(&url).await.unwrap();
        TestDb {
            index,
            location: Location::Postgres { admin, url, schema },
        }
    }

    /// A second handle on the same database, as another process would open.
    async fn open_again(&self) -> Index {
        match &self.location {
            Location::Sqlite(dir) => Index::open(&dir.path().join(INDEX_FILE_NAME))
                .await
                .unwrap(),
            #[cfg(feature = "postgres")]
            Location::Postgres { url, .. } => Index::connect(url).await.unwrap(),
        }
    }

    async fn finish(self) {
        self.index.close().await;
        #[cfg(feature = "postgres")]
        if let Location::Postgres { admin, schema, .. } = self.location {
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
                .execute(&admin)
                .await
                .unwrap();
            admin.close().await;
        }
    }
}

/// Runs each named `async fn(&TestDb)` on an empty SQLite index and on an empty
/// PostgreSQL one.
macro_rules! on_both_databases {
    ($($test:ident),* $(,)?) => {
        $(
            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let db = super::TestDb::sqlite().await;
                    super::$test(&db).await;
                    db.finish().await;
                }

                #[cfg(feature = "postgres")]
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    let db = super::TestDb::postgres().await;
                    super::$test(&db).await;
                    db.finish().await;
                }
            }
        )*
    };
}

on_both_databases!(
    insert_get_and_prefix_lookup,
    find_by_name_matches_labels_newest_first,
    list_loads_labels_for_many_images,
    inserting_twice_changes_nothing,
    concurrent_inserts_from_two_handles_leave_one_row,
    remove_cascades_to_labels_and_keeps_fetch_state,
    touch_updates_last_use,
    stats_sum_the_images,
    fetch_state_round_trip,
    bad_input_is_rejected_before_writing,
);

#[tokio::test]
async fn migrations_run_on_a_fresh_file_and_reopen_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(INDEX_FILE_NAME);
    let index = Index::open(&path).await.unwrap();
    assert!(path.exists());
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(sqlite_pool(&index))
        .await
        .unwrap();
    assert_eq!(mode, "wal");
    let fk: i64 = sqlx::query_scalar("PRAGMA foreign_keys")
        .fetch_one(sqlite_pool(&index))
        .await
        .unwrap();
    assert_eq!(fk, 1);
    // synchronous: 2 = FULL.
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(sqlite_pool(&index))
        .await
        .unwrap();
    assert_eq!(sync, 2);
    assert!(
        index
            .insert_image(&image(id("a"), app("1", "linux"), 5))
            .await
            .unwrap()
    );
    index.close().await;

    let index = Index::open(&path).await.unwrap();
    assert_eq!(count(&index, "SELECT COUNT(*) FROM images").await, 1);
    let migrations = count(&index, "SELECT COUNT(*) FROM _sqlx_migrations").await;
    assert_eq!(migrations, MIGRATOR.iter().count() as i64);
    assert!(index.integrity_check().await.unwrap().is_empty());
    index.close().await;
}

/// A store indexed by schema 1 (with per-object rows) opens with the current schema and
/// keeps its images.
#[tokio::test]
async fn a_schema_1_index_upgrades_and_keeps_its_images() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(INDEX_FILE_NAME);
    let first_only = dir.path().join("migrations-v1");
    std::fs::create_dir(&first_only).unwrap();
    let migrations = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    std::fs::copy(
        migrations.join("0001_initial.sql"),
        first_only.join("0001_initial.sql"),
    )
    .unwrap();
    let pool = SqlitePoolOptions::new()
        .connect_with(
            SqliteConnectOptions::new()
                .filename(&path)
                .create_if_missing(true),
        )
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(first_only.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    let image_id = id("ab").to_string();
    sqlx::query(
        "INSERT INTO images VALUES ($1, 'example.com/app', '{}', 1, 2, 3, 4, 5, 6, 7, NULL)",
    )
    .bind(&image_id)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO objects VALUES ('00', 3)")
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO image_objects VALUES ($1, '00')")
        .bind(&image_id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let index = Index::open(&path).await.unwrap();
    let migrations = count(&index, "SELECT COUNT(*) FROM _sqlx_migrations").await;
    assert_eq!(migrations, MIGRATOR.iter().count() as i64);
    assert_eq!(count(&index, "SELECT COUNT(*) FROM images").await, 1);
    let tables = count(
        &index,
        "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('objects', 'image_objects')",
    )
    .await;
    assert_eq!(tables, 0);
    assert!(index.integrity_check().await.unwrap().is_empty());
    index.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_opens_of_a_fresh_file_both_succeed() {
    for _ in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(INDEX_FILE_NAME);
        let (a, b) = tokio::join!(Index::open(&path), Index::open(&path));
        let (a, b) = (a.unwrap(), b.unwrap());
        assert!(a.list().await.unwrap().is_empty());
        assert!(b.list().await.unwrap().is_empty());
        a.close().await;
        b.close().await;
    }
}

async fn insert_get_and_prefix_lookup(db: &TestDb) {
    let index = &db.index;
    let m = app("1.0.0", "linux");
    let new = image(id("aa11"), m.clone(), 300);
    assert!(index.insert_image(&new).await.unwrap());
    index
        .insert_image(&image(id("aa12"), app("1.0.1", "linux"), 100))
        .await
        .unwrap();
    index
        .insert_image(&image(id("bb"), app("2.0.0", "linux"), 0))
        .await
        .unwrap();

    let got = index.get(&id("aa11")).await.unwrap().unwrap();
    assert_eq!(got.image_id, id("aa11"));
    assert_eq!(got.name, "example.com/app");
    assert_eq!(got.manifest, m.raw());
    assert_eq!(
        got.labels,
        query(&[("version", "1.0.0"), ("os", "linux"), ("arch", "amd64")])
    );
    assert_eq!(got.label("os"), Some("linux"));
    assert_eq!(
        (got.archive_size, got.tar_size, got.content_size),
        (1000, 10_240, 300)
    );
    assert_eq!((got.recipe_size, got.entries), (300, 5));
    assert_eq!(got.origin.as_deref(), Some("/tmp/image.aci"));
    assert_eq!(got.imported_at_ms, got.last_used_at_ms);
    assert!(got.imported_at_ms > 0);
    assert!(index.get(&id("cc")).await.unwrap().is_none());

    let annotations = count(
        index,
        "SELECT COUNT(*) FROM image_annotations WHERE name IN ('authors', 'created')",
    )
    .await;
    assert_eq!(annotations, 3 * 2);

    let prefix = |p: &str| ImageIdPrefix::parse(&format!("sha512-{p}")).unwrap();
    let ids = |records: Vec<ImageRecord>| -> Vec<ImageId> {
        records.into_iter().map(|r| r.image_id).collect()
    };
    assert_eq!(
        ids(index.find_by_prefix(&prefix("aa11")).await.unwrap()),
        [id("aa11")]
    );
    assert_eq!(
        ids(index.find_by_prefix(&prefix("aa1")).await.unwrap()),
        [id("aa11"), id("aa12")]
    );
    assert_eq!(
        ids(index.find_by_prefix(&prefix("b")).await.unwrap()),
        [id("bb")]
    );
    assert!(index.find_by_prefix(&prefix("c")).await.unwrap().is_empty());
    assert!(
        index
            .find_by_prefix(&prefix("ab"))
            .await
            .unwrap()
            .is_empty()
    );
    // A full ID is a prefix of itself.
    let full = ImageIdPrefix::from(id("aa12"));
    let found = index.find_by_prefix(&full).await.unwrap();
    assert_eq!(ids(found.clone()), [id("aa12")]);
    assert_eq!(found[0].labels.len(), 3);
    // Bare "sha512-" with one digit matches every ID starting with it.
    assert_eq!(index.find_by_prefix(&prefix("a")).await.unwrap().len(), 2);
}

async fn find_by_name_matches_labels_newest_first(db: &TestDb) {
    let index = &db.index;
    let v1 = image(id("01"), app("1.0.0", "linux"), 0);
    let v2 = image(id("02"), app("2.0.0", "linux"), 0);
    let bsd = image(id("03"), app("2.0.0", "freebsd"), 0);
    let other = image(
        id("04"),
        manifest("example.com/other", &[("version", "2.0.0")]),
        0,
    );
    index.insert_image_at(&v1, 1_000).await.unwrap();
    index.insert_image_at(&v2, 2_000).await.unwrap();
    index.insert_image_at(&bsd, 1_500).await.unwrap();
    index.insert_image_at(&other, 3_000).await.unwrap();

    let ids = |records: Vec<ImageRecord>| -> Vec<ImageId> {
        records.into_iter().map(|r| r.image_id).collect()
    };
    let find = |labels: &[(&str, &str)]| {
        let labels = query(labels);
        let index = index.clone();
        async move {
            ids(index
                .find_by_name("example.com/app", &labels)
                .await
                .unwrap())
        }
    };
    // No labels: every version, newest import first.
    assert_eq!(find(&[]).await, [id("02"), id("03"), id("01")]);
    // Absent `version` matches any version: the newest linux import comes first.
    assert_eq!(find(&[("os", "linux")]).await, [id("02"), id("01")]);
    assert_eq!(
        find(&[("os", "linux"), ("arch", "amd64")]).await,
        [id("02"), id("01")]
    );
    assert_eq!(find(&[("version", "1.0.0")]).await, [id("01")]);
    assert_eq!(
        find(&[("version", "2.0.0"), ("os", "freebsd")]).await,
        [id("03")]
    );
    // A wrong value, or a label the image lacks, excludes it.
    assert!(find(&[("os", "darwin")]).await.is_empty());
    assert!(find(&[("channel", "stable")]).await.is_empty());
    // Two different values for one label never match.
    assert!(find(&[("os", "linux"), ("os", "freebsd")]).await.is_empty());
    assert!(
        index
            .find_by_name("example.com/none", &[])
            .await
            .unwrap()
            .is_empty()
    );
    let found = index
        .find_by_name("example.com/app", &query(&[("version", "1.0.0")]))
        .await
        .unwrap();
    assert_eq!(found[0].imported_at_ms, 1_000);
    assert_eq!(found[0].label("version"), Some("1.0.0"));

    // Same import time: image ID breaks the tie.
    let same = image(id("00"), app("3.0.0", "linux"), 0);
    index.insert_image_at(&same, 2_000).await.unwrap();
    assert_eq!(
        find(&[("os", "linux")]).await,
        [id("00"), id("02"), id("01")]
    );

    // list: by name, then newest first.
    let listed = ids(index.list().await.unwrap());
    assert_eq!(listed, [id("00"), id("02"), id("03"), id("01"), id("04")]);
}

async fn list_loads_labels_for_many_images(db: &TestDb) {
    let index = &db.index;
    let n = LABELS_PER_IMAGE_MAX + 8;
    for i in 0..n {
        let version = format!("1.0.{i}");
        let new = image(id(&format!("{i:04x}")), app(&version, "linux"), 0);
        index.insert_image_at(&new, i as i64).await.unwrap();
    }
    let listed = index.list().await.unwrap();
    assert_eq!(listed.len(), n);
    for (k, record) in listed.iter().enumerate() {
        let i = n - 1 - k;
        assert_eq!(record.image_id, id(&format!("{i:04x}")));
        assert_eq!(record.labels[0], ("version".into(), format!("1.0.{i}")));
        assert_eq!(record.labels.len(), 3);
    }
    let found = index
        .find_by_name("example.com/app", &query(&[("os", "linux")]))
        .await
        .unwrap();
    assert_eq!(found, listed);
}

async fn inserting_twice_changes_nothing(db: &TestDb) {
    let index = &db.index;
    let new = image(id("aa"), app("1", "linux"), 30);
    assert!(index.insert_image_at(&new, 1_000).await.unwrap());
    let mut again = new.clone();
    again.origin = Some("https://example.com/other.aci".into());
    again.content_size = 60;
    assert!(!index.insert_image_at(&again, 2_000).await.unwrap());
    let got = index.get(&id("aa")).await.unwrap().unwrap();
    assert_eq!(got.imported_at_ms, 1_000);
    assert_eq!(got.origin.as_deref(), Some("/tmp/image.aci"));
    assert_eq!(got.content_size, 30);
    assert_eq!(count(index, "SELECT COUNT(*) FROM image_labels").await, 3);
}

async fn concurrent_inserts_from_two_handles_leave_one_row(db: &TestDb) {
    let a = db.open_again().await;
    let b = db.open_again().await;
    for round in 0..5u32 {
        let new = image(id(&format!("{round:02x}")), app("1", "linux"), 2000);
        let (ra, rb) = tokio::join!(a.insert_image(&new), b.insert_image(&new));
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        assert!(
            ra ^ rb,
            "round {round}: exactly one insert wins ({ra}, {rb})"
        );
    }
    assert_eq!(count(&a, "SELECT COUNT(*) FROM images").await, 5);
    assert_eq!(count(&b, "SELECT COUNT(*) FROM image_labels").await, 5 * 3);
    a.close().await;
    b.close().await;
}

async fn remove_cascades_to_labels_and_keeps_fetch_state(db: &TestDb) {
    let index = &db.index;
    let first = image(id("aa"), app("1", "linux"), 30);
    let second = image(id("bb"), app("2", "linux"), 50);
    index.insert_image(&first).await.unwrap();
    index.insert_image(&second).await.unwrap();
    index
        .set_fetch_state(&FetchState {
            url: "https://example.com/app-1.aci".into(),
            etag: None,
            last_modified: None,
            max_age_secs: None,
            downloaded_at_ms: 5,
            image_id: Some(id("aa")),
        })
        .await
        .unwrap();

    assert!(index.remove(&id("aa")).await.unwrap());
    assert!(!index.remove(&id("aa")).await.unwrap());
    assert!(index.get(&id("aa")).await.unwrap().is_none());
    let labels = index
        .query_i64(
            "SELECT COUNT(*) FROM image_labels WHERE image_id = $1",
            Some(id("aa").as_str()),
        )
        .await
        .unwrap();
    assert_eq!(labels, 0);
    assert_eq!(
        count(index, "SELECT COUNT(*) FROM image_annotations").await,
        2
    );
    assert!(index.get(&id("bb")).await.unwrap().is_some());
    // The fetch state stays, without its image.
    let state = index
        .fetch_state("https://example.com/app-1.aci")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(state.image_id, None);
    assert!(index.integrity_check().await.unwrap().is_empty());
}

async fn touch_updates_last_use(db: &TestDb) {
    let index = &db.index;
    index
        .insert_image_at(&image(id("aa"), app("1", "linux"), 0), 1_000)
        .await
        .unwrap();
    index.touch(&id("aa")).await.unwrap();
    index.touch(&id("bb")).await.unwrap();
    let got = index.get(&id("aa")).await.unwrap().unwrap();
    assert_eq!(got.imported_at_ms, 1_000);
    assert!(got.last_used_at_ms > 1_000);
}

async fn stats_sum_the_images(db: &TestDb) {
    let index = &db.index;
    assert_eq!(index.stats().await.unwrap(), IndexStats::default());
    let first = image(id("aa"), app("1", "linux"), 300);
    let second = image(id("bb"), app("2", "linux"), 250);
    index.insert_image(&first).await.unwrap();
    index.insert_image(&second).await.unwrap();
    let stats = index.stats().await.unwrap();
    assert_eq!(
        stats,
        IndexStats {
            images: 2,
            logical_bytes: 2 * 10_240,
            content_bytes: 550,
            archive_bytes: 2000,
            recipe_bytes: 600,
        }
    );
}

async fn fetch_state_round_trip(db: &TestDb) {
    let index = &db.index;
    let url = "https://example.com/app-1.0.0-linux-amd64.aci";
    assert!(index.fetch_state(url).await.unwrap().is_none());
    let mut state = FetchState {
        url: url.into(),
        etag: Some("\"abc\"".into()),
        last_modified: Some("Wed, 21 Oct 2015 07:28:00 GMT".into()),
        max_age_secs: Some(3600),
        downloaded_at_ms: 1_700_000_000_000,
        image_id: None,
    };
    index.set_fetch_state(&state).await.unwrap();
    assert_eq!(index.fetch_state(url).await.unwrap(), Some(state.clone()));

    index
        .insert_image(&image(id("aa"), app("1", "linux"), 0))
        .await
        .unwrap();
    state.etag = None;
    state.max_age_secs = None;
    state.downloaded_at_ms += 1;
    state.image_id = Some(id("aa"));
    index.set_fetch_state(&state).await.unwrap();
    assert_eq!(index.fetch_state(url).await.unwrap(), Some(state));
    assert_eq!(count(index, "SELECT COUNT(*) FROM remote_fetches").await, 1);

    // The image must exist.
    let err = index
        .set_fetch_state(&FetchState {
            url: "https://example.com/x.aci".into(),
            etag: None,
            last_modified: None,
            max_age_secs: None,
            downloaded_at_ms: 0,
            image_id: Some(id("ff")),
        })
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Database);
    assert!(err.message().contains("record fetch state"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_do_not_wait_for_an_open_write_transaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(INDEX_FILE_NAME);
    let writer = Index::open(&path).await.unwrap();
    let reader = Index::open(&path).await.unwrap();
    writer
        .insert_image(&image(id("aa"), app("1", "linux"), 10))
        .await
        .unwrap();

    // A write transaction left open, as an import in progress would be.
    let mut tx = begin_write(sqlite_pool(&writer), "test").await.unwrap();
    sqlx::query(
        "INSERT INTO images (image_id, name, manifest, archive_size, tar_size, content_size, \
         recipe_size, entries, imported_at, last_used_at) \
         VALUES ($1, 'example.com/app', '{}', 0, 0, 0, 0, 0, 0, 0)",
    )
    .bind(id("bb").as_str())
    .execute(&mut *tx)
    .await
    .unwrap();

    let start = Instant::now();
    let listed = tokio::time::timeout(Duration::from_secs(5), reader.list())
        .await
        .expect("the reader waited for the writer")
        .unwrap();
    assert_eq!(listed.len(), 1, "the uncommitted image is not visible");
    assert!(reader.get(&id("aa")).await.unwrap().is_some());
    assert!(reader.stats().await.unwrap().images == 1);
    assert!(start.elapsed() < Duration::from_secs(2));

    tx.commit().await.unwrap();
    assert_eq!(reader.list().await.unwrap().len(), 2);
    writer.close().await;
    reader.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_waits_instead_of_failing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(INDEX_FILE_NAME);
    let first = Index::open(&path).await.unwrap();
    let second = Index::open(&path).await.unwrap();
    let tx = begin_write(sqlite_pool(&first), "test").await.unwrap();
    let waiting = tokio::spawn({
        let second = second.clone();
        async move {
            second
                .insert_image(&image(id("aa"), app("1", "linux"), 1))
                .await
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!waiting.is_finished(), "the second writer should wait");
    tx.commit().await.unwrap();
    assert!(waiting.await.unwrap().unwrap());
    first.close().await;
    second.close().await;
}

async fn bad_input_is_rejected_before_writing(db: &TestDb) {
    let index = &db.index;
    let mut new = image(id("aa"), app("1", "linux"), u64::MAX);
    let err = index.insert_image(&new).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    new.content_size = 0;
    new.manifest = ImageManifest::new(crate::schema::AcIdentifier::parse("example.com/x").unwrap());
    let err = index.insert_image(&new).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(index.list().await.unwrap().is_empty());
}
