//! What callers name images by: a plain [`Label`] (`name=value`) and an [`ImageName`]
//! (an image name with labels), read from the command-line form `NAME[:VERSION]` by the one
//! parser that store queries, discovery and fetch share.
//!
//! [`Label`] is the label the API passes and returns (queries, listings, discovery, fetch):
//! two plain strings, easy to hand to the bindings. The manifest's own label,
//! [`ManifestLabel`](super::ManifestLabel), has an [`AcIdentifier`] name and keeps unknown
//! JSON fields for byte-exact manifests; `Label::from(&manifest_label)` converts.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::labels::ManifestLabel;
use super::types::AcIdentifier;
use crate::{Error, ErrorKind, Result};

/// A label as the API passes and returns it: a name and a value.
///
/// ```
/// use acikit::Label;
///
/// let label: Label = "version=1.0".parse()?;
/// assert_eq!(label, Label::new("version", "1.0"));
/// assert_eq!(label.to_string(), "version=1.0");
/// # Ok::<(), acikit::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Label {
    /// The label name, e.g. `version`, `os`, `arch`.
    pub name: String,
    /// The label value.
    pub value: String,
}

impl Label {
    /// The label `name` = `value`.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Label {
        Label {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl fmt::Display for Label {
    /// `name=value`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.value)
    }
}

impl FromStr for Label {
    type Err = Error;

    /// Reads `name=value` (split at the first `=`; the value may be empty or hold more
    /// `=`). No `=`, or an empty name, is [`ErrorKind::InvalidArgument`]. The name is not
    /// checked against the AC Identifier rules here: discovery checks it where it matters,
    /// and a query with a name no image has simply matches nothing.
    fn from_str(text: &str) -> Result<Label> {
        match text.split_once('=') {
            Some((name, value)) if !name.is_empty() => Ok(Label::new(name, value)),
            _ => Err(Error::new(
                ErrorKind::InvalidArgument,
                format!("expected NAME=VALUE, got {text:?}"),
            )),
        }
    }
}

impl From<&ManifestLabel> for Label {
    fn from(label: &ManifestLabel) -> Label {
        Label::new(label.name.as_str(), label.value.clone())
    }
}

/// An image name and the labels asked for with it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct ImageName {
    /// The image name, e.g. `example.com/app`.
    pub name: AcIdentifier,
    /// The labels asked for, in order (a later label with the same name wins where a
    /// single value is needed, as in discovery).
    pub labels: Vec<Label>,
}

impl ImageName {
    /// Reads the command-line form `NAME[:VERSION]` with extra `labels`.
    ///
    /// The text after the **last** `:` is the `version` label, replacing any `version` in
    /// `labels`. The name must be an AC Identifier ([`ErrorKind::InvalidValue`] otherwise),
    /// which never holds a `:`; so `example.com:8443/app` reads as the name `example.com`
    /// with version `8443/app` (as appc's `NewAppFromString` reads it), not as a host with
    /// a port. An empty version (`app:`) is kept as an empty `version` label (discovery
    /// counts it as absent).
    ///
    /// ```
    /// use acikit::{ImageName, Label};
    ///
    /// let image = ImageName::parse("example.com/app:1.0", &[Label::new("os", "linux")])?;
    /// assert_eq!(image.name, "example.com/app");
    /// assert_eq!(image.labels, [Label::new("os", "linux"), Label::new("version", "1.0")]);
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn parse(text: &str, labels: &[Label]) -> Result<ImageName> {
        let (name, version) = match text.rsplit_once(':') {
            Some((name, version)) => (name, Some(version)),
            None => (text, None),
        };
        let name = AcIdentifier::parse(name)?;
        let mut labels = labels.to_vec();
        if let Some(version) = version {
            labels.retain(|l| l.name != "version");
            labels.push(Label::new("version", version));
        }
        Ok(ImageName { name, labels })
    }

