//! [`Problem`]: one thing wrong in a manifest, with its JSON path and a stable
//! code from [`codes`].

use std::fmt;

/// One problem found in a manifest, with the JSON path of the offending value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct Problem {
    /// JSON path of the value, e.g. `$.labels[1].name`.
    pub path: String,
    /// Stable snake-case code of the problem, one of [`codes`].
    pub code: &'static str,
    /// What is wrong with it.
    pub message: String,
}

impl Problem {
    /// A problem with `code` at `path`.
    pub fn new(code: &'static str, path: impl Into<String>, message: impl Into<String>) -> Self {
        Problem {
            path: path.into(),
            code,
            message: message.into(),
        }
    }
}

/// At most this many problems are listed; beyond it the list ends with one
/// [`codes::TOO_MANY_PROBLEMS`] problem.
pub const MAX_PROBLEMS: usize = 1000;

/// Cuts `problems` to [`MAX_PROBLEMS`], ending it with a `too_many_problems` one if cut.
pub(crate) fn cap(problems: &mut Vec<Problem>) {
    if problems.len() > MAX_PROBLEMS {
        problems.truncate(MAX_PROBLEMS);
        let message = format!("more than {MAX_PROBLEMS} problems; the rest are not listed");
        problems.push(Problem::new(codes::TOO_MANY_PROBLEMS, "$", message));
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The stable problem codes ([`Problem::code`]); they never change meaning.
pub mod codes {
    /// The bytes are not one well-formed JSON document.
    pub const NOT_JSON: &str = "not_json";
    /// An object has the same key twice.
    pub const DUPLICATE_KEY: &str = "duplicate_key";
    /// A value has the wrong JSON type (e.g. a number where a string is needed).
    pub const WRONG_TYPE: &str = "wrong_type";
    /// A required field is absent (or `null`).
    pub const MISSING_FIELD: &str = "missing_field";
    /// A field is given under two spellings (`supplementaryGIDs` and `supplementaryGids`).
    pub const DUPLICATE_FIELD: &str = "duplicate_field";
    /// `acKind` is not `"ImageManifest"`.
    pub const WRONG_KIND: &str = "wrong_kind";
    /// `acVersion` is not a SemVer 2.0 version.
    pub const BAD_VERSION: &str = "bad_version";
    /// A name is not a valid AC Identifier or AC Name.
    pub const BAD_NAME: &str = "bad_name";
    /// Two labels have the same name.
    pub const DUPLICATE_LABEL: &str = "duplicate_label";
    /// A label is named `name`, which is reserved for the image name.
    pub const RESERVED_LABEL: &str = "reserved_label";
    /// The `os`/`arch` labels are not a whitelisted combination.
    pub const BAD_OS_ARCH: &str = "bad_os_arch";
    /// Two annotations have the same name.
    pub const DUPLICATE_ANNOTATION: &str = "duplicate_annotation";
    /// The `created` annotation is not an RFC 3339 date-time.
    pub const BAD_TIMESTAMP: &str = "bad_timestamp";
    /// The `homepage` or `documentation` annotation is not an http(s) URL.
    pub const BAD_URL: &str = "bad_url";
    /// A required string is empty (`user`, `group`, a port's `protocol`).
    pub const EMPTY_VALUE: &str = "empty_value";
    /// An exec list is empty where it must not be, or its program is `""`.
    pub const EMPTY_EXEC: &str = "empty_exec";
    /// A supplementary GID is not an integer in `0..=4294967295`.
    pub const BAD_GID: &str = "bad_gid";
    /// An event handler name is not `pre-start` or `post-stop`.
    pub const BAD_EVENT_HANDLER: &str = "bad_event_handler";
    /// Two event handlers have the same name.
    pub const DUPLICATE_EVENT_HANDLER: &str = "duplicate_event_handler";
    /// A path that must be absolute is not.
    pub const RELATIVE_PATH: &str = "relative_path";
    /// A path contains a NUL character.
    pub const BAD_PATH: &str = "bad_path";
    /// The same path is listed twice in `pathWhitelist`.
    pub const DUPLICATE_PATH: &str = "duplicate_path";
    /// An environment variable name is empty or has a forbidden character.
    pub const BAD_ENV_NAME: &str = "bad_env_name";
    /// Two environment variables have the same name.
    pub const DUPLICATE_ENV: &str = "duplicate_env";
    /// Two mount points have the same name.
    pub const DUPLICATE_MOUNT_POINT: &str = "duplicate_mount_point";
    /// A port number or count is out of range.
    pub const BAD_PORT: &str = "bad_port";
    /// Two ports have the same name.
    pub const DUPLICATE_PORT: &str = "duplicate_port";
    /// A dependency `imageID` is not `sha512-` and 128 lowercase hex digits.
    pub const BAD_IMAGE_ID: &str = "bad_image_id";
    /// A dependency `size` is not a non-negative integer.
    pub const BAD_SIZE: &str = "bad_size";
    /// More than [`MAX_PROBLEMS`](super::MAX_PROBLEMS) problems were found; the rest are not listed.
    pub const TOO_MANY_PROBLEMS: &str = "too_many_problems";

    /// Every code.
    pub const ALL: &[&str] = &[
        NOT_JSON,
        DUPLICATE_KEY,
        WRONG_TYPE,
        MISSING_FIELD,
        DUPLICATE_FIELD,
        WRONG_KIND,
        BAD_VERSION,
        BAD_NAME,
        DUPLICATE_LABEL,
        RESERVED_LABEL,
        BAD_OS_ARCH,
        DUPLICATE_ANNOTATION,
        BAD_TIMESTAMP,
        BAD_URL,
        EMPTY_VALUE,
        EMPTY_EXEC,
        BAD_GID,
        BAD_EVENT_HANDLER,
        DUPLICATE_EVENT_HANDLER,
        RELATIVE_PATH,
        BAD_PATH,
        DUPLICATE_PATH,
        BAD_ENV_NAME,
        DUPLICATE_ENV,
        DUPLICATE_MOUNT_POINT,
        BAD_PORT,
        DUPLICATE_PORT,
        BAD_IMAGE_ID,
        BAD_SIZE,
        TOO_MANY_PROBLEMS,
    ];
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_path_colon_message() {
        let p = Problem::new(codes::BAD_NAME, "$.labels[2].name", "bad");
        assert_eq!(p.to_string(), "$.labels[2].name: bad");
    }

    #[test]
    fn serializes_all_fields() {
        let p = Problem::new(codes::BAD_PORT, "$.app.ports[0].port", "too big");
        let v = serde_json::to_value(&p).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"path": "$.app.ports[0].port", "code": "bad_port", "message": "too big"})
        );
    }

    #[test]
    fn cap_keeps_the_first_problems() {
        let mut problems: Vec<_> = (0..MAX_PROBLEMS + 5)
            .map(|i| Problem::new(codes::BAD_PATH, format!("$[{i}]"), "x"))
            .collect();
        cap(&mut problems);
        assert_eq!(problems.len(), MAX_PROBLEMS + 1);
        assert_eq!(
            problems[MAX_PROBLEMS - 1].path,
            format!("$[{}]", MAX_PROBLEMS - 1)
        );
        assert_eq!(problems[MAX_PROBLEMS].code, codes::TOO_MANY_PROBLEMS);
        let mut few = vec![Problem::new(codes::BAD_PATH, "$", "x")];
        cap(&mut few);
        assert_eq!(few.len(), 1);
    }

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in codes::ALL {
            assert!(seen.insert(code), "duplicate {code}");
            assert!(code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'));
        }
    }
}
