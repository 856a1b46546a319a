//! The SQL index of the image store: images, labels, annotations and remote fetch
//! state. Which content objects an image uses is in its recipe, not here (see
//! [`crate::store::references`]).
//!
//! # Databases
//!
//! The index goes through `sqlx` to one of two databases:
//! - SQLite, embedded, the default: one file, [`INDEX_FILE_NAME`], inside the store
//!   folder ([`Index::open`]);
//! - PostgreSQL, where several processes (or machines) share one repository: they
//!   share one store folder and one database ([`Index::connect`]).
//!
//! Both run the same versioned migrations (`core/migrations/NNNN_*.sql`, embedded at
//! build time, written in portable SQL) and the same queries: `$N` placeholders,
//! `ON CONFLICT` and `EXISTS` mean the same on both. Each method is written once and
//! expanded for each database by [`on_backend!`]; what differs is in [`Backend`]
//! (how read and write transactions start) and [`Index::integrity_check`]. Orders that the
//! two databases' collations could sort differently are sorted again in Rust.
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
//! # PostgreSQL
//!
//! Reads of one call share one `REPEATABLE READ, READ ONLY` transaction: one snapshot,
//! as on SQLite, so an image and its labels are read as of one moment. Writes are
//! `READ COMMITTED` (the default) and need no explicit lock: inserting an image is
//! one `INSERT ... ON CONFLICT DO NOTHING` on its primary key, which waits for a
//! concurrent insert of the same key to commit. The migrator holds an advisory lock
//! while it migrates.
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

#[cfg(feature = "postgres")]
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use sqlx::{Database, QueryBuilder, Row as _, Transaction};

use crate::schema::{ImageId, ImageIdPrefix, ImageManifest};
use crate::{Error, ErrorKind, Result};

mod connect;
mod rows;

pub use connect::database_identity;
use rows::{IndexRow, fetch_state_from_row, from_i64, record_from_row, to_i64};

#[cfg(test)]
mod tests;

/// The file name of the index inside the store folder.
#[cfg(test)]
pub const INDEX_FILE_NAME: &str = "index.db";

/// How long a connection waits for another one's write lock before failing.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// The most connections one [`Index`] opens.
pub const MAX_CONNECTIONS: u32 = 4;

/// Rows per multi-row `INSERT` (SQLite allows 32766 bound values per statement,
/// PostgreSQL 65535).
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
    pool: Pool,
}

/// Which database an `Index` is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum IndexBackend {
    /// The embedded SQLite file in the store folder.
    #[default]
    Sqlite,
    /// A PostgreSQL database, possibly shared by several processes.
    Postgres,
}

/// The connection pool of one database.
#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
}

/// What differs between the two databases in how the index uses them.
trait Backend: Database {
    /// The statement that starts a write transaction.
    const BEGIN_WRITE: &'static str;
    /// The statement that starts a read transaction: one snapshot for all its queries.
    const BEGIN_READ: &'static str;
}

impl Backend for sqlx::Sqlite {
    // Takes the write lock at once (SQLite-only syntax); see the module comment.
    const BEGIN_WRITE: &'static str = "BEGIN IMMEDIATE";
    // A deferred transaction: its snapshot starts at its first read (WAL).
    const BEGIN_READ: &'static str = "BEGIN";
}

#[cfg(feature = "postgres")]
impl Backend for sqlx::Postgres {
    const BEGIN_WRITE: &'static str = "BEGIN";
    const BEGIN_READ: &'static str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
}

