//! Opening the index: the SQLite file with its settings, or a PostgreSQL database,
//! and bringing the schema up to date with the shared migrations.

use std::path::Path;
use std::time::Duration;

#[cfg(feature = "postgres")]
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection as _, SqliteConnection};

use super::{BUSY_TIMEOUT, MAX_CONNECTIONS, db_error};
use crate::{Error, ErrorKind, Result};

/// The migrations of `core/migrations`, embedded at build time; the same files run
/// on both databases.
pub(super) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Runs the migrations on `$conn` (anything sqlx can migrate through). SQLite
/// migrations take no lock, so another process running them at the same time makes
/// ours fail: failures are retried a few times. (A macro, not a generic function:
/// sqlx's `Acquire` bounds do not generalise over both connection types.)
macro_rules! run_migrations {
    ($conn:expr) => {
        async {
            const ATTEMPTS: u32 = 5;
            let mut attempt = 1;
            loop {
                match MIGRATOR.run($conn).await {
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
    };
}

/// Checks, on `$conn`, that every migration of [`MIGRATOR`] was applied and no other, for
/// an index that cannot be migrated because the store is read-only; `$shown` names the
/// index in the error. (A macro for the same reason as [`run_migrations!`].)
macro_rules! require_current_schema {
    ($conn:expr, $shown:expr) => {
        async {
            let applied: Vec<i64> = match sqlx::query_scalar(
                "SELECT version FROM _sqlx_migrations WHERE success ORDER BY version",
            )
            .fetch_all($conn)
            .await
            {
                Ok(applied) => applied,
                // No migration table (SQLite: "no such table", PostgreSQL: 42P01): none ran.
                Err(sqlx::Error::Database(e))
                    if e.message().contains("no such table")
                        || e.code().as_deref() == Some("42P01") =>
                {
                    Vec::new()
                }
                Err(e) => return Err(db_error("read the schema version")(e)),
            };
            let known: Vec<i64> = MIGRATOR
                .iter()
                .filter(|m| !m.migration_type.is_down_migration())
                .map(|m| m.version)
                .collect();
            if applied == known {
                return Ok(());
            }
            let missing = known.iter().filter(|v| !applied.contains(v)).count();
            let why = if applied.iter().any(|v| !known.contains(v)) {
                "it was made by a newer acikit".to_string()
            } else {
                format!("its schema needs {missing} migrations")
            };
            Err(Error::new(
                ErrorKind::ReadOnlyStore,
                format!(
                    "index {}: {why}, and the store is read-only: open it once where it can \
                     be written (with this acikit)",
                    $shown
                ),
            ))
        }
    };
}

/// Opens (creating it if missing) the SQLite index file at `path`, switched to WAL,
/// with its schema up to date.
pub(super) async fn open_sqlite(path: &Path) -> Result<SqlitePool> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .foreign_keys(true)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(BUSY_TIMEOUT);

    // WAL is a property of the file, set once; switching needs an exclusive lock
    // that busy_timeout does not wait for, so it is retried here and kept out of the
    // per-connection options.
    let mut conn = SqliteConnection::connect_with(&options)
        .await
        .map_err(db_error("open the index"))?;
    let wal = enable_wal(&mut conn).await;
    let _ = conn.close().await;
    wal?;

    let pool = SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .min_connections(0)
        .acquire_timeout(BUSY_TIMEOUT)
        .connect_with(options.journal_mode(SqliteJournalMode::Wal))
        .await
        .map_err(db_error("open the index"))?;
    // Migrated through the pool, not the single connection: sqlx's migrator on a
    // `&mut SqliteConnection` makes the future not `Send` for every lifetime, and
    // `Store::open` must return a `Send + 'static` future.
    let migrated: Result<()> = run_migrations!(&pool).await;
    if let Err(e) = migrated {
        pool.close().await;
        return Err(e);
    }
    Ok(pool)
}

/// Opens the SQLite index file at `path` of a read-only store without writing anything.
///
/// SQLite's rule for WAL databases on read-only media: a read-only connection (`mode=ro`)
/// needs the `-shm` file (the WAL index) to exist or to be creatable. It exists while
/// another process has the index open (and is then shared with it, so this process sees
/// its commits); when nobody has the index open, it was removed at the last close and
/// cannot be made again in a read-only folder. Then, if no write-ahead log is left (its
/// commits are all in the main file), the file is opened `immutable`: read without locks
/// or WAL index. That is right as long as nobody writes the store through another,
/// writable path while this one reads it (SQLite's rule for immutable files): the reads
/// would then fail or be stale, the file itself is never harmed. A log with commits in it
/// but no `-shm` (a writer died) cannot be read here: [`ErrorKind::ReadOnlyStore`].
///
/// The schema must be up to date: migrations cannot run ([`ErrorKind::ReadOnlyStore`]).
pub(super) async fn open_sqlite_read_only(path: &Path) -> Result<SqlitePool> {
    const OP: &str = "open the index read-only";
    let shared = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false)
        .foreign_keys(true)
        .busy_timeout(BUSY_TIMEOUT);
    let (options, mut conn) = match probe_sqlite(&shared).await {
        Ok(conn) => (shared, conn),
        Err(e) if cannot_open_wal_index(&e) => {
            let wal = wal_path(path);
            let wal_len = std::fs::metadata(&wal).map_or(0, |m| m.len());
            if wal_len > 0 {
                return Err(Error::new(
                    ErrorKind::ReadOnlyStore,
                    format!(
                        "index: {OP}: {} holds commits not yet in {} and its shared-memory                          file is missing; the store is read-only, so they cannot be                          recovered here: open the store once where it can be written",
                        wal.display(),
                        path.display()
                    ),
                ));
            }
            tracing::debug!(
                index = %path.display(),
                "no WAL index and none can be made: reading the index as immutable"
            );
            let immutable = shared.immutable(true);
            let conn = probe_sqlite(&immutable).await.map_err(db_error(OP))?;
            (immutable, conn)
        }
        Err(e) => return Err(db_error(OP)(e)),
    };
    let checked = require_current_schema!(&mut conn, path.display()).await;
    let _ = conn.close().await;
    checked?;
    SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .min_connections(0)
        .acquire_timeout(BUSY_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(db_error(OP))
}

/// Opens one connection and reads from the file (SQLite opens lazily: a missing WAL index
/// only shows at the first read).
async fn probe_sqlite(
    options: &SqliteConnectOptions,
) -> std::result::Result<SqliteConnection, sqlx::Error> {
    let mut conn = SqliteConnection::connect_with(options).await?;
    let read: std::result::Result<i64, sqlx::Error> =
        sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master")
            .fetch_one(&mut conn)
            .await;
    match read {
        Ok(_) => Ok(conn),
        Err(e) => {
            let _ = conn.close().await;
            Err(e)
        }
    }
}

/// The `-wal` file beside the index file.
fn wal_path(path: &Path) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push("-wal");
    name.into()
}

/// Whether SQLite could not open the file because its WAL index (`-shm`) is missing and
/// cannot be made: `SQLITE_CANTOPEN` (14) or `SQLITE_READONLY` (8) with extended codes.
fn cannot_open_wal_index(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .code()
            .as_deref()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|c| matches!(c & 0xff, 8 | 14)),
        _ => false,
    }
}

