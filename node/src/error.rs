//! Core errors to JS: one rejection whose message carries the error's fields as JSON.
//!
//! Typed error codes do not compile on napi async fns, so the reason of the napi error is
//! [`MARKER`] followed by a JSON object (`code`, `category`, `retryable`, `message`,
//! `entry`, `problems`); the JS wrapper maps it once to an `AcikitError` subclass.

use acikit::Error;

/// What starts the reason of an encoded core error.
pub const MARKER: &str = "\u{1}acikit-error:";

/// The napi error carrying `err`'s code, category, retry hint, message, entry and problems.
pub fn to_napi(err: Error) -> napi::Error {
    let kind = err.kind();
    let problems: Vec<serde_json::Value> = err
        .problems()
        .iter()
        .map(|p| serde_json::json!({"path": p.path, "code": p.code, "message": p.message}))
        .collect();
    let fields = serde_json::json!({
        "code": kind.as_str(),
        "category": kind.category().as_str(),
        "retryable": kind.is_retryable(),
        "message": err.message(),
        "display": err.to_string(),
        "entry": err.entry(),
        "problems": problems,
    });
    napi::Error::new(napi::Status::GenericFailure, format!("{MARKER}{fields}"))
}

/// A core result as a napi result.
pub fn napi_result<T>(result: acikit::Result<T>) -> napi::Result<T> {
    result.map_err(to_napi)
}
