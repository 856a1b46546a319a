//! The SQL index of the image store: images, labels, annotations and remote fetch
//! state. Which content objects an image uses is in its recipe, not here (see
//! [`crate::store::references`]).
//!
//! # Database
//!
//! The index goes through `sqlx` with SQLite embedded: one file, [`INDEX_FILE_NAME`],
//! inside the store folder. The schema lives in versioned migrations
//! (`core/migrations/NNNN_*.sql`, embedded at build time and run by
//! [`Index::open`]) written in portable SQL only, so that PostgreSQL can serve a
//! shared repository later with the same migrations. The queries use `$N`
//! placeholders, `ON CONFLICT` and `EXISTS`, which both databases understand;
//! what is SQLite-only is marked (`BEGIN IMMEDIATE`, the pragmas, and
//! [`Index::integrity_check`]).
//!
//! # SQLite settings and why
//!
//! - `journal_mode=WAL`: readers never wait for a writer and a writer never waits
//!   for readers, so `list` or `export` run while another process commits an import.
//! - `synchronous=FULL`: every commit fsyncs the WAL, so a committed import or
//!   removal survives power loss. With `NORMAL` the database never corrupts but the
//!   last commits may roll back; that would be harmless for an import (its objects
//!   become orphans, a retry completes it) but not for `rm` followed by `gc`: the
//!   removal could come back after gc deleted the image's objects. The cost is one
//!   fsync per transaction, and an import is one transaction, next to the thousands
//!   of fsyncs its objects already cost.
//! - `busy_timeout=30s`: two processes writing at once queue up instead of failing
//!   with "database is locked". Writes are short (one transaction at the end of an
//!   import, after all file work), so the wait is short too.
//! - `foreign_keys=ON`: removing an image cascades to its labels and annotations
//!   (SQLite leaves foreign keys off unless asked).
//! - Write transactions start with `BEGIN IMMEDIATE`, taking the write lock first:
//!   a deferred transaction that read before writing could fail with `SQLITE_BUSY`
//!   instead of waiting when another process committed in between.
//! - A pool of up to [`MAX_CONNECTIONS`] connections; reads of one call share one
//!   transaction, so they see one snapshot.
//!
//! # Concurrency between processes
//!
//! [`Index::insert_image`] inserts the image row first with `ON CONFLICT DO
//! NOTHING`: of two processes importing the same image, the second waits for the
//! first to commit, finds the row and changes nothing. Opening a fresh store from two
//! processes at once is safe too: switching to WAL and running the migrations are
//! retried when the other process won the race.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection as _, QueryBuilder, Row as _, Sqlite, SqliteConnection, Transaction};

use crate::schema::{ImageId, ImageIdPrefix, ImageManifest};
use crate::{Error, ErrorKind, Result};

#[cfg(test)]
mod tests;

/// The file name of the index inside the store folder.
pub const INDEX_FILE_NAME: &str = "index.db";

/// How long a connection waits for another one's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The most connections one [`Index`] opens.
pub const MAX_CONNECTIONS: u32 = 4;

/// The migrations of `core/migrations`, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Rows per multi-row `INSERT` (SQLite allows 32766 bound values per statement).
const INSERT_CHUNK: usize = 500;

/// Above this many records, labels are loaded with one query for all images.
const LABELS_PER_IMAGE_MAX: usize = 32;

/// The columns of `images`, in the order [`record_from_row`] reads them.
macro_rules! image_columns {
    () => {
        "image_id, name, manifest, archive_size, tar_size, content_size, recipe_size, \
         entries, imported_at, last_used_at, origin"
    };
}

/// The SQL index of an image store. Cheap to clone (a connection pool inside).
#[derive(Debug, Clone)]
pub struct Index {
    pool: SqlitePool,
}

/// An image to add to the index, once all its files are in the store.
#[derive(Debug, Clone)]
pub struct NewImage {
    /// The image ID (SHA-512 of the uncompressed tar).
    pub image_id: ImageId,
    /// The manifest, parsed from the archive; its [`ImageManifest::raw`] bytes are stored.
    pub manifest: ImageManifest,
    /// Size of the archive as imported (compressed, if it was).
    pub archive_size: u64,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
    /// Sum of the content bytes of the image's regular files.
    pub content_size: u64,
    /// Size of the image's recipe on disk.
    pub recipe_size: u64,
    /// Number of tar entries.
    pub entries: u64,
    /// File path or URL the image came from, if known.
    pub origin: Option<String>,
}

