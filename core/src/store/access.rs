//! Whether a store can be written: a store on a read-only mount (a read-only bind mount or
//! NFS export, read-only media), in a folder this user cannot write, or opened read-only on
//! purpose ([`crate::store::StoreOptions::read_only`]) serves every read and refuses every
//! write at once with [`ErrorKind::ReadOnlyStore`]. Here: the detection ([`detect`]), the
//! error ([`refused`]) and the [`Store`] methods the other modules ask
//! ([`Store::is_read_only`], [`Store::require_writable`], [`Store::trust_to_change`]).

use std::path::{Path, PathBuf};

use rustix::fs::{Access, AtFlags, StatVfsMountFlags};
use rustix::io::Errno;
use sha2::{Digest, Sha256};

use crate::schema::ImageId;
use crate::{Error, ErrorKind, Result, Store};

/// Why a store is read-only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadOnlyReason {
    /// The caller asked for it (`StoreOptions::read_only`, `acikit --read-only`).
    Asked,
    /// The store folder is on a read-only mount (`statvfs` reports `ST_RDONLY`).
    ReadOnlyMount,
    /// This user may not write the store folder (`access(W_OK)` fails).
    NotWritable,
}

impl std::fmt::Display for ReadOnlyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ReadOnlyReason::Asked => "opened read-only",
            ReadOnlyReason::ReadOnlyMount => "on a read-only mount",
            ReadOnlyReason::NotWritable => "a folder this user cannot write",
        })
    }
}

/// Whether the existing store folder `root` is read-only, and why; `None` when it can be
/// written or does not exist (it will be created). Asked-for read-only wins.
pub fn detect(root: &Path, asked: bool) -> Result<Option<ReadOnlyReason>> {
    if asked {
        return Ok(Some(ReadOnlyReason::Asked));
    }
    match rustix::fs::statvfs(root) {
        Ok(st) if st.f_flag.contains(StatVfsMountFlags::RDONLY) => {
            return Ok(Some(ReadOnlyReason::ReadOnlyMount));
        }
        Ok(_) => {}
        Err(Errno::NOENT) => return Ok(None),
        Err(e) => {
            return Err(Error::io(
                format!("checking the store folder {}", root.display()),
                e.into(),
            ));
        }
    }
    match rustix::fs::accessat(rustix::fs::CWD, root, Access::WRITE_OK, AtFlags::EACCESS) {
        Ok(()) => Ok(None),
        Err(Errno::ACCESS | Errno::PERM | Errno::ROFS) => Ok(Some(ReadOnlyReason::NotWritable)),
        Err(e) => Err(Error::io(
            format!("checking the store folder {}", root.display()),
            e.into(),
        )),
    }
}

/// The error of a write refused on the read-only store at `root`: `operation` says what
/// was refused ("import", "remove images", ...).
pub fn refused(root: &Path, reason: &ReadOnlyReason, operation: &str) -> Error {
    Error::new(
        ErrorKind::ReadOnlyStore,
        format!(
            "cannot {operation}: the store at {} is read-only ({reason}); nothing was changed",
            root.display()
        ),
    )
}

/// Where the records of runs rendered from the read-only store at `store_root` go, by
/// default (the default of [`crate::store::StoreOptions::runs_dir`]): `$XDG_RUNTIME_DIR/acikit/runs`, else `/run/acikit/runs` for root, else
/// `$XDG_CACHE_HOME/acikit/runs` (`~/.cache/acikit/runs`), each in a folder named after the
/// store's canonical path (16 hex digits of its SHA-256), so each store lists its own runs.
///
/// The first two are cleared at reboot, as overlay mounts are; a run made by copy outlives
/// a reboot, but its record does not: remove such a folder by hand.
pub fn outside_runs_dir(store_root: &Path) -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    let base = if let Some(dir) = var("XDG_RUNTIME_DIR") {
        PathBuf::from(dir).join("acikit/runs")
    } else if rustix::process::geteuid().is_root() {
        PathBuf::from("/run/acikit/runs")
    } else if let Some(dir) = var("XDG_CACHE_HOME") {
        PathBuf::from(dir).join("acikit/runs")
    } else {
        let home = var("HOME").map_or_else(|| PathBuf::from("."), PathBuf::from);
        home.join(".cache/acikit/runs")
    };
    let canonical = std::fs::canonicalize(store_root).unwrap_or_else(|_| store_root.into());
    let digest = Sha256::digest(canonical.as_os_str().as_encoded_bytes());
    base.join(&hex::encode(digest)[..16])
}

