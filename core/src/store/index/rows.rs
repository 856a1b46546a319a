//! Reading index rows into records, the same way for both databases, and the
//! conversions between our sizes and SQL `BIGINT`s.

use sqlx::Row as _;
#[cfg(feature = "postgres")]
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use super::{FetchState, ImageRecord, db_error};
use crate::schema::ImageId;
use crate::{Error, ErrorKind, Result};

/// A result row of either database, read by column position.
pub(super) trait IndexRow {
    /// A `TEXT NOT NULL` column.
    fn text(&self, i: usize) -> sqlx::Result<String>;
    /// A nullable `TEXT` column.
    fn opt_text(&self, i: usize) -> sqlx::Result<Option<String>>;
    /// A `BIGINT NOT NULL` column.
    fn int(&self, i: usize) -> sqlx::Result<i64>;
    /// A nullable `BIGINT` column.
    fn opt_int(&self, i: usize) -> sqlx::Result<Option<i64>>;
}

macro_rules! impl_index_row {
    ($row:ty) => {
        impl IndexRow for $row {
            fn text(&self, i: usize) -> sqlx::Result<String> {
                self.try_get(i)
            }
            fn opt_text(&self, i: usize) -> sqlx::Result<Option<String>> {
                self.try_get(i)
            }
            fn int(&self, i: usize) -> sqlx::Result<i64> {
                self.try_get(i)
            }
            fn opt_int(&self, i: usize) -> sqlx::Result<Option<i64>> {
                self.try_get(i)
            }
        }
    };
}

impl_index_row!(SqliteRow);
#[cfg(feature = "postgres")]
impl_index_row!(PgRow);

/// An [`ImageRecord`] without labels from a row of `image_columns!()`.
pub(super) fn record_from_row<R: IndexRow>(row: &R) -> Result<ImageRecord> {
    const OP: &str = "read an image row";
    let text = |i: usize| -> Result<String> { row.text(i).map_err(db_error(OP)) };
    let int = |i: usize| -> Result<i64> { row.int(i).map_err(db_error(OP)) };
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
        origin: row.opt_text(10).map_err(db_error(OP))?,
        image_id,
    })
}

/// A [`FetchState`] from a row of `url, etag, last_modified, max_age_secs,
/// downloaded_at, image_id`.
pub(super) fn fetch_state_from_row<R: IndexRow>(row: &R, op: &'static str) -> Result<FetchState> {
    let max_age = row.opt_int(3).map_err(db_error(op))?;
    let image_id = row.opt_text(5).map_err(db_error(op))?;
    Ok(FetchState {
        url: row.text(0).map_err(db_error(op))?,
        etag: row.opt_text(1).map_err(db_error(op))?,
        last_modified: row.opt_text(2).map_err(db_error(op))?,
        max_age_secs: max_age.map(|s| from_i64("max-age", s)).transpose()?,
        downloaded_at_ms: row.int(4).map_err(db_error(op))?,
        image_id: image_id.as_deref().map(parse_image_id).transpose()?,
    })
}

/// An image ID read from the database.
pub(super) fn parse_image_id(text: &str) -> Result<ImageId> {
    ImageId::parse(text).map_err(|e| {
        Error::new(
            ErrorKind::Database,
            format!("index: bad image ID in the database: {}", e.message()),
        )
    })
}

/// A size for a BIGINT column.
pub(super) fn to_i64(what: &str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| {
        Error::new(
            ErrorKind::InvalidArgument,
            format!("{what} {value} is too large for the index"),
        )
    })
}

/// A size read from a BIGINT column.
pub(super) fn from_i64(what: &str, value: i64) -> Result<u64> {
    u64::try_from(value).map_err(|_| {
        Error::new(
            ErrorKind::Database,
            format!("index: negative {what} {value} in the database"),
        )
    })
}
