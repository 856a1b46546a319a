//! The one error type of the core, [`Error`], and its stable [`ErrorKind`].
//!
//! Every failure the core reports is an [`Error`] with a kind whose string form
//! ([`ErrorKind::as_str`]) never changes: the Python, Node and Kotlin bindings map
//! it to their own exception classes or `err.code`. An error names what was wrong:
//! the archive entry it concerns (if any) and, for manifests, every problem found
//! with its JSON path.

use std::fmt;

use crate::schema::Problem;

/// Result type of the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

macro_rules! error_kinds {
    ($( $(#[$doc:meta])* $variant:ident => $code:literal, )*) => {
        /// What went wrong, as a stable machine-readable category.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorKind {
            $( $(#[$doc])* $variant, )*
        }

        impl ErrorKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [ErrorKind] = &[ $( ErrorKind::$variant, )* ];

            /// The stable code of this kind (snake case), e.g. `"duplicate_entry"`.
            pub fn as_str(self) -> &'static str {
                match self { $( ErrorKind::$variant => $code, )* }
            }
        }
    };
}

error_kinds! {
    /// An operating-system I/O error (reading a file, writing output).
    Io => "io",
    /// A file or image that was asked for does not exist.
    NotFound => "not_found",
    /// A caller passed an argument that cannot be used.
    InvalidArgument => "invalid_argument",
    /// The operation was cancelled through its cancellation token.
    Cancelled => "cancelled",
    /// A bug in the core: a background task or thread panicked or was lost (the message
    /// says which task and what it panicked with). Never caused by the input.
    Internal => "internal",

    /// The input is empty (zero bytes).
    EmptyArchive => "empty_archive",
    /// The image is PGP-encrypted; it must be decrypted before use.
    Encrypted => "encrypted",
    /// The compressed stream is corrupt: bad CRC or checksum, bad data, truncated, trailing garbage.
    CorruptCompression => "corrupt_compression",

    /// The input is not a tar archive (the first header is not a tar header).
    NotATar => "not_a_tar",
    /// A tar header block is malformed: bad checksum, bad number field, bad type.
    BadHeader => "bad_header",
    /// The tar stream ends before the end-of-archive blocks, or inside an entry.
    TruncatedArchive => "truncated_archive",
    /// A PAX extended header is malformed or carries a forbidden record.
    BadPaxHeader => "bad_pax_header",
    /// A PAX `size` record disagrees with the size in the ustar header.
    PaxSizeMismatch => "pax_size_mismatch",
    /// A GNU long-name or long-link header is malformed.
    BadLongName => "bad_long_name",
    /// A sparse map is malformed, overlapping, or disagrees with the stored size.
    BadSparseMap => "bad_sparse_map",
    /// The entry type is not one an image may hold (e.g. a volume label or multi-volume part).
    UnsupportedEntryType => "unsupported_entry_type",
    /// A non-regular entry (directory, link, device, fifo) carries data.
    UnexpectedData => "unexpected_data",

    /// An entry path contains a `..` component.
    PathTraversal => "path_traversal",
    /// An entry path is absolute.
    AbsolutePath => "absolute_path",
    /// An entry path is empty or not in canonical form (`a//b`, `a/./b`).
    BadPath => "bad_path",
    /// An entry's parent inside the archive is a symlink or not a directory.
    ParentNotDirectory => "parent_not_directory",
    /// A hardlink points outside `rootfs/`, to itself, to a later entry, or to a directory.
    BadHardlink => "bad_hardlink",
    /// The same path appears twice in the archive.
    DuplicateEntry => "duplicate_entry",
    /// A top-level entry other than `manifest` and `rootfs`.
    ExtraTopLevelEntry => "extra_top_level_entry",
    /// The archive holds no `manifest` regular file.
    MissingManifest => "missing_manifest",
    /// The archive holds no `rootfs` directory.
    MissingRootfs => "missing_rootfs",
    /// `manifest` or `rootfs` has the wrong entry type.
    WrongTopLevelType => "wrong_top_level_type",
    /// The manifest is larger than the configured limit.
    ManifestTooLarge => "manifest_too_large",
    /// The manifest is not valid (see the problems for each JSON path).
    InvalidManifest => "invalid_manifest",
    /// The archive exceeds a configured limit (total size, entry count, path length).
    LimitExceeded => "limit_exceeded",
    /// A string is not a valid value of an appc type (name, image ID, version...).
    InvalidValue => "invalid_value",
    /// An image ID prefix matches several images, or a name and labels match several where
    /// one must be named exactly (`rm`); the message lists them.
    AmbiguousImage => "ambiguous_image",
    /// The store's files are damaged (a recipe or object does not match what the index says).
    CorruptStore => "corrupt_store",
    /// The SQL index failed (locked, corrupt, unreachable).
    Database => "database",
    /// An image's dependencies form a cycle (the message names the chain, `a -> b -> a`).
    DependencyCycle => "dependency_cycle",
    /// A dependency is not in the store (the message names the chain and what was asked).
    MissingDependency => "missing_dependency",
    /// The image found for a dependency does not match its imageID, name, labels or size.
    DependencyMismatch => "dependency_mismatch",
    /// Creating a device node or giving a file a foreign owner needs root (or skip it when
    /// the caller opts in).
    NeedsPrivilege => "needs_privilege",
    /// What was asked is not available on this kernel or file system (e.g. an overlay mount
    /// without overlayfs, a reflink copy across file systems); the message says what is missing.
    Unsupported => "unsupported",
    /// The image or file is used by a run that was not released.
    InUse => "in_use",
    /// The operation would write to a store that is read-only (on a read-only mount, in a
    /// folder this user cannot write, or opened read-only on purpose); the message names the
    /// store and why it is read-only. Nothing was changed.
    ReadOnlyStore => "read_only_store",

    /// Meta discovery found no endpoint for the name (the message lists every URL tried).
    DiscoveryFailed => "discovery_failed",
    /// A network request failed: connection, TLS handshake, timeout, or an HTTP error status
    /// (the message names the URL and the status).
    Network => "network",
    /// A request would use plain HTTP, skip TLS verification or skip the signature check
    /// without the caller allowing it (`--insecure-options`).
    InsecureRefused => "insecure_refused",
    /// A chain of HTTP redirects is too long or loops.
    TooManyRedirects => "too_many_redirects",
    /// The server kept answering 202 (not ready yet) past the retry limit.
    NotReady => "not_ready",
    /// The fetched image's name or labels are not those asked for.
    ImageMismatch => "image_mismatch",
    /// A key file or signature is not valid OpenPGP (or not ascii-armored where required).
    BadOpenpgp => "bad_openpgp",
    /// The signature does not verify against the data (tampered image or wrong signature).
    BadSignature => "bad_signature",
    /// The signature was made by a key that is not trusted at all.
    UntrustedKey => "untrusted_key",
    /// The signing key is trusted, but only for names under another prefix.
    KeyWrongPrefix => "key_wrong_prefix",
    /// The signature uses a hash that is no longer safe (MD5, SHA-1).
    WeakSignatureHash => "weak_signature_hash",
    /// The signing key (or subkey) had expired when the signature was made, or has now.
    KeyExpired => "key_expired",
    /// The signing key (or subkey) is revoked.
    KeyRevoked => "key_revoked",
    /// The key that made the signature is not allowed to sign (no signing flag).
    KeyNotSigning => "key_not_signing",
}

/// The group an [`ErrorKind`] belongs to: what a binding turns into one exception class.
///
/// Every kind has exactly one category ([`ErrorKind::category`]); the table in
/// `docs/ERRORS.md` lists them. Codes ([`ErrorCategory::as_str`]) never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCategory {
    /// The caller passed an argument or value that cannot be used (fix the call).
    Input,
    /// The archive or manifest given as an image is not a valid image (fix the image).
    InvalidImage,
    /// What was asked for (a file, an image, a dependency) does not exist.
    NotFound,
    /// The thing is held by something else (e.g. an unreleased run) and cannot be changed now.
    Conflict,
    /// Data does not match what it was checked against: a damaged store, an image that is
    /// not the one asked for.
    Integrity,
    /// A signature, key or security policy refused the operation.
    Trust,
    /// A request over the network failed or gave no usable answer.
    Network,
    /// The operating system or the SQL index failed (disk, permissions, database).
    Io,
    /// The operation needs privileges the process does not have.
    Privilege,
    /// The kernel or file system lacks what the operation needs.
    Unsupported,
    /// The caller cancelled the operation.
    Cancelled,
    /// A bug in the core (a panicked background task).
    Internal,
}

