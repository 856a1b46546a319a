//! `acikit._native.Store`: the core's [`acikit::Store`], each method returning a [`Call`].

use std::path::PathBuf;

use acikit::trust::TrustScope;
use acikit::{
    ExportCompression, FetchOptions, FetchSource, ImageId, ImageQuery, ImportOptions, Label,
    RenderOptions, Store, StoreOptions, Strategy,
};
use pyo3::prelude::*;

use crate::call::{observed, plain};
use crate::convert::{bytes, none, output};
use crate::errors::IntoPyResult;
use crate::net::{auth_config, net_options};
use crate::reader::ImageReader;
use crate::runtime::{Call, Output};
use crate::writer::PyWriter;

/// An open store, usable in the process that opened it.
#[pyclass(module = "acikit._native", name = "Store", frozen)]
pub struct NativeStore {
    store: Store,
    pid: u32,
}

impl NativeStore {
    /// The core's store; refused in a child process after `fork()`, where its index
    /// connections (shared with the parent) must not be used.
    pub fn store(&self) -> PyResult<Store> {
        if self.pid != std::process::id() {
            return Err(pyo3::exceptions::PyRuntimeError::new_err(
                "this Store was opened before os.fork(): open a new Store in the child process",
            ));
        }
        Ok(self.store.clone())
    }
}

/// The labels of a query, in the order given.
pub fn labels(pairs: Vec<(String, String)>) -> Vec<Label> {
    pairs
        .into_iter()
        .map(|(name, value)| Label::new(name, value))
        .collect()
}

/// The ID of the image `text` names: an ID, an ID prefix, or `NAME[:VERSION]` (the newest
/// import matching).
async fn resolve_id(store: &Store, text: &str) -> acikit::Result<ImageId> {
    let query = ImageQuery::parse(text, &[])?;
    Ok(store.resolve(&query).await?.image_id)
}

fn store_output(store: Store) -> Output {
    Box::new(move |py| {
        let pid = std::process::id();
        Ok(Py::new(py, NativeStore { store, pid })?.into_any())
    })
}

#[pymethods]
impl NativeStore {
    /// Opens (creating if needed) the store at `path` (default: the core's default folder).
    #[staticmethod]
    #[pyo3(signature = (path=None, database=None, read_only=false))]
    fn open(path: Option<PathBuf>, database: Option<String>, read_only: bool) -> Call {
        let mut options = StoreOptions::default().read_only(read_only);
        options.database_url = database;
        let dir = path.unwrap_or_else(Store::default_dir);
        plain(Store::open_with(dir, options), store_output)
    }

    /// The store's folder.
    #[getter]
    fn path(&self) -> String {
        self.store.dir().to_string_lossy().into_owned()
    }

    /// The credentials file `fetch` reads when given none (`config/auth.json`; it need
    /// not exist).
    #[getter]
    fn auth_config_path(&self) -> String {
        self.store.auth_config_path().to_string_lossy().into_owned()
    }