/// Connects to the PostgreSQL index at `url` of a read-only store: no migration runs, the
/// schema must be up to date ([`ErrorKind::ReadOnlyStore`] otherwise), and the index is
/// only read.
#[cfg(feature = "postgres")]
pub(super) async fn connect_postgres_read_only(url: &str) -> Result<PgPool> {
    let (options, connect_error) = postgres_options(url)?;
    let mut conn = PgConnection::connect_with(&options)
        .await
        .map_err(&connect_error)?;
    let shown = database_identity(url).unwrap_or_default();
    let checked = require_current_schema!(&mut conn, shown).await;
    let _ = conn.close().await;
    checked?;
    PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .min_connections(0)
        .acquire_timeout(BUSY_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(connect_error)
}

/// The connection options of the PostgreSQL URL, and how a failure to connect is reported.
#[cfg(feature = "postgres")]
#[allow(clippy::type_complexity)]
fn postgres_options(
    url: &str,
) -> Result<(
    PgConnectOptions,
    Box<dyn Fn(sqlx::Error) -> Error + Send + Sync>,
)> {
    let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "bad PostgreSQL URL {}: {e}",
                database_identity(url).unwrap_or_else(|_| "(unparsable)".into())
            ),
        )
    })?;
    let shown = database_identity(url).unwrap_or_default();
    let connect_error = move |e: sqlx::Error| {
        Error::new(
            ErrorKind::Database,
            format!("index: connect to PostgreSQL at {shown}: {e}"),
        )
        .with_source(e)
    };
    Ok((options, Box::new(connect_error)))
}