    /// The image name with `labels`, unchecked beyond the name's type.
    ///
    /// ```
    /// use acikit::schema::AcIdentifier;
    /// use acikit::{ImageName, Label};
    ///
    /// let image = ImageName::new(
    ///     AcIdentifier::parse("example.com/app")?,
    ///     vec![Label::new("version", "1.0"), Label::new("version", "1.1")],
    /// );
    /// // The last label of a name wins.
    /// assert_eq!(image.label("version"), Some("1.1"));
    /// assert_eq!(image.label("os"), None);
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn new(name: AcIdentifier, labels: Vec<Label>) -> ImageName {
        ImageName { name, labels }
    }

    /// The value of the last label called `name`, if any.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .rev()
            .find(|l| l.name == name)
            .map(|l| l.value.as_str())
    }
}

impl fmt::Display for ImageName {
    /// The name, then the labels in brackets when there are any:
    /// `example.com/app [version=1.0, os=linux]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name.as_str())?;
        write_labels(f, &self.labels)
    }
}

/// Writes ` [a=1, b=2]`, or nothing for no labels.
pub(crate) fn write_labels(f: &mut fmt::Formatter<'_>, labels: &[Label]) -> fmt::Result {
    if labels.is_empty() {
        return Ok(());
    }
    f.write_str(" [")?;
    for (i, label) in labels.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{label}")?;
    }
    f.write_str("]")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<Label> {
        pairs.iter().map(|(k, v)| Label::new(*k, *v)).collect()
    }

    #[test]
    fn label_reads_and_writes_name_equals_value() {
        assert_eq!("a=b".parse::<Label>().unwrap(), Label::new("a", "b"));
        assert_eq!("a=".parse::<Label>().unwrap(), Label::new("a", ""));
        assert_eq!("a=b=c".parse::<Label>().unwrap(), Label::new("a", "b=c"));
        assert_eq!(Label::new("a", "b=c").to_string(), "a=b=c");
        for bad in ["", "ab", "=b"] {
            let err = bad.parse::<Label>().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn label_serializes_as_name_and_value() {
        let json = serde_json::to_string(&Label::new("os", "linux")).unwrap();
        assert_eq!(json, r#"{"name":"os","value":"linux"}"#);
        let back: Label = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Label::new("os", "linux"));
    }

    #[test]
    fn label_from_manifest_label() {
        let manifest = ManifestLabel::new(AcIdentifier::parse("arch").unwrap(), "amd64");
        assert_eq!(Label::from(&manifest), Label::new("arch", "amd64"));
    }

    #[test]
    fn name_alone() {
        let image = ImageName::parse("example.com/app", &[]).unwrap();
        assert_eq!(image.name, "example.com/app");
        assert!(image.labels.is_empty());
        assert_eq!(image.to_string(), "example.com/app");
    }

    #[test]
    fn version_after_the_colon_replaces_a_version_label() {
        let given = labels(&[("version", "0.9"), ("os", "linux")]);
        let image = ImageName::parse("example.com/app:1.0", &given).unwrap();
        assert_eq!(image.labels, labels(&[("os", "linux"), ("version", "1.0")]));
        assert_eq!(image.label("version"), Some("1.0"));
        assert_eq!(image.to_string(), "example.com/app [os=linux, version=1.0]");
        // Without a colon the labels are kept as given.
        let image = ImageName::parse("example.com/app", &given).unwrap();
        assert_eq!(image.labels, given);
    }

    #[test]
    fn the_last_colon_starts_the_version() {
        // An AC Identifier holds no `:`: a "port" is read as part of the version.
        let image = ImageName::parse("example.com:8443/app", &[]).unwrap();
        assert_eq!(image.name, "example.com");
        assert_eq!(image.label("version"), Some("8443/app"));
        let err = ImageName::parse("example.com:8443/app:1.0", &[]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidValue);
        let image = ImageName::parse("app:", &[]).unwrap();
        assert_eq!(image.label("version"), Some(""));
    }

    #[test]
    fn bad_names_are_invalid_values() {
        for bad in ["", "Upper/app", "app/", ":1.0", "a b"] {
            let err = ImageName::parse(bad, &[]).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidValue, "{bad:?}");
        }
    }
}