/// Runs `$body` once for the index's database, with `$pool` its pool and `DB` its
/// sqlx database type, so that each query is written once for both.
macro_rules! on_backend {
    ($index:expr, $pool:ident => $body:expr) => {
        match &$index.pool {
            Pool::Sqlite($pool) => {
                #[allow(dead_code)]
                type DB = sqlx::Sqlite;
                $body
            }
            #[cfg(feature = "postgres")]
            Pool::Postgres($pool) => {
                #[allow(dead_code)]
                type DB = sqlx::Postgres;
                $body
            }
        }
    };
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

/// Loads the labels of `$records` (`&mut [ImageRecord]`), in manifest order, inside
/// the read transaction `$tx`. A macro so that it expands for each database inside
/// [`on_backend!`].
macro_rules! load_labels {
    ($tx:expr, $records:expr, $op:expr) => {{
        let tx = $tx;
        let records: &mut [ImageRecord] = $records;
        if records.len() <= LABELS_PER_IMAGE_MAX {
            for record in records.iter_mut() {
                let rows = sqlx::query(
                    "SELECT name, value FROM image_labels WHERE image_id = $1 ORDER BY ordinal",
                )
                .bind(record.image_id.as_str())
                .fetch_all(&mut **tx)
                .await
                .map_err(db_error($op))?;
                record.labels = rows
                    .iter()
                    .map(|row| Ok((row.try_get(0)?, row.try_get(1)?)))
                    .collect::<std::result::Result<_, sqlx::Error>>()
                    .map_err(db_error($op))?;
            }
        } else {
            let rows = sqlx::query(
                "SELECT image_id, name, value FROM image_labels ORDER BY image_id, ordinal",
            )
            .fetch_all(&mut **tx)
            .await
            .map_err(db_error($op))?;
            let mut by_image: HashMap<String, Vec<(String, String)>> = HashMap::new();
            for row in &rows {
                let id: String = row.try_get(0).map_err(db_error($op))?;
                let name: String = row.try_get(1).map_err(db_error($op))?;
                let value: String = row.try_get(2).map_err(db_error($op))?;
                by_image.entry(id).or_default().push((name, value));
            }
            for record in records.iter_mut() {
                record.labels = by_image
                    .remove(record.image_id.as_str())
                    .unwrap_or_default();
            }
        }
    }};
}

/// Runs `$query` in one read transaction on `$pool` and gives its rows as records with
/// their labels, keeping only those `$keep` accepts (all by default). Inside
/// [`on_backend!`]; `?` returns from the calling method.
macro_rules! read_records {
    ($pool:expr, $query:expr, $op:expr) => {
        read_records!($pool, $query, $op, |_: &ImageRecord| true)
    };
    ($pool:expr, $query:expr, $op:expr, $keep:expr) => {{
        let mut tx = begin_read($pool, $op).await?;
        let rows = $query.fetch_all(&mut *tx).await.map_err(db_error($op))?;
        let mut records = records_from_rows(&rows)?;
        records.retain($keep);
        load_labels!(&mut tx, &mut records, $op);
        end_read(tx, $op).await?;
        records
    }};
}

impl Index {
    /// Opens (creating it if missing) the SQLite index file at `path` and brings its
    /// schema up to date.
    pub async fn open(path: &Path) -> Result<Index> {
        Ok(Index {
            pool: Pool::Sqlite(connect::open_sqlite(path).await?),
        })
    }

    /// Opens the SQLite index file at `path` of a read-only store, writing nothing (see
    /// the rules in `connect::open_sqlite_read_only`); its schema must be up to date.
    pub async fn open_read_only(path: &Path) -> Result<Index> {
        Ok(Index {
            pool: Pool::Sqlite(connect::open_sqlite_read_only(path).await?),
        })
    }

    /// Connects to the PostgreSQL index at `url` of a read-only store: no migration runs,
    /// its schema must be up to date. Without the `postgres` feature:
    /// [`ErrorKind::Unsupported`](crate::ErrorKind).
    pub async fn connect_read_only(url: &str) -> Result<Index> {
        #[cfg(feature = "postgres")]
        {
            Ok(Index {
                pool: Pool::Postgres(connect::connect_postgres_read_only(url).await?),
            })
        }
        #[cfg(not(feature = "postgres"))]
        {
            Err(connect::no_postgres(url))
        }
    }

    /// Connects to the PostgreSQL index at `url` (`postgres://user[:password]@host
    /// [:port]/database`; the password may also come from `PGPASSWORD` or
    /// `~/.pgpass`) and brings its schema up to date.
    /// Without the `postgres` feature: [`ErrorKind::Unsupported`](crate::ErrorKind).
    pub async fn connect(url: &str) -> Result<Index> {
        #[cfg(feature = "postgres")]
        {
            Ok(Index {
                pool: Pool::Postgres(connect::connect_postgres(url).await?),
            })
        }
        #[cfg(not(feature = "postgres"))]
        {
            Err(connect::no_postgres(url))
        }
    }

    /// Which database this index is in.
    pub fn backend(&self) -> IndexBackend {
        match self.pool {
            Pool::Sqlite(_) => IndexBackend::Sqlite,
            #[cfg(feature = "postgres")]
            Pool::Postgres(_) => IndexBackend::Postgres,
        }
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
        let sizes = [
            to_i64("archive size", image.archive_size)?,
            to_i64("tar size", image.tar_size)?,
            to_i64("content size", image.content_size)?,
            to_i64("recipe size", image.recipe_size)?,
            to_i64("entry count", image.entries)?,
        ];

        on_backend!(self, pool => {
            let mut tx = begin_write(pool, OP).await?;
            // The image row first: it takes the write lock (SQLite) and tells whether
            // the image is new. A concurrent insert of the same ID waits for our
            // commit, then finds the row.
            let inserted = sqlx::query(
                "INSERT INTO images (image_id, name, manifest, archive_size, tar_size, \
                 content_size, recipe_size, entries, imported_at, last_used_at, origin) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10) \
                 ON CONFLICT (image_id) DO NOTHING",
            )
            .bind(image.image_id.as_str())
            .bind(image.manifest.name.as_str())
            .bind(manifest)
            .bind(sizes[0])
            .bind(sizes[1])
            .bind(sizes[2])
            .bind(sizes[3])
            .bind(sizes[4])
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
                for (chunk_start, chunk) in
                    (0..).step_by(INSERT_CHUNK).zip(pairs.chunks(INSERT_CHUNK))
                {
                    let mut query = QueryBuilder::<DB>::new(format!(
                        "INSERT INTO {table} (image_id, name, value, ordinal) "
                    ));
                    query.push_values(chunk.iter().enumerate(), |mut row, (i, (name, value))| {
                        // `ordinal` is an INTEGER column: bound as 32 bits, which
                        // PostgreSQL requires (manifests are far smaller than 2^31
                        // labels).
                        row.push_bind(image.image_id.as_str())
                            .push_bind(*name)
                            .push_bind(*value)
                            .push_bind(i32::try_from(chunk_start + i).unwrap_or(i32::MAX));
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
        })
    }

    /// The image with ID `id`, if indexed.
    pub async fn get(&self, id: &ImageId) -> Result<Option<ImageRecord>> {
        const OP: &str = "look up an image";
        on_backend!(self, pool => {
            let mut tx = begin_read(pool, OP).await?;
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
            load_labels!(&mut tx, &mut records, OP);
            end_read(tx, OP).await?;
            Ok(records.pop())
        })
    }

    /// Every image whose ID starts with `prefix`, in ID order. More than one means
    /// the prefix is ambiguous.
    pub async fn find_by_prefix(&self, prefix: &ImageIdPrefix) -> Result<Vec<ImageRecord>> {
        const OP: &str = "look up an image ID prefix";
        // A prefix is `sha512-` and lowercase hex, and so is every ID: the IDs
        // starting with it are exactly those in [prefix, prefix + "g"), a range the
        // primary key serves (under any collation that sorts digits before letters
        // and letters alphabetically; the exact match is checked again below).
        let low = prefix.as_str().to_string();
        let high = format!("{low}g");
        let mut records = on_backend!(self, pool => {
            let query = sqlx::query(concat!(
                "SELECT ",
                image_columns!(),
                " FROM images WHERE image_id >= $1 AND image_id < $2 ORDER BY image_id"
            ))
            .bind(low)
            .bind(high);
            read_records!(pool, query, OP, |r: &ImageRecord| prefix.matches(&r.image_id))
        });
        records.sort_by(|a, b| a.image_id.as_str().cmp(b.image_id.as_str()));
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
        let mut records = on_backend!(self, pool => {
            let mut query = QueryBuilder::<DB>::new(concat!(
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
            read_records!(pool, query.build(), OP)
        });
        records.sort_by(|a, b| {
            b.imported_at_ms
                .cmp(&a.imported_at_ms)
                .then_with(|| a.image_id.as_str().cmp(b.image_id.as_str()))
        });
        Ok(records)
    }

    /// Every image, by name, then newest import first.
    pub async fn list(&self) -> Result<Vec<ImageRecord>> {
        const OP: &str = "list images";
        let mut records = on_backend!(self, pool => {
            let query = sqlx::query(concat!(
                "SELECT ",
                image_columns!(),
                " FROM images ORDER BY name, imported_at DESC, image_id"
            ));
            read_records!(pool, query, OP)
        });
        // Byte order of names, whatever the database's collation.
        records.sort_by(|a, b| {
            a.name
                .cmp(&b.name)
                .then_with(|| b.imported_at_ms.cmp(&a.imported_at_ms))
                .then_with(|| a.image_id.as_str().cmp(b.image_id.as_str()))
        });
        Ok(records)
    }

    /// Removes an image with its labels and annotations (its recipe and objects are
    /// the caller's). Returns whether it was there.
    pub async fn remove(&self, id: &ImageId) -> Result<bool> {
        const OP: &str = "remove an image";
        on_backend!(self, pool => {
            let mut tx = begin_write(pool, OP).await?;
            let removed = sqlx::query("DELETE FROM images WHERE image_id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error(OP))?
                .rows_affected();
            tx.commit().await.map_err(db_error(OP))?;
            Ok(removed > 0)
        })
    }

    /// Sets the image's last use to now; does nothing if it is not indexed (it may
    /// have been removed meanwhile).
    pub async fn touch(&self, id: &ImageId) -> Result<()> {
        const OP: &str = "record an image use";
        on_backend!(self, pool => {
            let mut tx = begin_write(pool, OP).await?;
            sqlx::query("UPDATE images SET last_used_at = $1 WHERE image_id = $2")
                .bind(now_ms())
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_error(OP))?;
            tx.commit().await.map_err(db_error(OP))
        })
    }

    /// Counts and sizes over the whole index.
    pub async fn stats(&self) -> Result<IndexStats> {
        const OP: &str = "compute index statistics";
        let sums: [i64; 5] = on_backend!(self, pool => {
            let mut tx = begin_read(pool, OP).await?;
            let row = sqlx::query(
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
            let mut sums = [0i64; 5];
            for (i, sum) in sums.iter_mut().enumerate() {
                *sum = row.try_get(i).map_err(db_error(OP))?;
            }
            sums
        });
        Ok(IndexStats {
            images: from_i64("image count", sums[0])?,
            logical_bytes: from_i64("tar size sum", sums[1])?,
            content_bytes: from_i64("content size sum", sums[2])?,
            archive_bytes: from_i64("archive size sum", sums[3])?,
            recipe_bytes: from_i64("recipe size sum", sums[4])?,
        })
    }

    /// The cache state recorded for `url`, if any.
    pub async fn fetch_state(&self, url: &str) -> Result<Option<FetchState>> {
        const OP: &str = "read fetch state";
        on_backend!(self, pool => {
            let row = sqlx::query(
                "SELECT url, etag, last_modified, max_age_secs, downloaded_at, image_id \
                 FROM remote_fetches WHERE url = $1",
            )
            .bind(url)
            .fetch_optional(pool)
            .await
            .map_err(db_error(OP))?;
            row.as_ref()
                .map(|row| fetch_state_from_row(row, OP))
                .transpose()
        })
    }

    /// The cache states of every URL that gave image `id`, most recent download first.
    pub async fn fetch_states_of(&self, id: &ImageId) -> Result<Vec<FetchState>> {
        const OP: &str = "read fetch states";
        on_backend!(self, pool => {
            let rows = sqlx::query(
                "SELECT url, etag, last_modified, max_age_secs, downloaded_at, image_id \
                 FROM remote_fetches WHERE image_id = $1 ORDER BY downloaded_at DESC",
            )
            .bind(id.as_str())
            .fetch_all(pool)
            .await
            .map_err(db_error(OP))?;
            rows.iter()
                .map(|row| fetch_state_from_row(row, OP))
                .collect()
        })
    }

    /// Records (replacing any previous) the cache state of `state.url`. Its image,
    /// if set, must be in the index.
    pub async fn set_fetch_state(&self, state: &FetchState) -> Result<()> {
        const OP: &str = "record fetch state";
        let max_age = state
            .max_age_secs
            .map(|s| to_i64("max-age", s))
            .transpose()?;
        on_backend!(self, pool => {
            let mut tx = begin_write(pool, OP).await?;
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
        })
    }

    /// Checks the database and its foreign keys; returns the problems found, empty if
    /// none. For fsck. On SQLite: `integrity_check` and `foreign_key_check`. On
    /// PostgreSQL, which enforces foreign keys itself and whose storage is the
    /// server's to check: that the index answers and its schema is migrated.
    pub async fn integrity_check(&self) -> Result<Vec<String>> {
        const OP: &str = "check the index";
        #[cfg_attr(
            not(feature = "postgres"),
            allow(clippy::infallible_destructuring_match)
        )]
        let pool = match &self.pool {
            Pool::Sqlite(pool) => pool,
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => {
                sqlx::query("SELECT COUNT(*) FROM images")
                    .fetch_one(pool)
                    .await
                    .map_err(db_error(OP))?;
                return Ok(Vec::new());
            }
        };
        let mut conn = pool.acquire().await.map_err(db_error(OP))?;
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
        match &self.pool {
            Pool::Sqlite(pool) => pool.close().await,
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => pool.close().await,
        }
    }

    /// The one `BIGINT` a query returns, for tests.
    #[cfg(test)]
    async fn query_i64(&self, sql: &'static str, bind: Option<&str>) -> Result<i64> {
        on_backend!(self, pool => {
            let mut query = sqlx::query_scalar::<DB, i64>(sql);
            if let Some(value) = bind {
                query = query.bind(value);
            }
            query
                .fetch_one(pool)
                .await
                .map_err(db_error("run a test query"))
        })
    }
}

/// A write transaction: on SQLite holding the write lock from its start.
async fn begin_write<DB: Backend>(
    pool: &sqlx::Pool<DB>,
    op: &'static str,
) -> Result<Transaction<'static, DB>> {
    pool.begin_with(DB::BEGIN_WRITE).await.map_err(db_error(op))
}

/// A read transaction: one snapshot for all its queries.
async fn begin_read<DB: Backend>(
    pool: &sqlx::Pool<DB>,
    op: &'static str,
) -> Result<Transaction<'static, DB>> {
    pool.begin_with(DB::BEGIN_READ).await.map_err(db_error(op))
}

/// Ends a read transaction (nothing to keep; commit is the cheapest end).
async fn end_read<DB: Database>(tx: Transaction<'static, DB>, op: &'static str) -> Result<()> {
    tx.commit().await.map_err(db_error(op))
}

fn records_from_rows<R: IndexRow>(rows: &[R]) -> Result<Vec<ImageRecord>> {
    rows.iter().map(record_from_row).collect()
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
