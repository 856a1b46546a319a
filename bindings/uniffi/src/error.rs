//! The one error type: a variant per `ErrorCategory` (one exception class each, under
//! `AcikitException` in Kotlin), every variant carrying the core's stable code.

use acikit::ErrorCategory;

/// One problem of an `invalid_manifest` error.
#[derive(Debug, Clone, PartialEq, Eq, uniffi::Record)]
pub struct ManifestProblem {
    /// The JSON path of the value at fault (`labels[0].name`, or empty for the document).
    pub path: String,
    /// The problem's stable code.
    pub code: String,
    /// What is wrong.
    pub message: String,
}

macro_rules! error_enum {
    ($( $(#[$doc:meta])* $variant:ident = $category:ident, )*) => {
        /// An error of the core, as the variant of its category (`ErrorCategory`).
        ///
        /// Every variant has the same fields: `code` (the stable `ErrorKind` code, e.g.
        /// `not_found`, `ambiguous_image`), `category`, `retryable`, `detail` (the
        /// human-readable message), `entry` (the archive entry concerned, if any) and
        /// `problems` (for `invalid_manifest`).
        #[derive(Debug, Clone, thiserror::Error, uniffi::Error)]
        pub enum AcikitError {
            $(
                $(#[$doc])*
                #[error("{code}: {detail}")]
                $variant {
                    /// The stable code (`ErrorKind::as_str()`), e.g. `not_found`.
                    code: String,
                    /// The category (`ErrorCategory::as_str()`), e.g. `not_found`.
                    category: String,
                    /// Whether trying again later may succeed (`ErrorKind::is_retryable()`).
                    retryable: bool,
                    /// The human-readable message.
                    detail: String,
                    /// The archive entry the error concerns, if any.
                    entry: Option<String>,
                    /// For `invalid_manifest`: every problem, with its JSON path.
                    problems: Vec<ManifestProblem>,
                },
            )*
        }

        impl From<acikit::Error> for AcikitError {
            fn from(err: acikit::Error) -> Self {
                let kind = err.kind();
                let code = kind.as_str().to_string();
                let category = kind.category().as_str().to_string();
                let retryable = kind.is_retryable();
                let detail = err.message().to_string();
                let entry = err.entry().map(str::to_string);
                let problems = err
                    .problems()
                    .iter()
                    .map(|p| ManifestProblem {
                        path: p.path.clone(),
                        code: p.code.to_string(),
                        message: p.message.clone(),
                    })
                    .collect();
                match kind.category() {
                    $(
                        ErrorCategory::$category => AcikitError::$variant {
                            code, category, retryable, detail, entry, problems,
                        },
                    )*
                    // A category newer than this crate: still an error, with its code.
                    _ => AcikitError::Internal { code, category, retryable, detail, entry, problems },
                }
            }
        }

        impl AcikitError {
            /// The stable code of the error, whatever its variant.
            pub fn code(&self) -> &str {
                match self {
                    $( AcikitError::$variant { code, .. } => code, )*
                }
            }

            /// The category of the error, whatever its variant.
            pub fn category(&self) -> &str {
                match self {
                    $( AcikitError::$variant { category, .. } => category, )*
                }
            }
        }
    };
}

error_enum! {
    /// The caller passed an argument or value that cannot be used.
    Input = Input,
    /// The archive or manifest given as an image is not a valid image.
    InvalidImage = InvalidImage,
    /// What was asked for (a file, an image, a dependency) does not exist.
    NotFound = NotFound,
    /// The thing is held by something else (an unreleased run).
    Conflict = Conflict,
    /// Data does not match what it was checked against.
    Integrity = Integrity,
    /// A signature, a key or the security policy refused the operation.
    Trust = Trust,
    /// A request over the network failed or gave no usable answer.
    Network = Network,
    /// The operating system or the SQL index failed.
    Io = Io,
    /// The operation needs privileges the process does not have.
    Privilege = Privilege,
    /// The kernel or file system lacks what the operation needs.
    Unsupported = Unsupported,
    /// The caller cancelled the operation.
    Cancelled = Cancelled,
    /// A bug in acikit (a background task panicked or was lost).
    Internal = Internal,
}

#[cfg(test)]
mod tests {
    use super::*;
    use acikit::{Error, ErrorKind};

    #[test]
    fn every_kind_lands_in_the_variant_of_its_category_with_its_code() {
        for kind in ErrorKind::ALL {
            let err = AcikitError::from(Error::new(*kind, "message"));
            assert_eq!(err.code(), kind.as_str());
            assert_eq!(err.category(), kind.category().as_str());
            let variant = format!("{err:?}");
            let expected = kind
                .category()
                .as_str()
                .split('_')
                .map(|w| w[..1].to_uppercase() + &w[1..])
                .collect::<String>();
            assert!(
                variant.starts_with(&format!("{expected} {{")),
                "{kind:?} gave {variant}"
            );
        }
    }

    #[test]
    fn retry_hint_entry_and_problems_are_kept() {
        let err = AcikitError::from(Error::new(ErrorKind::Network, "down").with_entry(b"rootfs/x"));
        let AcikitError::Network {
            retryable,
            entry,
            detail,
            ..
        } = err
        else {
            panic!("a network error");
        };
        assert!(retryable);
        assert_eq!(entry.as_deref(), Some("rootfs/x"));
        assert_eq!(detail, "down");
        let err = AcikitError::from(Error::invalid_manifest(vec![acikit::schema::Problem::new(
            "bad_name",
            "name",
            "not an AC identifier",
        )]));
        let AcikitError::InvalidImage { code, problems, .. } = err else {
            panic!("an invalid image");
        };
        assert_eq!(code, "invalid_manifest");
        assert_eq!(problems[0].path, "name");
        assert_eq!(problems[0].code, "bad_name");
    }
}
