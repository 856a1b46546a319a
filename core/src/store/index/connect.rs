//! Opening the index: the SQLite file with its settings, or a PostgreSQL database,
//! and bringing the schema up to date with the shared migrations.

use std::path::Path;
use std::time::Duration;

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
    let setup = async {
        enable_wal(&mut conn).await?;
        run_migrations!(&mut conn).await
    }
    .await;
    let _ = conn.close().await;
    setup?;

    SqlitePoolOptions::new()
        .max_connections(MAX_CONNECTIONS)
        .min_connections(0)
        .acquire_timeout(BUSY_TIMEOUT)
        .connect_with(options.journal_mode(SqliteJournalMode::Wal))
        .await
        .map_err(db_error("open the index"))
}

/// Connects to the PostgreSQL database at `url` (`postgres://user[:password]@host
/// [:port]/database[?options]`; the password may also come from `PGPASSWORD` or
/// `~/.pgpass`) and brings its schema up to date. Several processes may do this at
/// once: sqlx's PostgreSQL migrator holds an advisory lock while it migrates.
pub(super) async fn connect_postgres(url: &str) -> Result<PgPool> {
    let options: PgConnectOptions = url.parse().map_err(|e: sqlx::Error| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!(
                "bad PostgreSQL URL {}: {e}",
                database_identity(url).unwrap_or_else(|_| "(unparsable)".into())
            ),
        )
    })?;
    let connect_error = |e: sqlx::Error| {
        let shown = database_identity(url).unwrap_or_default();
        Error::new(
            ErrorKind::Database,
            format!("index: connect to PostgreSQL at {shown}: {e}"),
        )
        .with_source(e)
    };
    // One connection first, so that a server that refuses or rejects us says why at
    // once (a pool would retry until its acquire timeout, then only say it timed out).
    PgConnection::connect_with(&options)
        .await
        .map_err(connect_error)?
        .close()
        .await
        .map_err(connect_error)?;
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
