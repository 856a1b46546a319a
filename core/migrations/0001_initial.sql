-- acikit store index, schema version 1.
--
-- Portable SQL only: the same file runs on SQLite (the embedded default,
-- `index.db` in the store folder) and on PostgreSQL (a shared repository, later).
-- Hence TEXT, BIGINT and INTEGER columns only; no BLOB/BYTEA, no AUTOINCREMENT or
-- SERIAL, no WITHOUT ROWID, no SQLite- or PostgreSQL-only syntax.
--
-- Conventions:
-- - image IDs are `sha512-` + 128 lowercase hex digits, content digests 64
--   lowercase hex digits (SHA-256), both as TEXT;
-- - manifests are JSON, so UTF-8: the original bytes are kept as TEXT;
-- - sizes are bytes and times are Unix milliseconds, as BIGINT;
-- - a released migration is never edited (sqlx checks its checksum): schema
--   changes go in a new numbered file.

-- One row per image in the store.
CREATE TABLE images (
    image_id     TEXT   NOT NULL PRIMARY KEY,
    -- The manifest's `name`.
    name         TEXT   NOT NULL,
    -- The manifest exactly as found in the archive.
    manifest     TEXT   NOT NULL,
    -- Size of the archive as imported (compressed, if it was).
    archive_size BIGINT NOT NULL,
    -- Size of the uncompressed tar (what the image ID hashes).
    tar_size     BIGINT NOT NULL,
    -- Sum of the content bytes of its regular files.
    content_size BIGINT NOT NULL,
    -- Size of its recipe on disk.
    recipe_size  BIGINT NOT NULL,
    -- Number of tar entries.
    entries      BIGINT NOT NULL,
    imported_at  BIGINT NOT NULL,
    last_used_at BIGINT NOT NULL,
    -- File path or URL it came from, if known.
    origin       TEXT
);
CREATE INDEX images_name ON images (name, imported_at);

-- The manifest's labels, `ordinal` being the position in the manifest.
CREATE TABLE image_labels (
    image_id TEXT    NOT NULL REFERENCES images (image_id) ON DELETE CASCADE,
    name     TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    ordinal  INTEGER NOT NULL,
    PRIMARY KEY (image_id, name)
);
CREATE INDEX image_labels_name_value ON image_labels (name, value);

-- The manifest's annotations, `ordinal` being the position in the manifest.
CREATE TABLE image_annotations (
    image_id TEXT    NOT NULL REFERENCES images (image_id) ON DELETE CASCADE,
    name     TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    ordinal  INTEGER NOT NULL,
    PRIMARY KEY (image_id, name)
);

-- Content objects known to the index.
CREATE TABLE objects (
    digest TEXT   NOT NULL PRIMARY KEY,
    size   BIGINT NOT NULL
);

-- Which objects each image references (each distinct object once).
CREATE TABLE image_objects (
    image_id TEXT NOT NULL REFERENCES images (image_id) ON DELETE CASCADE,
    digest   TEXT NOT NULL REFERENCES objects (digest),
    PRIMARY KEY (image_id, digest)
);
-- For gc ("is this object still referenced?") and for foreign-key checks on
-- deleting objects.
CREATE INDEX image_objects_digest ON image_objects (digest);

-- HTTP cache state of remote images (filled by fetch).
CREATE TABLE remote_fetches (
    url           TEXT   NOT NULL PRIMARY KEY,
    etag          TEXT,
    last_modified TEXT,
    max_age_secs  BIGINT,
    downloaded_at BIGINT NOT NULL,
    image_id      TEXT   REFERENCES images (image_id) ON DELETE SET NULL
);
CREATE INDEX remote_fetches_image ON remote_fetches (image_id);
