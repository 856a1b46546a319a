//! What a fetched image must match: the name and labels it was asked by (discovery spec,
//! "Validation"), and for a dependency its pinned image ID and size.

use crate::discovery::host_os_arch;
use crate::schema::{Dependency, ImageId, ImageManifest, Label};
use crate::store::{ImageInfo, StagedImage};
use crate::{Error, ErrorKind, Result};

/// The expectations on one fetched image.
#[derive(Debug, Clone, Default)]
pub struct Expected {
    /// The manifest's name must be this.
    pub name: Option<String>,
    /// Labels the manifest must carry with these values (a label absent from this list
    /// matches any value). `version=latest` is a discovery alias and is not checked.
    pub labels: Vec<Label>,
    /// Labels filled in by default (the host's `os` and `arch`): a manifest that has the
    /// label must agree, one that lacks it matches.
    pub defaults: Vec<Label>,
    /// The image ID it must have (a dependency's `imageID`).
    pub image_id: Option<ImageId>,
    /// The size it must have (a dependency's `size`): the archive's or the tar's.
    pub size: Option<u64>,
}

impl Expected {
    /// For an image asked by `name` and `labels`.
    pub fn name(name: &str, labels: &[Label]) -> Result<Expected> {
        let (os, arch) = host_os_arch();
        let defaults = [("os", os), ("arch", arch)]
            .into_iter()
            .filter(|(k, _)| !labels.iter().any(|l| l.name == *k))
            .map(|(k, v)| Label::new(k, v))
            .collect();
        Ok(Expected {
            name: Some(name.to_string()),
            labels: labels.to_vec(),
            defaults,
            image_id: None,
            size: None,
        })
    }

    /// For a dependency as a manifest lists it.
    pub fn dependency(dep: &Dependency) -> Result<Expected> {
        let labels: Vec<Label> = dep.labels.iter().map(Label::from).collect();
        Ok(Expected {
            image_id: dep.image_id.clone(),
            size: dep.size,
            ..Expected::name(dep.image_name.as_str(), &labels)?
        })
    }

    /// Checks an image read by an import, before it is committed.
    pub fn check_staged(&self, staged: &StagedImage) -> Result<()> {
        self.check_id(&staged.image_id)?;
        self.check_manifest(&staged.manifest)?;
        self.check_size(&staged.image_id, staged.archive_size, staged.tar_size)
    }

    /// Checks an image the store already has.
    pub fn check_stored(&self, info: &ImageInfo) -> Result<()> {
        self.check_id(&info.image_id)?;
        if let Some(name) = &self.name
            && info.name != *name
        {
            return Err(mismatch(format!(
                "{} is named {}, not {name}",
                info.image_id, info.name
            )));
        }
        let found = |k: &str| info.label(k).map(str::to_string);
        self.check_labels(&info.image_id, found)?;
        self.check_size(&info.image_id, info.archive_size, info.tar_size)
    }

    fn check_id(&self, id: &ImageId) -> Result<()> {
        match &self.image_id {
            Some(want) if want != id => Err(Error::new(
                ErrorKind::DependencyMismatch,
                format!("expected image {want}, got {id}"),
            )),
            _ => Ok(()),
        }
    }

    fn check_manifest(&self, manifest: &ImageManifest) -> Result<()> {
        if let Some(name) = &self.name
            && manifest.name.as_str() != name
        {
            return Err(mismatch(format!(
                "asked for {name}, the image's manifest says {}",
                manifest.name
            )));
        }
        let id_hint = self.name.clone().unwrap_or_default();
        let found = |k: &str| manifest.labels.get(k).map(str::to_string);
        self.check_labels_named(&id_hint, found)
    }

    fn check_labels(&self, id: &ImageId, found: impl Fn(&str) -> Option<String>) -> Result<()> {
        self.check_labels_named(id.as_str(), found)
    }

    fn check_labels_named(&self, what: &str, found: impl Fn(&str) -> Option<String>) -> Result<()> {
        for Label {
            name: key,
            value: want,
        } in &self.labels
        {
            if key == "version" && want == "latest" {
                continue;
            }
            match found(key) {
                Some(have) if have == *want => {}
                Some(have) => {
                    return Err(mismatch(format!(
                        "{what}: asked for {key}={want}, the manifest says {key}={have}"
                    )));
                }
                None => {
                    return Err(mismatch(format!(
                        "{what}: asked for {key}={want}, the manifest has no {key} label"
                    )));
                }
            }
        }
        for Label {
            name: key,
            value: want,
        } in &self.defaults
        {
            if let Some(have) = found(key)
                && have != *want
            {
                return Err(mismatch(format!(
                    "{what}: the image is for {key}={have}, this host is {key}={want}"
                )));
            }
        }
        Ok(())
    }

    fn check_size(&self, id: &ImageId, archive: u64, tar: u64) -> Result<()> {
        match self.size {
            Some(size) if size != archive && size != tar => Err(Error::new(
                ErrorKind::DependencyMismatch,
                format!(
                    "{id}: the dependency's size is {size}, the image is {archive} bytes \
                     ({tar} uncompressed)"
                ),
            )),
            _ => Ok(()),
        }
    }
}

fn mismatch(message: String) -> Error {
    Error::new(ErrorKind::ImageMismatch, message)
}
