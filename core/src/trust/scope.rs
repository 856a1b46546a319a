//! [`TrustScope`]: what names a trusted key may sign, and how a scope is named on disk.
//!
//! rkt's model: a key is trusted either for every name (a *root* key) or for one name prefix. A
//! prefix covers the name itself and the names below it at a path-component boundary:
//! `example.com/foo` covers `example.com/foo` and `example.com/foo/bar`, never
//! `example.com/foobar`.

use std::fmt;

use serde::Serialize;

use crate::schema::AcIdentifier;
use crate::{Error, ErrorKind, Result};

/// Which image names a trusted key may sign.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", content = "prefix", rename_all = "snake_case")]
pub enum TrustScope {
    /// Every name.
    Root,
    /// Names equal to this prefix or below it (`PREFIX/...`); a valid AC identifier.
    Prefix(String),
}

impl TrustScope {
    /// A prefix scope, checked as an AC identifier (`example.com/foo`); an invalid prefix is an
    /// [`ErrorKind::InvalidValue`] error naming it.
    ///
    /// ```
    /// use acikit::trust::TrustScope;
    ///
    /// let scope = TrustScope::prefix("example.com/tools")?;
    /// assert_eq!(scope, TrustScope::Prefix("example.com/tools".to_string()));
    /// assert!(TrustScope::prefix("Not An Identifier").is_err());
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn prefix(prefix: &str) -> Result<TrustScope> {
        AcIdentifier::parse(prefix).map_err(|e| {
            Error::new(
                ErrorKind::InvalidValue,
                format!("invalid trust prefix: {}", e.message()),
            )
        })?;
        Ok(TrustScope::Prefix(prefix.to_string()))
    }

    /// Whether a key of this scope may sign the image `name`: always for [`TrustScope::Root`];
    /// for a prefix, when `name` is the prefix or starts with the prefix followed by `/`.
    ///
    /// ```
    /// use acikit::trust::TrustScope;
    ///
    /// let scope = TrustScope::prefix("example.com/tools")?;
    /// assert!(scope.covers("example.com/tools"));
    /// assert!(scope.covers("example.com/tools/hello"));
    /// assert!(!scope.covers("example.com/toolshed"));
    /// assert!(TrustScope::Root.covers("anything.example/at-all"));
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn covers(&self, name: &str) -> bool {
        match self {
            TrustScope::Root => true,
            TrustScope::Prefix(prefix) => match name.strip_prefix(prefix.as_str()) {
                Some(rest) => rest.is_empty() || rest.starts_with('/'),
                None => false,
            },
        }
    }

    /// The folder name of a prefix scope under `prefix.d/`: the prefix with `/` written as `,`
    /// (as rkt does; `,` cannot occur in an AC identifier, so the mapping is reversible).
    pub(crate) fn escaped(prefix: &str) -> String {
        prefix.replace('/', ",")
    }

    /// The prefix scope a `prefix.d/` folder name stands for, if it is a valid escaped prefix.
    pub(crate) fn from_escaped(folder: &str) -> Option<TrustScope> {
        TrustScope::prefix(&folder.replace(',', "/")).ok()
    }
}

impl fmt::Display for TrustScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrustScope::Root => f.write_str("all names (root)"),
            TrustScope::Prefix(prefix) => write!(f, "prefix {prefix}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_covers_at_component_boundary() {
        let scope = TrustScope::prefix("example.com/foo").unwrap();
        assert!(scope.covers("example.com/foo"));
        assert!(scope.covers("example.com/foo/bar"));
        assert!(!scope.covers("example.com/foobar"));
        assert!(!scope.covers("example.com"));
        assert!(!scope.covers("example.com/fo"));
        assert!(TrustScope::Root.covers("anything.org/x"));
    }

    #[test]
    fn invalid_prefixes_are_refused() {
        for bad in ["", "Example.com", "example.com/", "/x", "a//b", "a,b"] {
            let err = TrustScope::prefix(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidValue, "{bad:?}");
        }
    }

    #[test]
    fn escaping_round_trips() {
        let escaped = TrustScope::escaped("example.com/foo/bar");
        assert_eq!(escaped, "example.com,foo,bar");
        assert_eq!(
            TrustScope::from_escaped(&escaped),
            Some(TrustScope::Prefix("example.com/foo/bar".into()))
        );
        assert_eq!(TrustScope::from_escaped("bad name"), None);
    }
}
