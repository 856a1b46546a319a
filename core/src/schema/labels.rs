//! Manifest labels: [`ManifestLabel`], the ordered list [`Labels`] with lookup and matching,
//! and the [`OsArchWhitelist`] of supported `os`/`arch` label pairs.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::types::AcIdentifier;

/// One label: a name (AC Identifier) and a string value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestLabel {
    /// The label name, e.g. `version`, `os`, `arch`.
    pub name: AcIdentifier,
    /// The label value.
    pub value: String,
    /// Fields this crate does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl ManifestLabel {
    /// A label `name` = `value`.
    pub fn new(name: AcIdentifier, value: impl Into<String>) -> Self {
        ManifestLabel {
            name,
            value: value.into(),
            extra: Map::new(),
        }
    }
}

/// An ordered list of labels, serialized as a JSON array of `{name, value}` objects.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Labels(Vec<ManifestLabel>);

impl Labels {
    /// An empty list.
    pub fn new() -> Self {
        Labels(Vec::new())
    }

    /// The value of the first label called `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|l| l.name.as_str() == name)
            .map(|l| l.value.as_str())
    }

    /// Whether every `(name, value)` of `query` is a label here with an equal value.
    ///
    /// Labels absent from the query match any value; an empty query matches everything.
    pub fn matches<K: AsRef<str>, V: AsRef<str>>(&self, query: &[(K, V)]) -> bool {
        query
            .iter()
            .all(|(k, v)| self.get(k.as_ref()) == Some(v.as_ref()))
    }

    /// Appends a label (uniqueness is checked by validation, not here).
    pub fn push(&mut self, label: ManifestLabel) {
        self.0.push(label);
    }

    /// The labels in order.
    pub fn iter(&self) -> std::slice::Iter<'_, ManifestLabel> {
        self.0.iter()
    }

    /// The labels as a slice.
    pub fn as_slice(&self) -> &[ManifestLabel] {
        &self.0
    }

    /// The number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no labels.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<ManifestLabel>> for Labels {
    fn from(labels: Vec<ManifestLabel>) -> Self {
        Labels(labels)
    }
}

impl FromIterator<ManifestLabel> for Labels {
    fn from_iter<I: IntoIterator<Item = ManifestLabel>>(iter: I) -> Self {
        Labels(iter.into_iter().collect())
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a ManifestLabel;
    type IntoIter = std::slice::Iter<'a, ManifestLabel>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The `os`/`arch` label pairs accepted by validation.
///
/// The default holds the spec's list (`linux/amd64`, `linux/i386`, `freebsd/amd64`,
/// `freebsd/i386`, `freebsd/arm`, `darwin/x86_64`, `darwin/i386`) plus the pairs the
/// newer Go reference added (`linux/aarch64`, `linux/aarch64_be`, `linux/armv6l`,
/// `linux/armv7l`, `linux/armv7b`, `linux/ppc64`, `linux/ppc64le`, `linux/s390x`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsArchWhitelist {
    pairs: BTreeMap<String, BTreeSet<String>>,
}

impl OsArchWhitelist {
    /// A whitelist with no pairs at all.
    pub fn empty() -> Self {
        OsArchWhitelist {
            pairs: BTreeMap::new(),
        }
    }

    /// Accepts the pair `os`/`arch` (and so `os` alone).
    pub fn allow(&mut self, os: impl Into<String>, arch: impl Into<String>) -> &mut Self {
        self.pairs.entry(os.into()).or_default().insert(arch.into());
        self
    }

    /// Accepts `os` alone (an image with an `os` label and no `arch` label).
    pub fn allow_os(&mut self, os: impl Into<String>) -> &mut Self {
        self.pairs.entry(os.into()).or_default();
        self
    }

    /// Whether `os` is a known operating system.
    pub fn knows_os(&self, os: &str) -> bool {
        self.pairs.contains_key(os)
    }

    /// Whether the pair `os`/`arch` is accepted.
    pub fn allows(&self, os: &str, arch: &str) -> bool {
        self.pairs.get(os).is_some_and(|archs| archs.contains(arch))
    }

    /// Every known operating system, sorted.
    pub fn oses(&self) -> impl Iterator<Item = &str> {
        self.pairs.keys().map(String::as_str)
    }

    /// Every accepted pair, sorted.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs
            .iter()
            .flat_map(|(os, archs)| archs.iter().map(move |a| (os.as_str(), a.as_str())))
    }
}

impl Default for OsArchWhitelist {
    fn default() -> Self {
        let mut list = OsArchWhitelist::empty();
        for (os, archs) in [
            (
                "linux",
                &[
                    "amd64",
                    "i386",
                    "aarch64",
                    "aarch64_be",
                    "armv6l",
                    "armv7l",
                    "armv7b",
                    "ppc64",
                    "ppc64le",
                    "s390x",
                ][..],
            ),
            ("freebsd", &["amd64", "i386", "arm"][..]),
            ("darwin", &["x86_64", "i386"][..]),
        ] {
            for arch in archs {
                list.allow(os, *arch);
            }
        }
        list
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ManifestLabel::new(AcIdentifier::parse(k).unwrap(), *v))
            .collect()
    }

    #[test]
    fn get_and_matches() {
        let l = labels(&[("version", "1.0.0"), ("os", "linux"), ("arch", "amd64")]);
        assert_eq!(l.get("os"), Some("linux"));
        assert_eq!(l.get("name"), None);
        assert!(l.matches::<&str, &str>(&[]));
        assert!(l.matches(&[("os", "linux")]));
        assert!(l.matches(&[("os".to_string(), "linux".to_string())]));
        assert!(l.matches(&[("os", "linux"), ("version", "1.0.0")]));
        assert!(!l.matches(&[("os", "freebsd")]));
        assert!(!l.matches(&[("env", "canary")]));
        assert_eq!(l.len(), 3);
        assert_eq!(l.iter().next().unwrap().name, "version");
    }

    #[test]
    fn serde_keeps_unknown_fields() {
        let json = r#"[{"name":"os","value":"linux","x-note":[1,2]}]"#;
        let l: Labels = serde_json::from_str(json).unwrap();
        assert_eq!(l.as_slice()[0].extra["x-note"], serde_json::json!([1, 2]));
        let back: Value = serde_json::to_value(&l).unwrap();
        assert_eq!(back, serde_json::from_str::<Value>(json).unwrap());
    }

    #[test]
    fn whitelist_default_and_extension() {
        let mut w = OsArchWhitelist::default();
        assert!(w.allows("linux", "amd64"));
        assert!(w.allows("linux", "s390x"));
        assert!(w.allows("darwin", "x86_64"));
        assert!(!w.allows("darwin", "amd64"));
        assert!(!w.allows("windows", "amd64"));
        assert!(w.knows_os("freebsd"));
        assert!(!w.knows_os("windows"));
        assert_eq!(w.pairs().count(), 15);
        assert_eq!(w.oses().collect::<Vec<_>>(), ["darwin", "freebsd", "linux"]);
        w.allow("windows", "amd64").allow_os("plan9");
        assert!(w.allows("windows", "amd64"));
        assert!(w.knows_os("plan9"));
        assert!(!OsArchWhitelist::empty().knows_os("linux"));
    }
}