/// An image as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRecord {
    /// The image ID.
    pub image_id: ImageId,
    /// The manifest's name.
    pub name: String,
    /// The manifest bytes exactly as found in the archive.
    pub manifest: Vec<u8>,
    /// The manifest's labels `(name, value)`, in manifest order.
    pub labels: Vec<(String, String)>,
    /// Size of the archive as imported.
    pub archive_size: u64,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
    /// Sum of the content bytes of the image's regular files.
    pub content_size: u64,
    /// Size of the recipe on disk.
    pub recipe_size: u64,
    /// Number of tar entries.
    pub entries: u64,
    /// When the image was imported (Unix milliseconds).
    pub imported_at_ms: i64,
    /// When the image was last used (Unix milliseconds); the import time at first.
    pub last_used_at_ms: i64,
    /// File path or URL the image came from, if known.
    pub origin: Option<String>,
}

impl ImageRecord {
    /// The value of the label called `name`.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sizes over the whole index, for `stats` and the de-duplication ratio.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IndexStats {
    /// Number of images.
    pub images: u64,
    /// Sum of the images' uncompressed tar sizes: what the store would hold without
    /// de-duplication.
    pub logical_bytes: u64,
    /// Sum of the images' content sizes (repeated content inside an image counted
    /// every time).
    pub content_bytes: u64,
    /// Sum of the images' archive sizes as imported.
    pub archive_bytes: u64,
    /// Sum of the images' recipe sizes.
    pub recipe_bytes: u64,
}

/// HTTP cache state of a remote image URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchState {
    /// The URL fetched.
    pub url: String,
    /// The `ETag` the server sent, for `If-None-Match`.
    pub etag: Option<String>,
    /// The `Last-Modified` the server sent, for `If-Modified-Since`.
    pub last_modified: Option<String>,
    /// The `max-age` of `Cache-Control`, in seconds.
    pub max_age_secs: Option<u64>,
    /// When the URL was last downloaded (Unix milliseconds).
    pub downloaded_at_ms: i64,
    /// The image it gave, if it is in the store; cleared when that image is removed.
    pub image_id: Option<ImageId>,
}