impl ErrorCategory {
    /// Every category, in declaration order.
    pub const ALL: &'static [ErrorCategory] = &[
        ErrorCategory::Input,
        ErrorCategory::InvalidImage,
        ErrorCategory::NotFound,
        ErrorCategory::Conflict,
        ErrorCategory::Integrity,
        ErrorCategory::Trust,
        ErrorCategory::Network,
        ErrorCategory::Io,
        ErrorCategory::Privilege,
        ErrorCategory::Unsupported,
        ErrorCategory::Cancelled,
        ErrorCategory::Internal,
    ];

    /// The stable code of this category (snake case), e.g. `"invalid_image"`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCategory::Input => "input",
            ErrorCategory::InvalidImage => "invalid_image",
            ErrorCategory::NotFound => "not_found",
            ErrorCategory::Conflict => "conflict",
            ErrorCategory::Integrity => "integrity",
            ErrorCategory::Trust => "trust",
            ErrorCategory::Network => "network",
            ErrorCategory::Io => "io",
            ErrorCategory::Privilege => "privilege",
            ErrorCategory::Unsupported => "unsupported",
            ErrorCategory::Cancelled => "cancelled",
            ErrorCategory::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCategory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether trying the same call again later may succeed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// A transient condition (network, busy server, database lock): retrying may succeed.
    Transient,
    /// Retrying the same call gives the same error.
    Permanent,
}