impl Store {
    /// Whether the store is read-only: every read works and writes nothing into it (use
    /// records are skipped; renders use the cached trees it has and build the others outside
    /// it), every write fails at once with [`ErrorKind::ReadOnlyStore`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-is-read-only");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// # let aci = acikit::testing::example_aci(&dir, "example.com/hello").await?;
    /// # let id = store.import_file(&aci, Default::default(), Default::default()).await?.image_id;
    /// use acikit::{ErrorKind, ImportOptions, Observer, Store, StoreOptions};
    ///
    /// assert!(!store.is_read_only());
    /// let mut options = StoreOptions::default();
    /// options.read_only = true;
    /// let reader = Store::open_with(store.dir(), options).await?;
    /// assert!(reader.is_read_only());
    /// assert_eq!(reader.list().await?.len(), 1);
    /// let err = reader.import_file(&aci, ImportOptions::default(), Observer::default()).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::ReadOnlyStore);
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn is_read_only(&self) -> bool {
        self.read_only.is_some()
    }

    /// Fails with [`ErrorKind::ReadOnlyStore`], naming the store and `operation`, if the
    /// store is read-only.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-require-writable");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// use acikit::{ErrorKind, Store, StoreOptions};
    ///
    /// store.require_writable("tidy up")?;
    /// let mut options = StoreOptions::default();
    /// options.read_only = true;
    /// let reader = Store::open_with(store.dir(), options).await?;
    /// let err = reader.require_writable("tidy up").unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::ReadOnlyStore);
    /// assert!(err.message().contains("tidy up"));
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn require_writable(&self, operation: &str) -> Result<()> {
        match &self.read_only {
            Some(reason) => Err(refused(self.dir(), reason, operation)),
            None => Ok(()),
        }
    }

    /// Where the records of runs made while the store is read-only go.
    #[cfg_attr(not(feature = "render"), allow(dead_code))]
    pub(crate) fn outside_runs(&self) -> &Path {
        &self.outside_runs
    }

    /// Records a use of the image (its `last_used_at`); skipped, with a debug note, on a
    /// read-only store.
    pub(crate) async fn record_use(&self, id: &ImageId) -> Result<()> {
        if self.is_read_only() {
            tracing::debug!(image = %id, store = %self.dir().display(),
                "read-only store: the use is not recorded");
            return Ok(());
        }
        self.index().touch(id).await
    }

    /// The store's trusted keys, to add or remove some: [`ErrorKind::ReadOnlyStore`] on a
    /// read-only store.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> acikit::Result<()> {
    /// # let dir = acikit::testing::example_dir("store-trust-to-change");
    /// # let store = acikit::Store::open(dir.join("store")).await?;
    /// use acikit::trust::TrustScope;
    ///
    /// # let armored = acikit::testing::EXAMPLE_PUBLIC_KEY.as_bytes();
    /// // `armored`: an ascii-armored public key (`gpg --armor --export`).
    /// let key = store
    ///     .trust_to_change()?
    ///     .add(armored, TrustScope::prefix("example.com")?)?;
    /// assert_eq!(store.trust()?.keys_for("example.com/hello")?, [key.clone()]);
    /// assert!(store.trust()?.keys_for("example.org/hello")?.is_empty());
    /// store.trust_to_change()?.remove(&key.fingerprint)?;
    /// assert!(store.trust()?.list()?.is_empty());
    /// # store.close().await;
    /// # std::fs::remove_dir_all(&dir).unwrap();
    /// # Ok(())
    /// # }
    /// ```
    pub fn trust_to_change(&self) -> Result<crate::trust::TrustStore> {
        self.require_writable("change the trusted keys")?;
        self.trust()
    }
}