impl Index {
    /// Opens (creating it if missing) the index database file at `path` and brings
    /// its schema up to date.
    pub async fn open(path: &Path) -> Result<Index> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);

        // WAL is a property of the file, set once; switching needs an exclusive
        // lock that busy_timeout does not wait for, so it is retried here and kept
        // out of the per-connection options.
        let mut conn = SqliteConnection::connect_with(&options)
            .await
            .map_err(db_error("open the index"))?;
        let setup = async {
            enable_wal(&mut conn).await?;
            run_migrations(&mut conn).await
        }
        .await;
        let _ = conn.close().await;
        setup?;

        let pool = SqlitePoolOptions::new()
            .max_connections(MAX_CONNECTIONS)
            .min_connections(0)
            .acquire_timeout(BUSY_TIMEOUT)
            .connect_with(options.journal_mode(SqliteJournalMode::Wal))
            .await
            .map_err(db_error("open the index"))?;
        Ok(Index { pool })
    }

    /// Adds an image, its labels, annotations and object references in one
    /// transaction.
    ///
    /// Returns `false` and changes nothing if the image was already there, also when
    /// another process inserts it at the same time.
    pub async fn insert_image(&self, image: &NewImage) -> Result<bool> {
        self.insert_image_at(image, now_ms()).await
    }

    async fn insert_image_at(&self, image: &NewImage, now: i64) -> Result<bool> {
        const OP: &str = "insert an image";
        let raw = image.manifest.raw();
        if raw.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidArgument,
                "the manifest has no original bytes (it was not parsed from an archive)",
            ));
        }
        let manifest = std::str::from_utf8(raw).map_err(|e| {
            Error::new(
                ErrorKind::InvalidArgument,
                format!("the manifest is not UTF-8: {e}"),
            )
        })?;
        let labels: Vec<(&str, &str)> = image
            .manifest
            .labels
            .iter()
            .map(|l| (l.name.as_str(), l.value.as_str()))
            .collect();
        let annotations: Vec<(&str, &str)> = image
            .manifest
            .annotations
            .iter()
            .map(|a| (a.name.as_str(), a.value.as_str()))
            .collect();

        let mut tx = self.begin_write(OP).await?;
        // The image row first: it takes the write lock and tells whether the image
        // is new. A concurrent insert of the same ID waits for our commit, then
        // finds the row.
        let inserted = sqlx::query(
            "INSERT INTO images (image_id, name, manifest, archive_size, tar_size, \
             content_size, recipe_size, entries, imported_at, last_used_at, origin) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) \
             ON CONFLICT (image_id) DO NOTHING",
        )
        .bind(image.image_id.as_str())
        .bind(image.manifest.name.as_str())
        .bind(manifest)
        .bind(to_i64("archive size", image.archive_size)?)
        .bind(to_i64("tar size", image.tar_size)?)
        .bind(to_i64("content size", image.content_size)?)
        .bind(to_i64("recipe size", image.recipe_size)?)
        .bind(to_i64("entry count", image.entries)?)
        .bind(now)
        .bind(image.origin.as_deref())
        .execute(&mut *tx)
        .await
        .map_err(db_error(OP))?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await.map_err(db_error(OP))?;
            return Ok(false);
        }

        for (table, pairs) in [
            ("image_labels", &labels),
            ("image_annotations", &annotations),
        ] {
            for (chunk_start, chunk) in (0..).step_by(INSERT_CHUNK).zip(pairs.chunks(INSERT_CHUNK))
            {
                let mut query = QueryBuilder::<Sqlite>::new(format!(
                    "INSERT INTO {table} (image_id, name, value, ordinal) "
                ));
                query.push_values(chunk.iter().enumerate(), |mut row, (i, (name, value))| {
                    row.push_bind(image.image_id.as_str())
                        .push_bind(*name)
                        .push_bind(*value)
                        .push_bind((chunk_start + i) as i64);
                });
                // Validation rejects duplicate names; should one get through, the
                // first wins, as in `Labels::get`.
                query.push(" ON CONFLICT (image_id, name) DO NOTHING");
                query
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(db_error(OP))?;
            }
        }
        tx.commit().await.map_err(db_error(OP))?;
        Ok(true)
    }

    /// The image with ID `id`, if indexed.
    pub async fn get(&self, id: &ImageId) -> Result<Option<ImageRecord>> {
        const OP: &str = "look up an image";
        let mut tx = self.begin_read(OP).await?;
        let row = sqlx::query(concat!(
            "SELECT ",
            image_columns!(),
            " FROM images WHERE image_id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_error(OP))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let mut records = vec![record_from_row(&row)?];
        load_labels(&mut tx, &mut records, OP).await?;
        end_read(tx, OP).await?;
        Ok(records.pop())
    }

    /// Every image whose ID starts with `prefix`, in ID order. More than one means
    /// the prefix is ambiguous.
    pub async fn find_by_prefix(&self, prefix: &ImageIdPrefix) -> Result<Vec<ImageRecord>> {
        const OP: &str = "look up an image ID prefix";
        // A prefix is `sha512-` and lowercase hex, and so is every ID: the IDs
        // starting with it are exactly those in [prefix, prefix + "g"), a range the
        // primary key serves.
        let low = prefix.as_str().to_string();
        let high = format!("{low}g");
        let mut tx = self.begin_read(OP).await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            image_columns!(),
            " FROM images WHERE image_id >= $1 AND image_id < $2 ORDER BY image_id"
        ))
        .bind(low)
        .bind(high)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error(OP))?;
        let mut records = records_from_rows(&rows)?;
        records.retain(|r| prefix.matches(&r.image_id));
        load_labels(&mut tx, &mut records, OP).await?;
        end_read(tx, OP).await?;
        Ok(records)
    }

    /// The images called `name` that have every label of `labels` with an equal
    /// value (labels absent from the query match any value), newest import first.
    pub async fn find_by_name(
        &self,
        name: &str,
        labels: &[(String, String)],
    ) -> Result<Vec<ImageRecord>> {
        const OP: &str = "look up images by name";
        let mut query = QueryBuilder::<Sqlite>::new(concat!(
            "SELECT ",
            image_columns!(),
            " FROM images i WHERE i.name = "
        ));
        query.push_bind(name);
        for (label, value) in labels {
            query.push(
                " AND EXISTS (SELECT 1 FROM image_labels l \
                 WHERE l.image_id = i.image_id AND l.name = ",
            );
            query.push_bind(label.as_str());
            query.push(" AND l.value = ");
            query.push_bind(value.as_str());
            query.push(")");
        }
        query.push(" ORDER BY i.imported_at DESC, i.image_id");

        let mut tx = self.begin_read(OP).await?;
        let rows = query
            .build()
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error(OP))?;
        let mut records = records_from_rows(&rows)?;
        load_labels(&mut tx, &mut records, OP).await?;
        end_read(tx, OP).await?;
        Ok(records)
    }

    /// Every image, by name, then newest import first.
    pub async fn list(&self) -> Result<Vec<ImageRecord>> {
        const OP: &str = "list images";
        let mut tx = self.begin_read(OP).await?;
        let rows = sqlx::query(concat!(
            "SELECT ",
            image_columns!(),
            " FROM images ORDER BY name, imported_at DESC, image_id"
        ))
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error(OP))?;
        let mut records = records_from_rows(&rows)?;
        load_labels(&mut tx, &mut records, OP).await?;
        end_read(tx, OP).await?;
        Ok(records)
    }

    /// Removes an image with its labels and annotations (its recipe and objects are
    /// the caller's). Returns whether it was there.
    pub async fn remove(&self, id: &ImageId) -> Result<bool> {
        const OP: &str = "remove an image";
        let mut tx = self.begin_write(OP).await?;
        let removed = sqlx::query("DELETE FROM images WHERE image_id = $1")
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error(OP))?
            .rows_affected();
        tx.commit().await.map_err(db_error(OP))?;
        Ok(removed > 0)
    }

    /// Sets the image's last use to now; does nothing if it is not indexed (it may
    /// have been removed meanwhile).
    pub async fn touch(&self, id: &ImageId) -> Result<()> {
        const OP: &str = "record an image use";
        let mut tx = self.begin_write(OP).await?;
        sqlx::query("UPDATE images SET last_used_at = $1 WHERE image_id = $2")
            .bind(now_ms())
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_error(OP))?;
        tx.commit().await.map_err(db_error(OP))
    }

    /// Counts and sizes over the whole index.
    pub async fn stats(&self) -> Result<IndexStats> {
        const OP: &str = "compute index statistics";
        let mut tx = self.begin_read(OP).await?;
        let images = sqlx::query(
            "SELECT COUNT(*), \
             CAST(COALESCE(SUM(tar_size), 0) AS BIGINT), \
             CAST(COALESCE(SUM(content_size), 0) AS BIGINT), \
             CAST(COALESCE(SUM(archive_size), 0) AS BIGINT), \
             CAST(COALESCE(SUM(recipe_size), 0) AS BIGINT) \
             FROM images",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error(OP))?;
        end_read(tx, OP).await?;

        let get = |row: &SqliteRow, i: usize, what: &'static str| -> Result<u64> {
            from_i64(what, row.try_get(i).map_err(db_error(OP))?)
        };
        Ok(IndexStats {
            images: get(&images, 0, "image count")?,
            logical_bytes: get(&images, 1, "tar size sum")?,
            content_bytes: get(&images, 2, "content size sum")?,
            archive_bytes: get(&images, 3, "archive size sum")?,
            recipe_bytes: get(&images, 4, "recipe size sum")?,
        })
    }

    /// The cache state recorded for `url`, if any.
    pub async fn fetch_state(&self, url: &str) -> Result<Option<FetchState>> {
        const OP: &str = "read fetch state";
        let row = sqlx::query(
            "SELECT url, etag, last_modified, max_age_secs, downloaded_at, image_id \
             FROM remote_fetches WHERE url = $1",
        )
        .bind(url)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error(OP))?;
        row.as_ref()
            .map(|row| fetch_state_from_row(row, OP))
            .transpose()
    }

    /// The cache states of every URL that gave image `id`, most recent download first.
    pub async fn fetch_states_of(&self, id: &ImageId) -> Result<Vec<FetchState>> {
        const OP: &str = "read fetch states";
        let rows = sqlx::query(
            "SELECT url, etag, last_modified, max_age_secs, downloaded_at, image_id \
             FROM remote_fetches WHERE image_id = $1 ORDER BY downloaded_at DESC",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_error(OP))?;
        rows.iter()
            .map(|row| fetch_state_from_row(row, OP))
            .collect()
    }

    /// Records (replacing any previous) the cache state of `state.url`. Its image,
    /// if set, must be in the index.
    pub async fn set_fetch_state(&self, state: &FetchState) -> Result<()> {
        const OP: &str = "record fetch state";
        let max_age = state
            .max_age_secs
            .map(|s| to_i64("max-age", s))
            .transpose()?;
        let mut tx = self.begin_write(OP).await?;
        sqlx::query(
            "INSERT INTO remote_fetches \
             (url, etag, last_modified, max_age_secs, downloaded_at, image_id) \
             VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (url) DO UPDATE SET etag = excluded.etag, \
             last_modified = excluded.last_modified, max_age_secs = excluded.max_age_secs, \
             downloaded_at = excluded.downloaded_at, image_id = excluded.image_id",
        )
        .bind(state.url.as_str())
        .bind(state.etag.as_deref())
        .bind(state.last_modified.as_deref())
        .bind(max_age)
        .bind(state.downloaded_at_ms)
        .bind(state.image_id.as_ref().map(|id| id.as_str()))
        .execute(&mut *tx)
        .await
        .map_err(db_error(OP))?;
        tx.commit().await.map_err(db_error(OP))
    }

    /// Checks the database file (SQLite `integrity_check`) and its foreign keys;
    /// returns the problems found, empty if none. For fsck.
    pub async fn integrity_check(&self) -> Result<Vec<String>> {
        const OP: &str = "check the index";
        let mut conn = self.pool.acquire().await.map_err(db_error(OP))?;
        let mut problems = Vec::new();
        let rows = sqlx::query("PRAGMA integrity_check")
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error(OP))?;
        for row in &rows {
            let line: String = row.try_get(0).map_err(db_error(OP))?;
            if line != "ok" {
                problems.push(line);
            }
        }
        let rows = sqlx::query("PRAGMA foreign_key_check")
            .fetch_all(&mut *conn)
            .await
            .map_err(db_error(OP))?;
        for row in &rows {
            let table: String = row.try_get(0).map_err(db_error(OP))?;
            let rowid: Option<i64> = row.try_get(1).map_err(db_error(OP))?;
            let parent: String = row.try_get(2).map_err(db_error(OP))?;
            let rowid = rowid.map_or_else(|| "?".to_string(), |r| r.to_string());
            problems.push(format!(
                "row {rowid} of {table} refers to a missing row of {parent}"
            ));
        }
        Ok(problems)
    }

    /// Closes every connection, waiting for those in use to come back.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// A write transaction holding the write lock from its start (SQLite-only syntax).
    async fn begin_write(&self, op: &'static str) -> Result<Transaction<'static, Sqlite>> {
        self.pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(db_error(op))
    }

    /// A read transaction: one snapshot for all its queries.
    async fn begin_read(&self, op: &'static str) -> Result<Transaction<'static, Sqlite>> {
        self.pool.begin().await.map_err(db_error(op))
    }
}

/// Ends a read transaction (nothing to keep; commit is the cheapest end).
async fn end_read(tx: Transaction<'static, Sqlite>, op: &'static str) -> Result<()> {
    tx.commit().await.map_err(db_error(op))
}

/// Switches the file to WAL, retrying while another connection holds a lock.
async fn enable_wal(conn: &mut SqliteConnection) -> Result<()> {
    const OP: &str = "switch the index to WAL";
    let deadline = tokio::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        let attempt: std::result::Result<String, sqlx::Error> =
            sqlx::query_scalar("PRAGMA journal_mode = WAL")
                .fetch_one(&mut *conn)
                .await;
        match attempt {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(mode) => {
                return Err(Error::new(
                    ErrorKind::Database,
                    format!("index: {OP}: the journal mode stayed {mode:?}"),
                ));
            }
            Err(e) if is_busy(&e) && tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(db_error(OP)(e)),
        }
    }
}

