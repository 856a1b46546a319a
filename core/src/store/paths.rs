//! Where everything lives inside a store folder.
//!
//! ```text
//! STORE/
//!   index.db                      the SQL index (SQLite by default)
//!   objects/sha256/ab/abcd…       content objects, named by SHA-256, immutable
//!   recipes/sha512/01/0123….recipe  one recipe per image (non-content bytes + content refs)
//!   tmp/import-…/                 staging folders of imports in progress (each holds a lock)
//!   locks/commit.lock             shared by imports while they commit, exclusive for gc
//!   config/                       settings and trusted keys
//! ```

use std::path::{Path, PathBuf};

use super::ContentDigest;
use crate::schema::ImageId;

/// The paths of one store folder.
#[derive(Debug, Clone)]
pub struct StorePaths {
    root: PathBuf,
}

impl StorePaths {
    /// The layout of the store at `root`.
    pub fn new(root: impl Into<PathBuf>) -> StorePaths {
        StorePaths { root: root.into() }
    }

    /// The store folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The SQLite index file.
    pub fn index_db(&self) -> PathBuf {
        self.root.join("index.db")
    }

    /// Folder of all content objects.
    pub fn objects(&self) -> PathBuf {
        self.root.join("objects").join("sha256")
    }

    /// Path of one content object.
    pub fn object(&self, digest: &ContentDigest) -> PathBuf {
        let hex = digest.to_hex();
        self.objects().join(&hex[..2]).join(hex)
    }

    /// Folder of all recipes.
    pub fn recipes(&self) -> PathBuf {
        self.root.join("recipes").join("sha512")
    }

    /// Path of one image's recipe.
    pub fn recipe(&self, id: &ImageId) -> PathBuf {
        let hex = id.hex();
        self.recipes().join(&hex[..2]).join(format!("{hex}.recipe"))
    }

    /// Folder of staging areas and temporary files.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The lock that orders commits of imports against garbage collection.
    pub fn commit_lock(&self) -> PathBuf {
        self.root.join("locks").join("commit.lock")
    }

    /// Folder for settings and trusted keys.
    pub fn config(&self) -> PathBuf {
        self.root.join("config")
    }

    /// Creates the folders of a new store (idempotent).
    pub fn create(&self) -> std::io::Result<()> {
        for dir in [
            self.objects(),
            self.recipes(),
            self.tmp(),
            self.root.join("locks"),
            self.config(),
        ] {
            std::fs::create_dir_all(dir)?;
        }
        Ok(())
    }
}