impl ErrorKind {
    /// The category of this kind: what a binding maps to an exception class.
    ///
    /// ```
    /// use acikit::{ErrorCategory, ErrorKind};
    ///
    /// // A binding maps each category to one exception class; the codes never change.
    /// assert_eq!(ErrorKind::BadOpenpgp.category(), ErrorCategory::Trust);
    /// assert_eq!(ErrorKind::Cancelled.category().as_str(), "cancelled");
    /// ```
    pub fn category(self) -> ErrorCategory {
        self.traits().0
    }

    /// Whether retrying the same call later may succeed: true only for transient network
    /// and server conditions ([`Network`](ErrorKind::Network), [`NotReady`](ErrorKind::NotReady))
    /// and contention on the SQL index ([`Database`](ErrorKind::Database): locked, busy,
    /// unreachable). The core has already retried these as its retry policy allows; a
    /// caller retrying should wait first. Everything else is permanent: the input, the store
    /// or the environment must change first.
    pub fn is_retryable(self) -> bool {
        self.traits().1 == Retry::Transient
    }

    /// The one place kinds are classified. No wildcard: a new kind does not compile until
    /// it is given a category and a retry hint here (and a row in `docs/ERRORS.md`).
    fn traits(self) -> (ErrorCategory, Retry) {
        use ErrorCategory as C;
        use ErrorKind as K;
        use Retry::{Permanent, Transient};
        match self {
            K::Io => (C::Io, Permanent),
            K::NotFound => (C::NotFound, Permanent),
            K::InvalidArgument => (C::Input, Permanent),
            K::Cancelled => (C::Cancelled, Permanent),
            K::Internal => (C::Internal, Permanent),

            K::EmptyArchive
            | K::Encrypted
            | K::CorruptCompression
            | K::NotATar
            | K::BadHeader
            | K::TruncatedArchive
            | K::BadPaxHeader
            | K::PaxSizeMismatch
            | K::BadLongName
            | K::BadSparseMap
            | K::UnsupportedEntryType
            | K::UnexpectedData
            | K::PathTraversal
            | K::AbsolutePath
            | K::BadPath
            | K::ParentNotDirectory
            | K::BadHardlink
            | K::DuplicateEntry
            | K::ExtraTopLevelEntry
            | K::MissingManifest
            | K::MissingRootfs
            | K::WrongTopLevelType
            | K::ManifestTooLarge
            | K::InvalidManifest
            | K::LimitExceeded
            | K::DependencyCycle => (C::InvalidImage, Permanent),

            K::InvalidValue | K::AmbiguousImage => (C::Input, Permanent),
            K::CorruptStore | K::DependencyMismatch | K::ImageMismatch => (C::Integrity, Permanent),
            K::Database => (C::Io, Transient),
            K::MissingDependency => (C::NotFound, Permanent),
            K::NeedsPrivilege => (C::Privilege, Permanent),
            K::Unsupported => (C::Unsupported, Permanent),
            K::InUse => (C::Conflict, Permanent),
            K::ReadOnlyStore => (C::Privilege, Permanent),

            K::Network | K::NotReady => (C::Network, Transient),
            K::DiscoveryFailed | K::TooManyRedirects => (C::Network, Permanent),
            K::InsecureRefused
            | K::BadOpenpgp
            | K::BadSignature
            | K::UntrustedKey
            | K::KeyWrongPrefix
            | K::WeakSignatureHash
            | K::KeyExpired
            | K::KeyRevoked
            | K::KeyNotSigning => (C::Trust, Permanent),
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error type of the core.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    entry: Option<String>,
    problems: Vec<Problem>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with a human-readable message.
    ///
    /// ```
    /// use acikit::{Error, ErrorCategory, ErrorKind};
    ///
    /// let err = Error::new(ErrorKind::NotFound, "no image example.com/hello");
    /// assert_eq!(err.kind(), ErrorKind::NotFound);
    /// assert_eq!(err.kind().category(), ErrorCategory::NotFound);
    /// assert_eq!(err.message(), "no image example.com/hello");
    /// assert!(!err.kind().is_retryable());
    /// ```
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            entry: None,
            problems: Vec::new(),
            source: None,
        }
    }