/// Runs the migrations; another process running them at the same time makes ours
/// fail (SQLite migrations take no lock), so failures are retried a few times.
async fn run_migrations(conn: &mut SqliteConnection) -> Result<()> {
    const ATTEMPTS: u32 = 5;
    let mut attempt = 1;
    loop {
        match MIGRATOR.run(&mut *conn).await {
            Ok(()) => return Ok(()),
            Err(_) if attempt < ATTEMPTS => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(50 * u64::from(attempt))).await;
            }
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::Database,
                    format!("index: migrate the schema: {e}"),
                )
                .with_source(e));
            }
        }
    }
}

fn is_busy(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => {
            // SQLITE_BUSY (5) and SQLITE_LOCKED (6), with their extended codes.
            let code = db.code();
            let primary = code
                .as_deref()
                .and_then(|c| c.parse::<i32>().ok())
                .map(|c| c & 0xff);
            matches!(primary, Some(5 | 6))
        }
        _ => false,
    }
}

/// Loads the labels of `records`, in manifest order.
async fn load_labels(
    tx: &mut Transaction<'static, Sqlite>,
    records: &mut [ImageRecord],
    op: &'static str,
) -> Result<()> {
    if records.len() <= LABELS_PER_IMAGE_MAX {
        for record in records.iter_mut() {
            let rows = sqlx::query(
                "SELECT name, value FROM image_labels WHERE image_id = $1 ORDER BY ordinal",
            )
            .bind(record.image_id.as_str())
            .fetch_all(&mut **tx)
            .await
            .map_err(db_error(op))?;
            record.labels = rows
                .iter()
                .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                .collect::<std::result::Result<_, sqlx::Error>>()
                .map_err(db_error(op))?;
        }
        return Ok(());
    }
    let mut by_image: HashMap<String, Vec<(String, String)>> = HashMap::new();
    let rows =
        sqlx::query("SELECT image_id, name, value FROM image_labels ORDER BY image_id, ordinal")
            .fetch_all(&mut **tx)
            .await
            .map_err(db_error(op))?;
    for row in &rows {
        let id: String = row.try_get(0).map_err(db_error(op))?;
        let name: String = row.try_get(1).map_err(db_error(op))?;
        let value: String = row.try_get(2).map_err(db_error(op))?;
        by_image.entry(id).or_default().push((name, value));
    }
    for record in records.iter_mut() {
        record.labels = by_image
            .remove(record.image_id.as_str())
            .unwrap_or_default();
    }
    Ok(())
}

