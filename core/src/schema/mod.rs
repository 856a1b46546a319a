//! The appc image manifest and value types, parsed and validated.
//!
//! - `types`: the value types of `types.md` ([`AcIdentifier`], [`AcName`],
//!   [`AcKind`], [`AcVersion`], [`ImageId`], [`ImageIdPrefix`], [`Timestamp`]);
//! - `labels`: the manifest's [`ManifestLabel`], [`Labels`] and the [`OsArchWhitelist`];
//! - `name`: the API's plain [`Label`] and [`ImageName`] (`NAME[:VERSION]` + labels, the
//!   one parser of image names given by callers);
//! - `manifest`: [`ImageManifest`] and its parts, as serde structs that keep
//!   unknown fields;
//! - `validate`: the rules, applied to the manifest JSON, collecting every
//!   [`Problem`] with its JSON path; [`ValidationOptions`];
//! - `problem`: [`Problem`] and its stable [`codes`].
//!
//! [`ImageManifest::parse`] reads the JSON loosely first (duplicate keys and wrong
//! types become problems, not a stop at the first serde error), validates it, and
//! only then fills the typed structs.

mod json;
mod labels;
mod manifest;
mod name;
mod problem;
mod types;
mod validate;

pub use labels::{Labels, ManifestLabel, OsArchWhitelist};
pub use manifest::{
    Annotation, App, Dependency, EnvironmentVariable, EventHandler, ImageManifest, Isolator,
    MountPoint, Port,
};
pub use name::{ImageName, Label};
pub use problem::{MAX_PROBLEMS, Problem, codes};
pub use types::{AcIdentifier, AcKind, AcName, AcVersion, ImageId, ImageIdPrefix, Timestamp};
pub use validate::ValidationOptions;
