//! The validation walk: checks the JSON [`Value`] of an image manifest against
//! every rule of `aci.md` and `types.md` (JSON types, value formats, uniqueness,
//! the os/arch whitelist) and collects one [`Problem`] per violation, each with the
//! JSON path of the offending value. It never stops at the first problem.
//!
//! [`ValidationOptions`] lets a caller extend what is accepted.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::json::{index_path, key_path};
use super::labels::OsArchWhitelist;
use super::problem::{MAX_PROBLEMS, Problem, codes};
use super::types::{AcIdentifier, AcKind, AcName, AcVersion, ImageId, Timestamp, quote};

/// Settings of manifest validation; `Default` follows the spec.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ValidationOptions {
    /// The accepted `os`/`arch` label pairs (and so the known `os` values).
    pub os_arch: OsArchWhitelist,
}

/// Every problem of the image manifest `value`, in document order (at most
/// [`MAX_PROBLEMS`] + 1, for the caller to cap).
pub(crate) fn validate_manifest(value: &Value, options: &ValidationOptions) -> Vec<Problem> {
    let mut walk = Walk {
        options,
        problems: Vec::new(),
    };
    walk.manifest(value);
    walk.problems
}

/// The event handler names the spec defines.
const EVENT_HANDLERS: [&str; 2] = ["pre-start", "post-stop"];

/// The two spellings of the supplementary GIDs field.
const GIDS: &str = "supplementaryGIDs";
const GIDS_ALT: &str = "supplementaryGids";

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Whether `s` is an environment variable name: `^[A-Za-z0-9_.-]+$`.
fn is_env_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether `s` is an `http://` or `https://` URL with a host.
fn is_http_url(s: &str) -> bool {
    let lower = s.get(..8).unwrap_or(s).to_ascii_lowercase();
    let rest = if lower.starts_with("http://") {
        &s[7..]
    } else if lower.starts_with("https://") {
        &s[8..]
    } else {
        return false;
    };
    if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    let host = if host_port.starts_with('[') {
        host_port
            .split_inclusive(']')
            .next()
            .filter(|h| h.ends_with(']'))
    } else {
        host_port.split(':').next()
    };
    host.is_some_and(|h| !h.is_empty() && h != "[]")
}

struct Walk<'o> {
    options: &'o ValidationOptions,
    problems: Vec<Problem>,
}