fn records_from_rows(rows: &[SqliteRow]) -> Result<Vec<ImageRecord>> {
    rows.iter().map(record_from_row).collect()
}

/// An [`ImageRecord`] without labels from a row of [`image_columns`].
fn record_from_row(row: &SqliteRow) -> Result<ImageRecord> {
    const OP: &str = "read an image row";
    let text = |i: usize| -> Result<String> { row.try_get(i).map_err(db_error(OP)) };
    let int = |i: usize| -> Result<i64> { row.try_get(i).map_err(db_error(OP)) };
    let image_id = parse_image_id(&text(0)?)?;
    Ok(ImageRecord {
        name: text(1)?,
        manifest: text(2)?.into_bytes(),
        labels: Vec::new(),
        archive_size: from_i64("archive size", int(3)?)?,
        tar_size: from_i64("tar size", int(4)?)?,
        content_size: from_i64("content size", int(5)?)?,
        recipe_size: from_i64("recipe size", int(6)?)?,
        entries: from_i64("entry count", int(7)?)?,
        imported_at_ms: int(8)?,
        last_used_at_ms: int(9)?,
        origin: row.try_get(10).map_err(db_error(OP))?,
        image_id,
    })
}

fn parse_image_id(text: &str) -> Result<ImageId> {
    ImageId::parse(text).map_err(|e| {
        Error::new(
            ErrorKind::Database,
            format!("index: bad image ID in the database: {}", e.message()),
        )
    })
}