/// Connects to the PostgreSQL database at `url` (`postgres://user[:password]@host
/// [:port]/database[?options]`; the password may also come from `PGPASSWORD` or
/// `~/.pgpass`) and brings its schema up to date. Several processes may do this at
/// once: sqlx's PostgreSQL migrator holds an advisory lock while it migrates.
#[cfg(feature = "postgres")]
pub(super) async fn connect_postgres(url: &str) -> Result<PgPool> {
    let (options, connect_error) = postgres_options(url)?;
    // One connection first, so that a server that refuses or rejects us says why at
    // once (a pool would retry until its acquire timeout, then only say it timed out).
    PgConnection::connect_with(&options)
        .await
        .map_err(&connect_error)?
        .close()
        .await
        .map_err(&connect_error)?;
    let pool = PgPoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .min_connections(0)
        .acquire_timeout(BUSY_TIMEOUT)
        .connect_with(options)
        .await
        .map_err(connect_error)?;
    let migrated: Result<()> = run_migrations!(&pool).await;
    if let Err(e) = migrated {
        pool.close().await;
        return Err(e);
    }
    Ok(pool)
}

/// The error of a PostgreSQL index in a build without the `postgres` feature.
#[cfg(not(feature = "postgres"))]
pub(super) fn no_postgres(url: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!(
            "this build of acikit has no PostgreSQL support (cargo feature `postgres`): \
             cannot open the index at {}",
            database_identity(url).unwrap_or_else(|_| "(unparsable URL)".into())
        ),
    )
}

/// What names one PostgreSQL index: the URL without its password and without the
/// connection settings that do not change which database it is (only `options`,
/// which can set the `search_path`, is kept). Safe to print and to store.
pub fn database_identity(url: &str) -> Result<String> {
    let bad = |why: String| Error::new(ErrorKind::InvalidArgument, why);
    let parsed = url::Url::parse(url).map_err(|e| bad(format!("bad database URL: {e}")))?;
    if !matches!(parsed.scheme(), "postgres" | "postgresql") {
        return Err(bad(format!(
            "unsupported database URL scheme {:?}: expected postgres:// (the SQLite index \
             is the default and needs no URL)",
            parsed.scheme()
        )));
    }
    let host = parsed.host_str().unwrap_or("localhost");
    let port = parsed.port().unwrap_or(5432);
    let user = match parsed.username() {
        "" => String::new(),
        user => format!("{user}@"),
    };
    let mut identity = format!("postgres://{user}{host}:{port}{}", parsed.path());
    // `options` and `options[NAME]` set server settings such as the search_path,
    // which can make the same database hold different indexes.
    let options: Vec<(String, String)> = parsed
        .query_pairs()
        .filter(|(k, _)| k == "options" || k.starts_with("options["))
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if !options.is_empty() {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(options)
            .finish();
        identity.push('?');
        identity.push_str(&query);
    }
    Ok(identity)
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

#[cfg(test)]
mod tests {
    use super::database_identity;

    #[test]
    fn identity_drops_the_password_and_keeps_what_names_the_database() {
        assert_eq!(
            database_identity("postgres://ann:secret@db.example:6543/images").unwrap(),
            "postgres://ann@db.example:6543/images"
        );
        assert_eq!(
            database_identity("postgresql://ann@db/images?sslmode=require").unwrap(),
            "postgres://ann@db:5432/images"
        );
        assert_eq!(
            database_identity("postgres://ann:pw@db/images?options=-c%20search_path%3Dt1").unwrap(),
            "postgres://ann@db:5432/images?options=-c+search_path%3Dt1"
        );
        let err = database_identity("sqlite://index.db").unwrap_err();
        assert!(err.message().contains("postgres://"), "{err}");
        assert!(database_identity("not a url").is_err());
    }
}