impl Walk<'_> {
    /// Records a problem; past [`MAX_PROBLEMS`] + 1 they are only counted as "more".
    fn push(&mut self, code: &'static str, path: &str, message: impl Into<String>) {
        if self.problems.len() <= MAX_PROBLEMS {
            self.problems.push(Problem::new(code, path, message));
        }
    }

    fn wrong_type(&mut self, path: &str, expected: &str, found: &Value) {
        let message = format!("expected {expected}, found {}", type_name(found));
        self.push(codes::WRONG_TYPE, path, message);
    }

    // Typed views of a value; a wrong type is recorded and gives `None`.

    fn object<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v Map<String, Value>> {
        let object = v.as_object();
        if object.is_none() {
            self.wrong_type(path, "an object", v);
        }
        object
    }

    fn array<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v [Value]> {
        let array = v.as_array().map(Vec::as_slice);
        if array.is_none() {
            self.wrong_type(path, "an array", v);
        }
        array
    }

    fn string<'v>(&mut self, v: &'v Value, path: &str) -> Option<&'v str> {
        let string = v.as_str();
        if string.is_none() {
            self.wrong_type(path, "a string", v);
        }
        string
    }

    /// An integer in `min..=max`; otherwise a `code` problem saying `rule`.
    fn integer(
        &mut self,
        v: &Value,
        path: &str,
        (min, max): (u64, u64),
        code: &'static str,
        rule: &str,
    ) -> Option<u64> {
        let Value::Number(n) = v else {
            self.wrong_type(path, "an integer", v);
            return None;
        };
        let int = n.as_u64().filter(|x| (min..=max).contains(x));
        if int.is_none() {
            self.push(code, path, format!("{rule}, not {n}"));
        }
        int
    }

    /// The elements of `items` that are objects, with their paths.
    fn objects<'v>(
        &mut self,
        items: &'v [Value],
        path: &str,
    ) -> Vec<(&'v Map<String, Value>, String)> {
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let p = index_path(path, i);
            if let Some(object) = self.object(item, &p) {
                out.push((object, p));
            }
        }
        out
    }

    // Fields of an object: `required` ones must be present (`null` is a wrong type);
    // `optional` ones may be absent or `null`.

    fn required<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        parent: &str,
        key: &str,
    ) -> Option<(&'v Value, String)> {
        let path = key_path(parent, key);
        match obj.get(key) {
            Some(v) => Some((v, path)),
            None => {
                self.push(
                    codes::MISSING_FIELD,
                    &path,
                    format!("required field {key:?} is missing"),
                );
                None
            }
        }
    }

    fn optional<'v>(
        obj: &'v Map<String, Value>,
        parent: &str,
        key: &str,
    ) -> Option<(&'v Value, String)> {
        obj.get(key)
            .filter(|v| !v.is_null())
            .map(|v| (v, key_path(parent, key)))
    }

    fn required_str<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        parent: &str,
        key: &str,
    ) -> Option<(&'v str, String)> {
        let (v, path) = self.required(obj, parent, key)?;
        Some((self.string(v, &path)?, path))
    }

    fn optional_str<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        parent: &str,
        key: &str,
    ) -> Option<(&'v str, String)> {
        let (v, path) = Self::optional(obj, parent, key)?;
        Some((self.string(v, &path)?, path))
    }

    fn optional_array<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        parent: &str,
        key: &str,
    ) -> Option<(&'v [Value], String)> {
        let (v, path) = Self::optional(obj, parent, key)?;
        Some((self.array(v, &path)?, path))
    }

    fn optional_bool(&mut self, obj: &Map<String, Value>, parent: &str, key: &str) {
        if let Some((v, path)) = Self::optional(obj, parent, key)
            && !v.is_boolean()
        {
            self.wrong_type(&path, "a boolean", v);
        }
    }

    // Value checks.

    fn identifier(&mut self, name: &str, path: &str) {
        if let Err(e) = AcIdentifier::parse(name) {
            self.push(codes::BAD_NAME, path, e.message());
        }
    }

    fn ac_name(&mut self, name: &str, path: &str) {
        if let Err(e) = AcName::parse(name) {
            self.push(codes::BAD_NAME, path, e.message());
        }
    }

    fn absolute_path(&mut self, s: &str, path: &str) {
        if !s.starts_with('/') {
            self.push(
                codes::RELATIVE_PATH,
                path,
                format!("path {} must be absolute (start with /)", quote(s)),
            );
        }
        if s.contains('\0') {
            self.push(
                codes::BAD_PATH,
                path,
                format!("path {} contains a NUL character", quote(s)),
            );
        }
    }

    fn non_empty(&mut self, s: &str, path: &str, what: &str) {
        if s.is_empty() {
            self.push(
                codes::EMPTY_VALUE,
                path,
                format!("{what} must not be empty"),
            );
        }
    }

    /// `items` must be strings; the first (the program) must not be `""`; with
    /// `required`, the list must not be empty either.
    fn exec(&mut self, items: &[Value], path: &str, required: bool) {
        if required && items.is_empty() {
            self.push(codes::EMPTY_EXEC, path, "exec must name a program");
        }
        for (i, item) in items.iter().enumerate() {
            let p = index_path(path, i);
            if let Some(s) = self.string(item, &p)
                && i == 0
                && s.is_empty()
            {
                self.push(
                    codes::EMPTY_EXEC,
                    &p,
                    "the program to execute must not be empty",
                );
            }
        }
    }

    /// An object whose values are all strings (`userAnnotations`, `userLabels`).
    fn string_map(&mut self, obj: &Map<String, Value>, parent: &str, key: &str) {
        let Some((v, path)) = Self::optional(obj, parent, key) else {
            return;
        };
        let Some(map) = self.object(v, &path) else {
            return;
        };
        for (k, v) in map {
            if !v.is_string() {
                self.wrong_type(&key_path(&path, k), "a string", v);
            }
        }
    }

    // The manifest, part by part.

    fn manifest(&mut self, v: &Value) {
        let Some(m) = self.object(v, "$") else {
            return;
        };
        if let Some((kind, path)) = self.required_str(m, "$", "acKind")
            && kind != AcKind::IMAGE_MANIFEST
        {
            let message = format!("acKind must be \"ImageManifest\", not {}", quote(kind));
            self.push(codes::WRONG_KIND, &path, message);
        }
        if let Some((version, path)) = self.required_str(m, "$", "acVersion")
            && let Err(e) = AcVersion::parse(version)
        {
            self.push(codes::BAD_VERSION, &path, e.message());
        }
        if let Some((name, path)) = self.required_str(m, "$", "name") {
            self.identifier(name, &path);
        }
        if let Some((labels, path)) = self.optional_array(m, "$", "labels") {
            self.labels(labels, &path);
        }
        if let Some((app, path)) = Self::optional(m, "$", "app")
            && let Some(app) = self.object(app, &path)
        {
            self.app(app, &path);
        }
        if let Some((deps, path)) = self.optional_array(m, "$", "dependencies") {
            for (dep, p) in self.objects(deps, &path) {
                self.dependency(dep, &p);
            }
        }
        if let Some((paths, path)) = self.optional_array(m, "$", "pathWhitelist") {
            self.path_whitelist(paths, &path);
        }
        if let Some((annotations, path)) = self.optional_array(m, "$", "annotations") {
            self.annotations(annotations, &path);
        }
    }

    fn labels(&mut self, items: &[Value], path: &str) {
        let mut seen = HashSet::new();
        let mut has_os = false;
        let mut os = None;
        let mut arch = None;
        for (label, p) in self.objects(items, path) {
            let name = self.required_str(label, &p, "name");
            let value = self.required_str(label, &p, "value");
            let Some((name, name_path)) = name else {
                continue;
            };
            if name == "name" {
                let message = "a label cannot be called \"name\" (the image name is a field)";
                self.push(codes::RESERVED_LABEL, &name_path, message);
            } else {
                self.identifier(name, &name_path);
            }
            if !seen.insert(name) {
                let message = format!("label {} is defined more than once", quote(name));
                self.push(codes::DUPLICATE_LABEL, &name_path, message);
                continue;
            }
            match name {
                "os" => (has_os, os) = (true, value),
                "arch" => arch = value,
                _ => {}
            }
        }
        let whitelist = &self.options.os_arch;
        let problem = match (os, arch) {
            (None, Some((_, arch_path))) if !has_os => Some((
                arch_path,
                "label \"arch\" requires label \"os\"".to_string(),
            )),
            (Some((os, os_path)), _) if !whitelist.knows_os(os) => {
                let known: Vec<_> = whitelist.oses().collect();
                let message = format!("unknown os {} (known: {})", quote(os), known.join(", "));
                Some((os_path, message))
            }
            (Some((os, _)), Some((arch, arch_path))) if !whitelist.allows(os, arch) => {
                let message = format!(
                    "os/arch {}/{} is not a supported combination",
                    quote(os),
                    quote(arch)
                );
                Some((arch_path, message))
            }
            _ => None,
        };
        if let Some((path, message)) = problem {
            self.push(codes::BAD_OS_ARCH, &path, message);
        }
    }

    fn annotations(&mut self, items: &[Value], path: &str) {
        let mut seen = HashSet::new();
        for (annotation, p) in self.objects(items, path) {
            let name = self.required_str(annotation, &p, "name");
            let value = self.required_str(annotation, &p, "value");
            let Some((name, name_path)) = name else {
                continue;
            };
            self.identifier(name, &name_path);
            if !seen.insert(name) {
                let message = format!("annotation {} is defined more than once", quote(name));
                self.push(codes::DUPLICATE_ANNOTATION, &name_path, message);
            }
            let Some((value, value_path)) = value else {
                continue;
            };
            match name {
                "created" => {
                    if let Err(e) = Timestamp::parse(value) {
                        self.push(codes::BAD_TIMESTAMP, &value_path, e.message());
                    }
                }
                "homepage" | "documentation" if !is_http_url(value) => {
                    let message = format!(
                        "{name} must be an http:// or https:// URL with a host, not {}",
                        quote(value)
                    );
                    self.push(codes::BAD_URL, &value_path, message);
                }
                _ => {}
            }
        }
    }

    fn app(&mut self, app: &Map<String, Value>, path: &str) {
        if let Some((exec, p)) = self.optional_array(app, path, "exec") {
            self.exec(exec, &p, false);
        }
        for key in ["user", "group"] {
            if let Some((s, p)) = self.required_str(app, path, key) {
                self.non_empty(s, &p, key);
            }
        }
        if app.contains_key(GIDS) && app.contains_key(GIDS_ALT) {
            let message = format!("give either {GIDS:?} or {GIDS_ALT:?}, not both");
            self.push(codes::DUPLICATE_FIELD, &key_path(path, GIDS_ALT), message);
        }
        for key in [GIDS, GIDS_ALT] {
            if let Some((gids, p)) = self.optional_array(app, path, key) {
                for (i, gid) in gids.iter().enumerate() {
                    let rule = "a GID must be an integer from 0 to 4294967295";
                    self.integer(
                        gid,
                        &index_path(&p, i),
                        (0, u32::MAX.into()),
                        codes::BAD_GID,
                        rule,
                    );
                }
            }
        }
        if let Some((handlers, p)) = self.optional_array(app, path, "eventHandlers") {
            self.event_handlers(handlers, &p);
        }
        if let Some((dir, p)) = self.optional_str(app, path, "workingDirectory") {
            self.absolute_path(dir, &p);
        }
        if let Some((env, p)) = self.optional_array(app, path, "environment") {
            self.environment(env, &p);
        }
        if let Some((isolators, p)) = self.optional_array(app, path, "isolators") {
            for (isolator, ip) in self.objects(isolators, &p) {
                if let Some((name, np)) = self.required_str(isolator, &ip, "name") {
                    self.identifier(name, &np);
                }
                // Any JSON value is allowed, even null.
                self.required(isolator, &ip, "value");
            }
        }
        if let Some((mounts, p)) = self.optional_array(app, path, "mountPoints") {
            self.mount_points(mounts, &p);
        }
        if let Some((ports, p)) = self.optional_array(app, path, "ports") {
            self.ports(ports, &p);
        }
        self.string_map(app, path, "userAnnotations");
        self.string_map(app, path, "userLabels");
    }

    fn event_handlers(&mut self, items: &[Value], path: &str) {
        let mut seen = HashSet::new();
        for (handler, p) in self.objects(items, path) {
            if let Some((name, np)) = self.required_str(handler, &p, "name") {
                if !EVENT_HANDLERS.contains(&name) {
                    let message = format!(
                        "event handler {} must be \"pre-start\" or \"post-stop\"",
                        quote(name)
                    );
                    self.push(codes::BAD_EVENT_HANDLER, &np, message);
                } else if !seen.insert(name) {
                    let message = format!("event handler {name:?} is defined more than once");
                    self.push(codes::DUPLICATE_EVENT_HANDLER, &np, message);
                }
            }
            if let Some((exec, ep)) = self.required(handler, &p, "exec")
                && let Some(exec) = self.array(exec, &ep)
            {
                self.exec(exec, &ep, true);
            }
        }
    }

    fn environment(&mut self, items: &[Value], path: &str) {
        let mut seen = HashSet::new();
        for (var, p) in self.objects(items, path) {
            if let Some((name, np)) = self.required_str(var, &p, "name") {
                if name.is_empty() {
                    self.push(
                        codes::BAD_ENV_NAME,
                        &np,
                        "an environment variable name must not be empty",
                    );
                } else if !is_env_name(name) {
                    let message = format!(
                        "environment variable name {} may only hold letters, digits, '_', '.' and '-'",
                        quote(name)
                    );
                    self.push(codes::BAD_ENV_NAME, &np, message);
                }
                if !seen.insert(name) {
                    let message = format!(
                        "environment variable {} is defined more than once",
                        quote(name)
                    );
                    self.push(codes::DUPLICATE_ENV, &np, message);
                }
            }
            self.required_str(var, &p, "value");
        }
    }

    fn mount_points(&mut self, items: &[Value], path: &str) {
        let mut seen = HashSet::new();
        for (mount, p) in self.objects(items, path) {
            if let Some((name, np)) = self.required_str(mount, &p, "name") {
                self.ac_name(name, &np);
                if !seen.insert(name) {
                    let message = format!("mount point {} is defined more than once", quote(name));
                    self.push(codes::DUPLICATE_MOUNT_POINT, &np, message);
                }
            }
            if let Some((dir, dp)) = self.required_str(mount, &p, "path") {
                self.absolute_path(dir, &dp);
            }
            self.optional_bool(mount, &p, "readOnly");
        }
    }

    fn ports(&mut self, items: &[Value], path: &str) {
        let mut seen = HashSet::new();
        for (port, p) in self.objects(items, path) {
            if let Some((name, np)) = self.required_str(port, &p, "name") {
                self.ac_name(name, &np);
                if !seen.insert(name) {
                    let message = format!("port {} is defined more than once", quote(name));
                    self.push(codes::DUPLICATE_PORT, &np, message);
                }
            }
            if let Some((protocol, pp)) = self.required_str(port, &p, "protocol") {
                self.non_empty(protocol, &pp, "protocol");
            }
            let number = self.required(port, &p, "port").and_then(|(v, pp)| {
                let rule = "a port must be an integer from 1 to 65535";
                self.integer(v, &pp, (1, 65535), codes::BAD_PORT, rule)
            });
            if let Some((v, cp)) = Self::optional(port, &p, "count") {
                let rule = "a port count must be an integer from 1 to 65535";
                let count = self.integer(v, &cp, (1, 65535), codes::BAD_PORT, rule);
                if let (Some(number), Some(count)) = (number, count)
                    && number + count - 1 > 65535
                {
                    let message = format!("ports {number} to {} go past 65535", number + count - 1);
                    self.push(codes::BAD_PORT, &cp, message);
                }
            }
            self.optional_bool(port, &p, "socketActivated");
        }
    }

    fn dependency(&mut self, dep: &Map<String, Value>, path: &str) {
        if let Some((name, p)) = self.required_str(dep, path, "imageName") {
            self.identifier(name, &p);
        }
        if let Some((id, p)) = self.optional_str(dep, path, "imageID")
            && let Err(e) = ImageId::parse(id)
        {
            self.push(codes::BAD_IMAGE_ID, &p, e.message());
        }
        if let Some((labels, p)) = self.optional_array(dep, path, "labels") {
            self.labels(labels, &p);
        }
        if let Some((size, p)) = Self::optional(dep, path, "size") {
            let rule = "size must be a non-negative integer (bytes)";
            self.integer(size, &p, (0, u64::MAX), codes::BAD_SIZE, rule);
        }
    }

    fn path_whitelist(&mut self, items: &[Value], path: &str) {
        let mut seen = HashSet::new();
        for (i, item) in items.iter().enumerate() {
            let p = index_path(path, i);
            let Some(s) = self.string(item, &p) else {
                continue;
            };
            self.absolute_path(s, &p);
            if !seen.insert(s) {
                self.push(
                    codes::DUPLICATE_PATH,
                    &p,
                    format!("path {} is listed more than once", quote(s)),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const ID: &str = "sha512-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\
                      0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn base() -> Value {
        json!({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "example.com/app"})
    }

    fn with(patch: Value) -> Value {
        let mut v = base();
        for (k, x) in patch.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    }

    fn with_app(app: Value) -> Value {
        let mut full = json!({"user": "0", "group": "0"});
        for (k, x) in app.as_object().unwrap() {
            full[k] = x.clone();
        }
        with(json!({ "app": full }))
    }

    fn found(v: &Value) -> Vec<(&'static str, String)> {
        found_with(v, &ValidationOptions::default())
    }

    fn found_with(v: &Value, options: &ValidationOptions) -> Vec<(&'static str, String)> {
        validate_manifest(v, options)
            .into_iter()
            .map(|p| (p.code, p.path))
            .collect()
    }

    #[track_caller]
    fn ok(v: Value) {
        assert_eq!(found(&v), [], "{v}");
    }

    #[track_caller]
    fn bad(v: Value, code: &'static str, path: &str) {
        assert_eq!(found(&v), [(code, path.to_string())], "{v}");
    }

    #[test]
    fn minimal_manifest_is_valid() {
        ok(base());
    }

    #[test]
    fn top_level_fields() {
        bad(json!([]), codes::WRONG_TYPE, "$");
        bad(
            with(json!({"acKind": "PodManifest"})),
            codes::WRONG_KIND,
            "$.acKind",
        );
        bad(with(json!({"acKind": 1})), codes::WRONG_TYPE, "$.acKind");
        bad(
            with(json!({"acVersion": "1.0"})),
            codes::BAD_VERSION,
            "$.acVersion",
        );
        ok(with(json!({"acVersion": "0.1.0-alpha+x"})));
        bad(
            with(json!({"name": "Example.com"})),
            codes::BAD_NAME,
            "$.name",
        );
        bad(with(json!({"name": 5})), codes::WRONG_TYPE, "$.name");
        bad(with(json!({"name": null})), codes::WRONG_TYPE, "$.name");
        let missing = found(&json!({}));
        assert_eq!(
            missing,
            [
                (codes::MISSING_FIELD, "$.acKind".to_string()),
                (codes::MISSING_FIELD, "$.acVersion".to_string()),
                (codes::MISSING_FIELD, "$.name".to_string()),
            ]
        );
        // Optional fields may be null; unknown fields are not checked.
        ok(with(
            json!({"labels": null, "app": null, "dependencies": null, "x": {"y": 1}}),
        ));
        bad(with(json!({"labels": {}})), codes::WRONG_TYPE, "$.labels");
    }

    #[test]
    fn labels() {
        ok(with(
            json!({"labels": [{"name": "version", "value": "1.0"}]}),
        ));
        bad(
            with(json!({"labels": [{"name": "Version", "value": "1"}]})),
            codes::BAD_NAME,
            "$.labels[0].name",
        );
        bad(
            with(json!({"labels": [{"name": "name", "value": "x"}]})),
            codes::RESERVED_LABEL,
            "$.labels[0].name",
        );
        bad(
            with(json!({"labels": [{"name": "a", "value": "1"}, {"name": "a", "value": "1"}]})),
            codes::DUPLICATE_LABEL,
            "$.labels[1].name",
        );
        bad(
            with(json!({"labels": [{"name": "a", "value": 1}]})),
            codes::WRONG_TYPE,
            "$.labels[0].value",
        );
        bad(
            with(json!({"labels": [{"name": "a"}]})),
            codes::MISSING_FIELD,
            "$.labels[0].value",
        );
        bad(
            with(json!({"labels": ["a"]})),
            codes::WRONG_TYPE,
            "$.labels[0]",
        );
    }

    #[test]
    fn os_arch() {
        let labels = |pairs: &[(&str, &str)]| {
            let list: Vec<_> = pairs
                .iter()
                .map(|(n, v)| json!({"name": n, "value": v}))
                .collect();
            with(json!({ "labels": list }))
        };
        ok(labels(&[("os", "linux"), ("arch", "amd64")]));
        ok(labels(&[("arch", "aarch64"), ("os", "linux")]));
        ok(labels(&[("os", "darwin")]));
        ok(labels(&[("os", "freebsd"), ("arch", "arm")]));
        bad(
            labels(&[("arch", "amd64")]),
            codes::BAD_OS_ARCH,
            "$.labels[0].value",
        );
        bad(
            labels(&[("os", "windows")]),
            codes::BAD_OS_ARCH,
            "$.labels[0].value",
        );
        bad(
            labels(&[("os", "windows"), ("arch", "amd64")]),
            codes::BAD_OS_ARCH,
            "$.labels[0].value",
        );
        bad(
            labels(&[("os", "darwin"), ("arch", "amd64")]),
            codes::BAD_OS_ARCH,
            "$.labels[1].value",
        );
        bad(
            labels(&[("os", "Linux")]),
            codes::BAD_OS_ARCH,
            "$.labels[0].value",
        );

        let mut options = ValidationOptions::default();
        options.os_arch.allow("windows", "amd64");
        assert_eq!(
            found_with(&labels(&[("os", "windows"), ("arch", "amd64")]), &options),
            []
        );
    }

    #[test]
    fn annotations() {
        let one = |name: &str, value: &str| {
            with(json!({"annotations": [{"name": name, "value": value}]}))
        };
        ok(one("authors", "anyone <a@b>"));
        ok(one("created", "2014-10-27T19:32:27.67021798Z"));
        ok(one("homepage", "https://example.com"));
        ok(one("documentation", "HTTP://example.com:8080/docs?x#y"));
        ok(one("homepage", "http://user@[::1]:80/"));
        bad(
            one("created", "2014-10-27 19:32:27Z"),
            codes::BAD_TIMESTAMP,
            "$.annotations[0].value",
        );
        bad(
            one("homepage", "ftp://example.com"),
            codes::BAD_URL,
            "$.annotations[0].value",
        );
        bad(
            one("documentation", "https://"),
            codes::BAD_URL,
            "$.annotations[0].value",
        );
        bad(
            one("homepage", "https:///path"),
            codes::BAD_URL,
            "$.annotations[0].value",
        );
        bad(
            one("homepage", "https://exa mple.com"),
            codes::BAD_URL,
            "$.annotations[0].value",
        );
        bad(one("Bad", "x"), codes::BAD_NAME, "$.annotations[0].name");
        bad(
            with(
                json!({"annotations": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]}),
            ),
            codes::DUPLICATE_ANNOTATION,
            "$.annotations[1].name",
        );
        bad(
            with(json!({"annotations": [{"name": "a", "value": true}]})),
            codes::WRONG_TYPE,
            "$.annotations[0].value",
        );
    }

    #[test]
    fn app_user_group_exec() {
        ok(with_app(json!({})));
        ok(with_app(json!({"exec": ["run", ""]})));
        ok(with_app(json!({"exec": []})));
        bad(
            with(json!({"app": {"group": "0"}})),
            codes::MISSING_FIELD,
            "$.app.user",
        );
        bad(
            with(json!({"app": {"user": "0"}})),
            codes::MISSING_FIELD,
            "$.app.group",
        );
        bad(
            with_app(json!({"user": ""})),
            codes::EMPTY_VALUE,
            "$.app.user",
        );
        bad(
            with_app(json!({"group": 0})),
            codes::WRONG_TYPE,
            "$.app.group",
        );
        bad(
            with_app(json!({"exec": ["", "x"]})),
            codes::EMPTY_EXEC,
            "$.app.exec[0]",
        );
        bad(
            with_app(json!({"exec": ["x", 1]})),
            codes::WRONG_TYPE,
            "$.app.exec[1]",
        );
        bad(
            with_app(json!({"exec": "x"})),
            codes::WRONG_TYPE,
            "$.app.exec",
        );
        bad(with(json!({"app": []})), codes::WRONG_TYPE, "$.app");
    }

    #[test]
    fn app_supplementary_gids() {
        ok(with_app(json!({"supplementaryGIDs": [0, 4294967295u64]})));
        ok(with_app(json!({"supplementaryGids": [400, 500]})));
        bad(
            with_app(json!({"supplementaryGIDs": [-1]})),
            codes::BAD_GID,
            "$.app.supplementaryGIDs[0]",
        );
        bad(
            with_app(json!({"supplementaryGids": [1, 4294967296u64]})),
            codes::BAD_GID,
            "$.app.supplementaryGids[1]",
        );
        bad(
            with_app(json!({"supplementaryGIDs": [1.5]})),
            codes::BAD_GID,
            "$.app.supplementaryGIDs[0]",
        );
        bad(
            with_app(json!({"supplementaryGIDs": ["1"]})),
            codes::WRONG_TYPE,
            "$.app.supplementaryGIDs[0]",
        );
        bad(
            with_app(json!({"supplementaryGIDs": [1], "supplementaryGids": [1]})),
            codes::DUPLICATE_FIELD,
            "$.app.supplementaryGids",
        );
    }

    #[test]
    fn app_event_handlers() {
        ok(with_app(json!({"eventHandlers": [
            {"name": "pre-start", "exec": ["/a"]}, {"name": "post-stop", "exec": ["/b", "-v"]}
        ]})));
        bad(
            with_app(json!({"eventHandlers": [{"name": "on-start", "exec": ["/a"]}]})),
            codes::BAD_EVENT_HANDLER,
            "$.app.eventHandlers[0].name",
        );
        bad(
            with_app(
                json!({"eventHandlers": [{"name": "pre-start", "exec": ["/a"]}, {"name": "pre-start", "exec": ["/b"]}]}),
            ),
            codes::DUPLICATE_EVENT_HANDLER,
            "$.app.eventHandlers[1].name",
        );
        bad(
            with_app(json!({"eventHandlers": [{"name": "pre-start", "exec": []}]})),
            codes::EMPTY_EXEC,
            "$.app.eventHandlers[0].exec",
        );
        bad(
            with_app(json!({"eventHandlers": [{"name": "pre-start", "exec": [""]}]})),
            codes::EMPTY_EXEC,
            "$.app.eventHandlers[0].exec[0]",
        );
        bad(
            with_app(json!({"eventHandlers": [{"name": "pre-start"}]})),
            codes::MISSING_FIELD,
            "$.app.eventHandlers[0].exec",
        );
    }

    #[test]
    fn app_working_directory() {
        ok(with_app(json!({"workingDirectory": "/opt/work"})));
        bad(
            with_app(json!({"workingDirectory": "opt"})),
            codes::RELATIVE_PATH,
            "$.app.workingDirectory",
        );
        bad(
            with_app(json!({"workingDirectory": ""})),
            codes::RELATIVE_PATH,
            "$.app.workingDirectory",
        );
        bad(
            with_app(json!({"workingDirectory": "/a\u{0}b"})),
            codes::BAD_PATH,
            "$.app.workingDirectory",
        );
    }

    #[test]
    fn app_environment() {
        ok(with_app(json!({"environment": [
            {"name": "PATH", "value": "/bin"}, {"name": "a.b-c_9", "value": ""}, {"name": "1X", "value": ""}
        ]})));
        bad(
            with_app(json!({"environment": [{"name": "", "value": ""}]})),
            codes::BAD_ENV_NAME,
            "$.app.environment[0].name",
        );
        bad(
            with_app(json!({"environment": [{"name": "A=B", "value": ""}]})),
            codes::BAD_ENV_NAME,
            "$.app.environment[0].name",
        );
        bad(
            with_app(json!({"environment": [{"name": "A B", "value": ""}]})),
            codes::BAD_ENV_NAME,
            "$.app.environment[0].name",
        );
        bad(
            with_app(
                json!({"environment": [{"name": "A", "value": ""}, {"name": "A", "value": "x"}]}),
            ),
            codes::DUPLICATE_ENV,
            "$.app.environment[1].name",
        );
        bad(
            with_app(json!({"environment": [{"name": "A", "value": 1}]})),
            codes::WRONG_TYPE,
            "$.app.environment[0].value",
        );
    }

    #[test]
    fn app_isolators() {
        ok(with_app(json!({"isolators": [
            {"name": "resource/cpu", "value": {"limit": "1"}}, {"name": "x", "value": null}
        ]})));
        bad(
            with_app(json!({"isolators": [{"name": "Cpu", "value": 1}]})),
            codes::BAD_NAME,
            "$.app.isolators[0].name",
        );
        bad(
            with_app(json!({"isolators": [{"name": "cpu"}]})),
            codes::MISSING_FIELD,
            "$.app.isolators[0].value",
        );
    }

    #[test]
    fn app_mount_points() {
        ok(with_app(
            json!({"mountPoints": [{"name": "work", "path": "/w", "readOnly": true}, {"name": "b", "path": "/b"}]}),
        ));
        bad(
            with_app(json!({"mountPoints": [{"name": "a.b", "path": "/w"}]})),
            codes::BAD_NAME,
            "$.app.mountPoints[0].name",
        );
        bad(
            with_app(json!({"mountPoints": [{"name": "a", "path": "w"}]})),
            codes::RELATIVE_PATH,
            "$.app.mountPoints[0].path",
        );
        bad(
            with_app(
                json!({"mountPoints": [{"name": "a", "path": "/a"}, {"name": "a", "path": "/b"}]}),
            ),
            codes::DUPLICATE_MOUNT_POINT,
            "$.app.mountPoints[1].name",
        );
        bad(
            with_app(json!({"mountPoints": [{"name": "a", "path": "/a", "readOnly": "no"}]})),
            codes::WRONG_TYPE,
            "$.app.mountPoints[0].readOnly",
        );
    }

    #[test]
    fn app_ports() {
        let port = |extra: Value| {
            let mut p = json!({"name": "http", "protocol": "tcp", "port": 80});
            for (k, x) in extra.as_object().unwrap() {
                p[k] = x.clone();
            }
            with_app(json!({ "ports": [p] }))
        };
        ok(port(json!({})));
        ok(port(
            json!({"port": 65535, "count": 1, "socketActivated": true}),
        ));
        ok(port(json!({"port": 1, "count": 65535})));
        bad(
            port(json!({"port": 0})),
            codes::BAD_PORT,
            "$.app.ports[0].port",
        );
        bad(
            port(json!({"port": 65536})),
            codes::BAD_PORT,
            "$.app.ports[0].port",
        );
        bad(
            port(json!({"port": -1})),
            codes::BAD_PORT,
            "$.app.ports[0].port",
        );
        bad(
            port(json!({"port": "80"})),
            codes::WRONG_TYPE,
            "$.app.ports[0].port",
        );
        bad(
            port(json!({"count": 0})),
            codes::BAD_PORT,
            "$.app.ports[0].count",
        );
        bad(
            port(json!({"port": 65000, "count": 1000})),
            codes::BAD_PORT,
            "$.app.ports[0].count",
        );
        bad(
            port(json!({"protocol": ""})),
            codes::EMPTY_VALUE,
            "$.app.ports[0].protocol",
        );
        bad(
            port(json!({"name": "HTTP"})),
            codes::BAD_NAME,
            "$.app.ports[0].name",
        );
        bad(
            port(json!({"socketActivated": 1})),
            codes::WRONG_TYPE,
            "$.app.ports[0].socketActivated",
        );
        bad(
            with_app(json!({"ports": [
                {"name": "a", "protocol": "tcp", "port": 1}, {"name": "a", "protocol": "udp", "port": 1}
            ]})),
            codes::DUPLICATE_PORT,
            "$.app.ports[1].name",
        );
    }

    #[test]
    fn app_user_maps() {
        ok(with_app(
            json!({"userAnnotations": {"any key": "v"}, "userLabels": {"k": "v"}}),
        ));
        bad(
            with_app(json!({"userAnnotations": {"a b": 1}})),
            codes::WRONG_TYPE,
            "$.app.userAnnotations[\"a b\"]",
        );
        bad(
            with_app(json!({"userLabels": {"k": null}})),
            codes::WRONG_TYPE,
            "$.app.userLabels.k",
        );
        bad(
            with_app(json!({"userLabels": []})),
            codes::WRONG_TYPE,
            "$.app.userLabels",
        );
    }

    #[test]
    fn dependencies() {
        let dep =
            |d: Value| with(json!({ "dependencies": [{"imageName": "example.com/base"}, d] }));
        ok(dep(
            json!({"imageName": "b", "imageID": ID, "size": 0, "labels": [{"name": "os", "value": "linux"}]}),
        ));
        bad(
            dep(json!({})),
            codes::MISSING_FIELD,
            "$.dependencies[1].imageName",
        );
        bad(
            dep(json!({"imageName": "B"})),
            codes::BAD_NAME,
            "$.dependencies[1].imageName",
        );
        bad(
            dep(json!({"imageName": "b", "imageID": "sha512-0123"})),
            codes::BAD_IMAGE_ID,
            "$.dependencies[1].imageID",
        );
        bad(
            dep(json!({"imageName": "b", "size": -5})),
            codes::BAD_SIZE,
            "$.dependencies[1].size",
        );
        bad(
            dep(json!({"imageName": "b", "size": 1.5})),
            codes::BAD_SIZE,
            "$.dependencies[1].size",
        );
        bad(
            dep(json!({"imageName": "b", "labels": [{"name": "name", "value": "x"}]})),
            codes::RESERVED_LABEL,
            "$.dependencies[1].labels[0].name",
        );
        bad(
            dep(
                json!({"imageName": "b", "labels": [{"name": "e", "value": "x"}, {"name": "e", "value": "y"}]}),
            ),
            codes::DUPLICATE_LABEL,
            "$.dependencies[1].labels[1].name",
        );
        bad(
            dep(json!({"imageName": "b", "labels": [{"name": "arch", "value": "amd64"}]})),
            codes::BAD_OS_ARCH,
            "$.dependencies[1].labels[0].value",
        );
        bad(
            with(json!({"dependencies": [1]})),
            codes::WRONG_TYPE,
            "$.dependencies[0]",
        );
    }

    #[test]
    fn path_whitelist() {
        ok(with(
            json!({"pathWhitelist": ["/etc/a", "/etc/systemd/system/"]}),
        ));
        ok(with(json!({"pathWhitelist": []})));
        bad(
            with(json!({"pathWhitelist": ["/a", "/b", "/c", "d"]})),
            codes::RELATIVE_PATH,
            "$.pathWhitelist[3]",
        );
        bad(
            with(json!({"pathWhitelist": ["/a", "/a"]})),
            codes::DUPLICATE_PATH,
            "$.pathWhitelist[1]",
        );
        bad(
            with(json!({"pathWhitelist": ["/a\u{0}"]})),
            codes::BAD_PATH,
            "$.pathWhitelist[0]",
        );
        bad(
            with(json!({"pathWhitelist": [7]})),
            codes::WRONG_TYPE,
            "$.pathWhitelist[0]",
        );
    }

    #[test]
    fn collects_every_problem() {
        let v = json!({
            "acKind": "ImageManifest",
            "acVersion": "zero",
            "name": 42,
            "labels": [{"name": "a", "value": "1"}, {"name": "ok", "value": "2"}, {"name": "a", "value": "3"}],
            "app": {"user": "", "ports": [{"name": "p", "protocol": "tcp", "port": 70000}]},
            "dependencies": [{"imageName": "x"}, {"imageName": "y", "imageID": "sha512-abc"}],
            "pathWhitelist": ["/a", "/b", "/c", "rel"]
        });
        let paths: Vec<_> = found(&v)
            .into_iter()
            .map(|(c, p)| format!("{c} {p}"))
            .collect();
        assert_eq!(
            paths,
            [
                "bad_version $.acVersion",
                "wrong_type $.name",
                "duplicate_label $.labels[2].name",
                "empty_value $.app.user",
                "missing_field $.app.group",
                "bad_port $.app.ports[0].port",
                "bad_image_id $.dependencies[1].imageID",
                "relative_path $.pathWhitelist[3]",
            ]
        );
    }

    #[test]
    fn url_check() {
        assert!(is_http_url("https://example.com"));
        assert!(is_http_url("http://a"));
        assert!(!is_http_url("http:/a"));
        assert!(!is_http_url("mailto:a@b"));
        assert!(!is_http_url("http://user@/x"));
        assert!(!is_http_url("http://[::1/"));
    }
}