fn fetch_state_from_row(row: &SqliteRow, op: &'static str) -> Result<FetchState> {
    let max_age: Option<i64> = row.try_get(3).map_err(db_error(op))?;
    let image_id: Option<String> = row.try_get(5).map_err(db_error(op))?;
    Ok(FetchState {
        url: row.try_get(0).map_err(db_error(op))?,
        etag: row.try_get(1).map_err(db_error(op))?,
        last_modified: row.try_get(2).map_err(db_error(op))?,
        max_age_secs: max_age.map(|s| from_i64("max-age", s)).transpose()?,
        downloaded_at_ms: row.try_get(4).map_err(db_error(op))?,
        image_id: image_id.as_deref().map(parse_image_id).transpose()?,
    })
}

/// A size for a BIGINT column.
fn to_i64(what: &str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("{what} {value} is too large for the index"),
        )
    })
}

/// A size read from a BIGINT column.
fn from_i64(what: &str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| {
        Error::new(
            ErrorKind::Database,
            format!("index: negative {what} {value} in the database"),
        )
    })
}

/// Maps an sqlx failure of operation `op` to [`ErrorKind::Database`].
fn db_error(op: &'static str) -> impl Fn(sqlx::Error) -> Error {
    move |e| Error::new(ErrorKind::Database, format!("index: {op}: {e}")).with_source(e)
}

/// Now, in Unix milliseconds.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