    /// Imports the archive at `path`; with `original`, a compressed archive's exact bytes
    /// are kept (pending until `compact_originals`) for `export(.., "original")`.
    #[pyo3(signature = (path, origin=None, original=false, progress=None))]
    fn import_file(
        &self,
        path: PathBuf,
        origin: Option<String>,
        original: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Call> {
        let store = self.store()?;
        let mut options = ImportOptions::default().record_original(original);
        options.origin = origin;
        Ok(observed(
            progress,
            |obs| store.import_file(path, options, obs),
            output,
        ))
    }

    /// Fetches `source` (a name or a URL) with `labels` into the store, with the
    /// credentials of the file `auth_config` (default: the store's `config/auth.json`).
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (source, labels, insecure, port, resolve, ca_certs, trust_keys, dependencies, auth_config=None, progress=None))]
    fn fetch(
        &self,
        source: String,
        labels: Vec<(String, String)>,
        insecure: String,
        port: Option<u16>,
        resolve: Vec<(String, String)>,
        ca_certs: Vec<PathBuf>,
        trust_keys: bool,
        dependencies: bool,
        auth_config: Option<PathBuf>,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Call> {
        let store = self.store()?;
        let source = FetchSource::parse(&source, &self::labels(labels)).py()?;
        let auth = self::auth_config(auth_config, Some(store.auth_config_path()))?;
        let net = net_options(&insecure, port, resolve, ca_certs, auth)?;
        let options = FetchOptions::default()
            .net(net)
            .trust_discovered_keys(trust_keys)
            .dependencies(dependencies);
        Ok(observed(
            progress,
            |obs| store.fetch(source, options, obs),
            output,
        ))
    }

    /// Exports the image `image` to the file `dest`.
    #[pyo3(signature = (image, dest, compression, progress=None))]
    fn export(
        &self,
        image: String,
        dest: PathBuf,
        compression: &str,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Call> {
        let store = self.store()?;
        let compression: ExportCompression = compression.parse().py()?;
        Ok(observed(
            progress,
            |obs| async move {
                let id = resolve_id(&store, &image).await?;
                store.export_to(&id, dest, compression, obs).await
            },
            output,
        ))
    }

    /// Exports the image `image` to the writable binary file object `file`.
    #[pyo3(signature = (image, file, compression, progress=None))]
    fn export_to_file(
        &self,
        image: String,
        file: Py<PyAny>,
        compression: &str,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Call> {
        let store = self.store()?;
        let compression: ExportCompression = compression.parse().py()?;
        Ok(observed(
            progress,
            |obs| async move {
                let id = resolve_id(&store, &image).await?;
                store
                    .export_to_writer(&id, PyWriter::new(file), compression, obs)
                    .await
            },
            output,
        ))
    }

    /// A streaming reader of the image's canonical tar.
    fn open_reader(&self, image: String) -> PyResult<Call> {
        let store = self.store()?;
        Ok(plain(
            async move {
                let info = store.resolve(&ImageQuery::parse(&image, &[])?).await?;
                let reader = store.export_reader(&info.image_id).await?;
                Ok((reader, info.tar_size))
            },
            |(reader, size)| {
                Box::new(move |py| Ok(Py::new(py, ImageReader::new(reader, size))?.into_any()))
            },
        ))
    }

    /// Renders the image's rootfs into `dest`.
    #[pyo3(signature = (image, dest, strategy, skip_unprivileged=false, progress=None))]
    fn render(
        &self,
        image: String,
        dest: PathBuf,
        strategy: &str,
        skip_unprivileged: bool,
        progress: Option<Py<PyAny>>,
    ) -> PyResult<Call> {
        let store = self.store()?;
        let strategy: Strategy = strategy.parse().py()?;
        let options = RenderOptions::default()
            .strategy(strategy)
            .skip_unprivileged(skip_unprivileged);
        Ok(observed(
            progress,
            |obs| async move {
                let id = resolve_id(&store, &image).await?;
                store.render(&id, dest, options, obs).await
            },
            output,
        ))
    }

    /// Releases the run rendered at `target`.
    fn release(&self, target: PathBuf) -> PyResult<Call> {
        Ok(plain(self.store()?.release(target), |()| none()))
    }

    /// Every image, as the core lists them.
    fn list(&self) -> PyResult<Call> {
        Ok(plain(self.store()?.list(), output))
    }

    /// The images matching `name` and `labels`, the chosen one first (none: empty).
    fn find(&self, name: String, labels: Vec<(String, String)>) -> PyResult<Call> {
        let store = self.store()?;
        let labels = crate::store::labels(labels);
        Ok(plain(
            async move {
                let query = ImageQuery::Name(acikit::ImageName::parse(&name, &labels)?);
                match store.resolve_matches(&query).await {
                    Ok(found) => Ok(std::iter::once(found.image).chain(found.others).collect()),
                    Err(err) if err.kind() == acikit::ErrorKind::NotFound => Ok(Vec::new()),
                    Err(err) => Err(err),
                }
            },
            |images: Vec<acikit::ImageInfo>| output(images),
        ))
    }

    /// The image with this ID or unambiguous ID prefix.
    fn get(&self, id: String) -> PyResult<Call> {
        let store = self.store()?;
        Ok(plain(
            async move {
                let query = ImageQuery::Id(acikit::schema::ImageIdPrefix::parse(&id)?);
                store.resolve(&query).await
            },
            output,
        ))
    }

    /// The manifest of the image, as stored (bytes).
    fn manifest(&self, image: String) -> PyResult<Call> {
        let store = self.store()?;
        Ok(plain(
            async move {
                let id = resolve_id(&store, &image).await?;
                store.manifest(&id).await
            },
            bytes,
        ))
    }

    /// Removes the image `image` (an ID, a prefix, or a name matching one image only).
    fn remove(&self, image: String) -> PyResult<Call> {
        let store = self.store()?;
        Ok(plain(
            async move {
                let query = ImageQuery::parse(&image, &[])?;
                let id = store
                    .resolve_matches(&query)
                    .await?
                    .unique(&query)?
                    .image_id;
                store.remove(&id).await
            },
            |()| none(),
        ))
    }

    /// Removes what no image uses.
    #[pyo3(signature = (progress=None))]
    fn gc(&self, progress: Option<Py<PyAny>>) -> PyResult<Call> {
        let store = self.store()?;
        Ok(observed(progress, |obs| store.gc(obs), output))
    }

    /// Turns the pending originals into their compact forms.
    #[pyo3(signature = (progress=None))]
    fn compact_originals(&self, progress: Option<Py<PyAny>>) -> PyResult<Call> {
        let store = self.store()?;
        Ok(observed(
            progress,
            |obs| store.compact_originals(obs),
            output,
        ))
    }

    /// What the store keeps to give back the image's original bytes (`None`: nothing).
    fn original(&self, image: String) -> PyResult<Call> {
        let store = self.store()?;
        Ok(plain(
            async move {
                let id = resolve_id(&store, &image).await?;
                store.original(&id).await
            },
            output,
        ))
    }

    /// Checks (and with `repair`, repairs) the store.
    #[pyo3(signature = (repair=false, progress=None))]
    fn fsck(&self, repair: bool, progress: Option<Py<PyAny>>) -> PyResult<Call> {
        let store = self.store()?;
        Ok(observed(progress, |obs| store.fsck(repair, obs), output))
    }

    /// Sizes and counts of the store.
    fn stats(&self) -> PyResult<Call> {
        Ok(plain(self.store()?.stats(), output))
    }

    /// Trusts the armored public key `key` for names under `prefix` (every name: `None`).
    #[pyo3(signature = (key, prefix=None))]
    fn trust_add(&self, key: Vec<u8>, prefix: Option<String>) -> PyResult<Call> {
        let store = self.store()?;
        Ok(plain(
            async move {
                let scope = match prefix {
                    Some(prefix) => TrustScope::prefix(&prefix)?,
                    None => TrustScope::Root,
                };
                store.trust_to_change()?.add(&key, scope)
            },
            output,
        ))
    }

    /// The trusted keys.
    fn trust_list(&self) -> PyResult<Call> {
        let store = self.store()?;
        Ok(plain(async move { store.trust()?.list() }, output))
    }

    /// Stops trusting the key `fingerprint`; gives the keys removed.
    fn trust_remove(&self, fingerprint: String) -> PyResult<Call> {
        let store = self.store()?;
        Ok(plain(
            async move { store.trust_to_change()?.remove(&fingerprint) },
            output,
        ))
    }

    /// Closes the index (the store cannot be used afterwards).
    fn close(&self) -> PyResult<Call> {
        let close = self.store()?.close();
        Ok(plain(
            async move {
                close.await;
                Ok(())
            },
            |()| none(),
        ))
    }
}