    /// Names the archive entry the error concerns (non-UTF-8 bytes are escaped).
    pub fn with_entry(mut self, path: &[u8]) -> Self {
        self.entry = Some(crate::archive::display_path(path));
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// An [`ErrorKind::InvalidManifest`] error listing every problem.
    pub fn invalid_manifest(problems: Vec<Problem>) -> Self {
        let message = match problems.len() {
            1 => "the manifest has 1 problem".to_string(),
            n => format!("the manifest has {n} problems"),
        };
        Error {
            problems,
            ..Error::new(ErrorKind::InvalidManifest, message)
        }
    }

    /// The stable category of this error.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The human-readable message, without the entry name.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The archive entry this error concerns, if any.
    pub fn entry(&self) -> Option<&str> {
        self.entry.as_deref()
    }

    /// The manifest problems (for [`ErrorKind::InvalidManifest`]).
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// Wraps an I/O error, keeping `NotFound` as its own kind. An I/O error that carries an
    /// [`Error`] (a cancellation or a decoder error travelling through `Read`/`Write`) is
    /// given back as that error.
    pub fn io(context: impl fmt::Display, err: std::io::Error) -> Self {
        if err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return Error::from(err);
        }
        let kind = match err.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::Io,
        };
        Error::new(kind, format!("{context}: {err}")).with_source(err)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)?;
        if let Some(entry) = &self.entry {
            write!(f, " (entry \"{entry}\")")?;
        }
        for p in &self.problems {
            write!(f, "; {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    /// An I/O error that carries an [`Error`] (as the decoder thread sends them)
    /// is unwrapped back to it; any other becomes [`ErrorKind::Io`].
    fn from(err: std::io::Error) -> Self {
        if err.get_ref().is_some_and(|inner| inner.is::<Error>()) {
            return *err.into_inner().unwrap().downcast::<Error>().unwrap();
        }
        Error::io("I/O error", err)
    }
}

impl From<Error> for std::io::Error {
    fn from(err: Error) -> Self {
        std::io::Error::other(err)
    }
}

/// An [`ErrorKind::Internal`] error for a background task that panicked or was lost;
/// `task` says which (e.g. "the build task").
pub(crate) fn join_error_of(task: &str, err: tokio::task::JoinError) -> Error {
    let message = if err.is_panic() {
        let panic = err.into_panic();
        format!("{task} panicked: {}", panic_message(panic.as_ref()))
    } else {
        format!("{task} was cancelled before it finished")
    };
    Error::new(ErrorKind::Internal, message)
}

/// An [`ErrorKind::Internal`] error for a panic caught while `doing` something.
pub(crate) fn panicked(doing: impl fmt::Display, panic: &(dyn std::any::Any + Send)) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("{doing} panicked: {}", panic_message(panic)),
    )
}

