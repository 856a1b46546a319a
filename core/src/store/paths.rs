//! Where everything lives inside a store folder.
//!
//! ```text
//! STORE/
//!   index.db                      the SQL index (SQLite, the default)
//!   config/database               the PostgreSQL index's URL, without password, if not SQLite
//!   objects/sha256/ab/abcd…       content objects, named by SHA-256, immutable
//!   recipes/sha512/01/0123….recipe  one recipe per image (non-content bytes + content refs)
//!   heads/<size>-<head>-<digest>  large objects by size and SHA-256 of their first MiB
//!   archives/<sha256>             the image ID of an archive file imported (its bytes' SHA-256)
//!   tmp/import-…/                 staging folders of imports in progress (each holds a lock)
//!   locks/commit.lock             shared by imports while they commit, exclusive for gc
//!   config/                       settings and trusted keys
//!   config/trust/                 trusted OpenPGP keys (root.d/, prefix.d/; see `trust`)
//!   config/auth.json              per-host credentials for fetch and discovery (see `net::AuthConfig`)
//!   runs/<sha256>/                per-run records (+ overlay upper/ and work/)
//!   stacks/<key>/rootfs/          flattened rootfs of images with dependencies (cached)
//!   composefs/<key>/meta.erofs    composefs metadata image of a stack (see `render::composefs`)
//!   trees/sha512/<hex>/rootfs/    exploded tree of one image (built on first render)
//!   checkouts/ab/abcd…            checkout objects: contents with their metadata, linked into trees
//!   signatures/<hex>.asc, .json   the signature pushed with an image and its record (`serve`)
//!   originals/<hex>.aci           an upload kept as pushed, when our exports cannot make it
//! ```

use std::path::{Path, PathBuf};

use super::ContentDigest;
use crate::schema::ImageId;

/// The paths of one store folder.
#[derive(Debug, Clone)]
pub struct StorePaths {
    root: PathBuf,
    /// Where the render folders (`trees/`, `stacks/`, `checkouts/`, `runs/` and the render
    /// staging in `tmp/`) are, when not in the store: a scratch folder, for a read-only store.
    render_root: Option<PathBuf>,
}

impl StorePaths {
    /// The layout of the store at `root`.
    pub fn new(root: impl Into<PathBuf>) -> StorePaths {
        StorePaths {
            root: root.into(),
            render_root: None,
        }
    }

    /// The same store with its render folders (trees, stacks, checkouts, runs and their
    /// staging) in `dir` instead: renders from a read-only store build there.
    pub fn with_render_root(mut self, dir: impl Into<PathBuf>) -> StorePaths {
        self.render_root = Some(dir.into());
        self
    }

    /// The render root given with [`StorePaths::with_render_root`], if any.
    pub fn render_root(&self) -> Option<&Path> {
        self.render_root.as_deref()
    }

    /// The folder holding the render folders: the store, or the render root given.
    fn render_base(&self) -> &Path {
        self.render_root.as_deref().unwrap_or(&self.root)
    }

    /// Folder of the staging areas of renders (tree and stack builds): `tmp/` of the store
    /// or of the render root.
    pub fn render_tmp(&self) -> PathBuf {
        self.render_base().join("tmp")
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
        self.objects().join(Self::object_in_objects(digest))
    }

    /// Path of one content object relative to [`objects`](Self::objects): `ab/abcd…`.
    pub fn object_in_objects(digest: &ContentDigest) -> PathBuf {
        let hex = digest.to_hex();
        Path::new(&hex[..2]).join(&hex)
    }

    /// The side index of large objects by size and head (see `store::heads`).
    pub fn heads(&self) -> PathBuf {
        self.root.join("heads")
    }

    /// Archive files imported, by the SHA-256 of their bytes (see `store::archives`).
    pub fn archives(&self) -> PathBuf {
        self.root.join("archives")
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

    /// The file naming the PostgreSQL database that indexes the store, when the index
    /// is not the SQLite file (see `store::database`).
    pub fn database_marker(&self) -> PathBuf {
        self.config().join("database")
    }

    /// The per-host credentials fetch and discovery use by default (`config/auth.json`).
    pub fn auth_config(&self) -> PathBuf {
        self.config().join("auth.json")
    }

    /// Folder of the trusted OpenPGP keys (`config/trust/`; see [`crate::trust::TrustStore`]).
    pub fn trust(&self) -> PathBuf {
        self.config().join("trust")
    }

    /// Folder of the records of rendered runs (`runs/<sha256 of the target path>/`), with the
    /// overlay upper and work folders of each overlay run.
    pub fn runs(&self) -> PathBuf {
        self.render_base().join("runs")
    }

    /// Folder of the rendered stacks (`stacks/<key>/rootfs`: the flattened rootfs of an image
    /// with dependencies or a whitelist; see `render::stack`).
    pub fn stacks(&self) -> PathBuf {
        self.render_base().join("stacks")
    }

    /// Folder of one rendered stack (its `rootfs/` and `layers.json`), by key.
    pub fn stack(&self, key: &str) -> PathBuf {
        self.stacks().join(key)
    }

    /// Folder of the composefs metadata images (`composefs/<stack key>/meta.erofs` and
    /// `layers.json`; see `render::composefs`). Always in the store itself: a composefs run
    /// mounts it over the store's objects.
    pub fn composefs(&self) -> PathBuf {
        self.root.join("composefs")
    }

    /// Folder of one composefs metadata image, by stack key.
    pub fn composefs_image(&self, key: &str) -> PathBuf {
        self.composefs().join(key)
    }

    /// Folder of the exploded trees of images (`trees/sha512/<hex>/rootfs`; see
    /// `render::tree`).
    pub fn trees(&self) -> PathBuf {
        self.render_base().join("trees").join("sha512")
    }

    /// Folder of one image's exploded tree (holding its `rootfs/`).
    pub fn tree(&self, id: &ImageId) -> PathBuf {
        self.trees().join(id.hex())
    }

    /// Folder of checkout objects: regular files with their final metadata, hardlinked into
    /// the trees (`checkouts/<2 hex>/<sha256 of content digest + metadata>`).
    pub fn checkouts(&self) -> PathBuf {
        self.render_base().join("checkouts")
    }

    /// Path of one checkout object, by the hex of its key.
    pub fn checkout(&self, key_hex: &str) -> PathBuf {
        self.checkouts().join(&key_hex[..2]).join(key_hex)
    }

    /// Folder of the signatures pushed with images and their records (see
    /// `serve::records`).
    pub fn signatures(&self) -> PathBuf {
        self.root.join("signatures")
    }

    /// The armored signature pushed with an image (`signatures/<hex>.asc`).
    pub fn signature(&self, id: &ImageId) -> PathBuf {
        self.signatures().join(format!("{}.asc", id.hex()))
    }

    /// The record of an image's pushed signature (`signatures/<hex>.json`): the form it
    /// covers; written last, so its presence makes the signature visible.
    pub fn signature_record(&self, id: &ImageId) -> PathBuf {
        self.signatures().join(format!("{}.json", id.hex()))
    }

    /// Folder of uploads kept as pushed (those our exports cannot reproduce).
    pub fn originals(&self) -> PathBuf {
        self.root.join("originals")
    }

    /// The upload of an image kept as pushed (`originals/<hex>.aci`).
    pub fn original(&self, id: &ImageId) -> PathBuf {
        self.originals().join(format!("{}.aci", id.hex()))
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
