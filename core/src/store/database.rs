//! Which database indexes a store folder, and keeping it that way.
//!
//! A store's objects and recipes are only meaningful with its index: `gc` deletes the
//! objects that no indexed image's recipe names, so two indexes over one folder would
//! delete each other's objects. A store therefore has exactly one index, chosen when
//! the folder is first opened:
//! - the SQLite file `index.db`, the default;
//! - a PostgreSQL database, given by URL: its identity (the URL without password,
//!   see [`database_identity`]) is then written to `config/database`, later opens
//!   without a URL connect to it (the password from `PGPASSWORD` or `~/.pgpass`),
//!   and opens with another URL, or with none where SQLite was chosen, are refused.

use std::path::Path;

use super::access::{self, ReadOnlyReason};
use super::index::{Index, database_identity};
use super::objects;
use super::paths::StorePaths;
use crate::atomic_file::write_atomic;
use crate::blocking::blocking;
use crate::{Error, ErrorKind, Result};

/// Where the index of a store folder is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Choice {
    /// The SQLite file in the folder.
    Sqlite,
    /// The PostgreSQL database at this URL.
    Postgres(String),
}

/// Opens the index of the store at `paths`: the one recorded for it, or the one
/// `database_url` names for a new store. Creates the store's folders (after connecting,
/// for PostgreSQL: a database that does not answer leaves nothing behind) and removes
/// the staging left by killed imports.
///
/// A read-only store (`read_only` says why) is opened without writing anything: no folder
/// is created, no staging removed, no migration run, no marker written; its index must
/// exist with its schema up to date ([`ErrorKind::ReadOnlyStore`] otherwise).
pub(super) async fn open_index(
    paths: &StorePaths,
    database_url: Option<&str>,
    read_only: Option<&ReadOnlyReason>,
) -> Result<Index> {
    if let Some(reason) = read_only {
        return open_index_read_only(paths, database_url, reason).await;
    }
    match choose(paths, database_url)? {
        Choice::Sqlite => {
            prepare_folders(paths).await?;
            Index::open(&paths.index_db()).await
        }
        Choice::Postgres(url) => {
            let index = Index::connect(&url).await?;
            let prepared = async {
                prepare_folders(paths).await?;
                record(paths, &database_identity(&url)?)
            };
            if let Err(err) = prepared.await {
                index.close().await;
                return Err(err);
            }
            Ok(index)
        }
    }
}

/// [`open_index`] for a read-only store.
async fn open_index_read_only(
    paths: &StorePaths,
    database_url: Option<&str>,
    reason: &ReadOnlyReason,
) -> Result<Index> {
    let root = paths.root();
    let no_store = || {
        Error::new(
            ErrorKind::NotFound,
            format!(
                "no store at {} (it is read-only, {reason}, so none can be created there)",
                root.display()
            ),
        )
    };
    if !root.is_dir() {
        return Err(no_store());
    }
    match choose(paths, database_url)? {
        Choice::Sqlite if !paths.index_db().exists() => Err(no_store()),
        Choice::Sqlite => Index::open_read_only(&paths.index_db()).await,
        Choice::Postgres(_) if read_marker(&paths.database_marker())?.is_none() => Err(
            access::refused(root, reason, "create a store indexed in PostgreSQL"),
        ),
        Choice::Postgres(url) => Index::connect_read_only(&url).await,
    }
}

/// Creates the store's folders if missing and removes the staging folders of imports
/// that were killed.
async fn prepare_folders(paths: &StorePaths) -> Result<()> {
    let paths = paths.clone();
    blocking(move || {
        paths.create().map_err(|e| {
            Error::io(
                format!("creating the store at {}", paths.root().display()),
                e,
            )
        })?;
        objects::remove_stale_staging(&paths)
    })
    .await
    .map(|_| ())
}

/// Decides which index to open, refusing any that is not the store's own.
fn choose(paths: &StorePaths, database_url: Option<&str>) -> Result<Choice> {
    let root = paths.root().display();
    let recorded = read_marker(&paths.database_marker())?;
    match (database_url, recorded) {
        (None, None) => Ok(Choice::Sqlite),
        (None, Some(identity)) => Ok(Choice::Postgres(identity)),
        (Some(url), recorded) => {
            let identity = database_identity(url)?;
            match recorded {
                Some(recorded) if recorded != identity => Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "the store at {root} is indexed in {recorded}, not in {identity}: a \
                         store has one index (its objects are only known to it)"
                    ),
                )),
                Some(_) => Ok(Choice::Postgres(url.to_string())),
                None if paths.index_db().exists() => Err(Error::new(
                    ErrorKind::InvalidArgument,
                    format!(
                        "the store at {root} already has a SQLite index ({}); a store has one \
                         index: use a new folder for a PostgreSQL index",
                        paths.index_db().display()
                    ),
                )),
                None => Ok(Choice::Postgres(url.to_string())),
            }
        }
    }
}

/// The identity recorded in the marker file, if there is one.
fn read_marker(marker: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(marker) {
        Ok(text) => {
            let identity = text.trim();
            if identity.is_empty() {
                return Err(Error::new(
                    ErrorKind::CorruptStore,
                    format!(
                        "{} is empty: it should name the store's database",
                        marker.display()
                    ),
                ));
            }
            Ok(Some(identity.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(format!("reading {}", marker.display()), e)),
    }
}

/// Writes the marker (atomically; several processes may write the same one at once).
fn record(paths: &StorePaths, identity: &str) -> Result<()> {
    let marker = paths.database_marker();
    if read_marker(&marker)?.as_deref() == Some(identity) {
        return Ok(());
    }
    write_atomic(&marker, format!("{identity}\n").as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_keeps_the_index_it_was_created_with() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StorePaths::new(dir.path().join("store"));
        paths.create().unwrap();
        let url = "postgres://ann:secret@db.example/images";
        assert_eq!(choose(&paths, None).unwrap(), Choice::Sqlite);
        assert_eq!(
            choose(&paths, Some(url)).unwrap(),
            Choice::Postgres(url.into())
        );

        record(&paths, &database_identity(url).unwrap()).unwrap();
        let marker = std::fs::read_to_string(paths.database_marker()).unwrap();
        assert_eq!(marker, "postgres://ann@db.example:5432/images\n");
        assert!(!marker.contains("secret"));
        // Without a URL: the recorded database, password-less.
        assert_eq!(
            choose(&paths, None).unwrap(),
            Choice::Postgres("postgres://ann@db.example:5432/images".into())
        );
        // The same database with its password: fine; another one: refused.
        assert_eq!(
            choose(&paths, Some("postgres://ann:other@db.example:5432/images")).unwrap(),
            Choice::Postgres("postgres://ann:other@db.example:5432/images".into())
        );
        let err = choose(&paths, Some("postgres://ann@db.example/other")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("one index"), "{err}");
    }

    #[test]
    fn a_sqlite_store_refuses_a_database_url() {
        let dir = tempfile::tempdir().unwrap();
        let paths = StorePaths::new(dir.path());
        paths.create().unwrap();
        std::fs::write(paths.index_db(), b"").unwrap();
        let err = choose(&paths, Some("postgres://db/images")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("SQLite index"), "{err}");
        assert_eq!(choose(&paths, None).unwrap(), Choice::Sqlite);
    }
}