/// The message a caught panic carried (empty if it was not a string), for the error that
/// reports it.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for kind in ErrorKind::ALL {
            let code = kind.as_str();
            assert!(seen.insert(code), "duplicate code {code}");
            assert!(code.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }

    /// The rows of the kinds table in docs/ERRORS.md: code, variant, category, retryable.
    fn documented_kinds() -> Vec<[String; 4]> {
        let doc = include_str!("../../docs/ERRORS.md");
        let table = doc
            .split("\n## Kinds\n")
            .nth(1)
            .expect("docs/ERRORS.md has a \"## Kinds\" section");
        table
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            .skip(2) // the header and the |---| line
            .map(|line| {
                let cells: Vec<String> = line
                    .split(" | ")
                    .map(|cell| cell.trim_matches(|c| c == '|' || c == ' ' || c == '`'))
                    .map(str::to_string)
                    .collect();
                assert!(cells.len() >= 5, "a short row in docs/ERRORS.md: {line}");
                [
                    cells[0].clone(),
                    cells[1].clone(),
                    cells[2].clone(),
                    cells[3].clone(),
                ]
            })
            .collect()
    }

    #[test]
    fn errors_doc_table_matches_the_code() {
        let rows = documented_kinds();
        let documented: Vec<&str> = rows.iter().map(|row| row[0].as_str()).collect();
        let declared: Vec<&str> = ErrorKind::ALL.iter().map(|kind| kind.as_str()).collect();
        assert_eq!(
            documented, declared,
            "docs/ERRORS.md must list every kind once, in declaration order"
        );
        for (row, kind) in rows.iter().zip(ErrorKind::ALL) {
            assert_eq!(row[1], format!("{kind:?}"), "variant of {kind}");
            assert_eq!(row[2], kind.category().as_str(), "category of {kind}");
            let retryable = if kind.is_retryable() { "yes" } else { "no" };
            assert_eq!(row[3], retryable, "retry hint of {kind}");
        }
    }

    #[test]
    fn errors_doc_lists_every_category() {
        let doc = include_str!("../../docs/ERRORS.md");
        let section = doc.split("\n## Categories\n").nth(1).unwrap();
        let section = section.split("\n## ").next().unwrap();
        let listed: Vec<&str> = section
            .lines()
            .filter_map(|line| line.strip_prefix("- `"))
            .filter_map(|rest| rest.split('`').next())
            .collect();
        let declared: Vec<&str> = ErrorCategory::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(listed, declared);
        for kind in ErrorKind::ALL {
            assert!(ErrorCategory::ALL.contains(&kind.category()));
        }
    }

    #[test]
    fn only_transient_kinds_are_retryable() {
        let retryable: Vec<ErrorKind> = ErrorKind::ALL
            .iter()
            .copied()
            .filter(|kind| kind.is_retryable())
            .collect();
        assert_eq!(
            retryable,
            [ErrorKind::Database, ErrorKind::Network, ErrorKind::NotReady]
        );
        assert_eq!(ErrorKind::Internal.category(), ErrorCategory::Internal);
        assert_eq!(ErrorKind::Cancelled.category(), ErrorCategory::Cancelled);
    }

    #[tokio::test]
    async fn a_panicking_background_task_is_internal_not_io() {
        let joined = tokio::task::spawn_blocking(|| -> u32 { panic!("boom in a task") }).await;
        let err = join_error_of("a background task", joined.unwrap_err());
        assert_eq!(err.kind(), ErrorKind::Internal);
        assert_eq!(err.kind().as_str(), "internal");
        assert!(err.message().contains("boom in a task"), "{err}");
    }

    #[test]
    fn io_round_trip_keeps_kind() {
        let err = Error::new(ErrorKind::CorruptCompression, "bad crc");
        let io: std::io::Error = err.into();
        let back: Error = io.into();
        assert_eq!(back.kind(), ErrorKind::CorruptCompression);
        assert_eq!(back.message(), "bad crc");
    }

    #[test]
    fn display_names_entry() {
        let err = Error::new(ErrorKind::DuplicateEntry, "seen twice").with_entry(b"rootfs/a\xff");
        let text = err.to_string();
        assert!(text.starts_with("duplicate_entry: seen twice"), "{text}");
        assert!(text.contains("rootfs/a\\xff"), "{text}");
    }
}
