//! The image manifest of `aci.md` as typed serde structs: [`ImageManifest`] and its
//! parts ([`App`], [`EventHandler`], [`EnvironmentVariable`], [`Isolator`],
//! [`MountPoint`], [`Port`], [`Dependency`], [`Annotation`]).
//!
//! Every struct keeps the fields it does not know in `extra`, so that a manifest
//! survives a parse and [`ImageManifest::to_json_bytes`] without losing data.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::json;
use super::labels::Labels;
use super::problem::{Problem, cap, codes};
use super::types::{AcIdentifier, AcKind, AcName, AcVersion, ImageId};
use super::validate::{ValidationOptions, validate_manifest};
use crate::{Error, Result};

/// Deserializes `null` as the default value.
fn null_default<'de, D, T>(d: D) -> std::result::Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// An image manifest (`acKind` `ImageManifest`): what the image is and how to run it.
///
/// Get one from [`ImageManifest::parse`] (which validates) or build one with
/// [`ImageManifest::new`] and check it with [`ImageManifest::validate`].
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    /// The kind, `ImageManifest` once validated.
    pub ac_kind: AcKind,
    /// The appc spec version the manifest follows.
    pub ac_version: AcVersion,
    /// The image name, e.g. `example.com/reduce-worker`.
    pub name: AcIdentifier,
    /// Labels (`version`, `os`, `arch`...).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Labels::is_empty"
    )]
    pub labels: Labels,
    /// How to run the image as an application, if it is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app: Option<App>,
    /// Images whose files are laid down before this image's, in order.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub dependencies: Vec<Dependency>,
    /// If not empty, the only absolute paths kept in the rendered rootfs.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub path_whitelist: Vec<String>,
    /// Extra metadata (`created`, `authors`, `homepage`...).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub annotations: Vec<Annotation>,
    /// Fields this crate does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
    /// The bytes this manifest was parsed from (empty if built in code).
    #[serde(skip)]
    raw: Vec<u8>,
}

impl ImageManifest {
    /// A manifest of kind `ImageManifest`, spec version [`AcVersion::SPEC`], named
    /// `name`, with nothing else.
    ///
    /// ```
    /// use acikit::ImageManifest;
    /// use acikit::schema::AcIdentifier;
    ///
    /// let manifest = ImageManifest::new(AcIdentifier::parse("example.com/hello")?);
    /// assert!(manifest.validate().is_empty());
    /// // Its JSON parses back to the same name.
    /// let again = ImageManifest::parse(&manifest.to_json_bytes())?;
    /// assert_eq!(again.name, manifest.name);
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn new(name: AcIdentifier) -> Self {
        ImageManifest {
            ac_kind: AcKind::image_manifest(),
            ac_version: AcVersion::spec(),
            name,
            labels: Labels::new(),
            app: None,
            dependencies: Vec::new(),
            path_whitelist: Vec::new(),
            annotations: Vec::new(),
            extra: Map::new(),
            raw: Vec::new(),
        }
    }

    /// Parses and validates manifest JSON with the default [`ValidationOptions`].
    ///
    /// Fails with [`crate::ErrorKind::InvalidManifest`] listing every problem found.
    ///
    /// ```
    /// use acikit::{ErrorKind, ImageManifest};
    ///
    /// let json = br#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"example.com/hello",
    ///   "labels":[{"name":"version","value":"1.0.0"}]}"#;
    /// let manifest = ImageManifest::parse(json)?;
    /// assert_eq!(manifest.name.as_str(), "example.com/hello");
    /// assert_eq!(manifest.labels.get("version"), Some("1.0.0"));
    /// assert_eq!(manifest.raw(), json);
    ///
    /// // Every problem is listed, each with a stable code and a JSON path.
    /// let err = ImageManifest::parse(br#"{"acKind":"ImageManifest","acVersion":"0.8.11","name":"Bad Name"}"#)
    ///     .unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidManifest);
    /// assert_eq!(err.problems()[0].path, "$.name");
    /// # Ok::<(), acikit::Error>(())
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        Self::parse_with(bytes, &ValidationOptions::default())
    }

    /// Parses and validates manifest JSON with `options`; keeps `bytes` ([`Self::raw`]).
    pub fn parse_with(bytes: &[u8], options: &ValidationOptions) -> Result<Self> {
        let (value, mut problems) = json::read(bytes).map_err(|e| {
            Error::invalid_manifest(vec![Problem::new(codes::NOT_JSON, "$", e.to_string())])
        })?;
        problems.extend(validate_manifest(&value, options));
        cap(&mut problems);
        if !problems.is_empty() {
            return Err(Error::invalid_manifest(problems));
        }
        // Validation checked every type, so this only fails on a bug.
        let mut manifest: ImageManifest = serde_json::from_value(value).map_err(|e| {
            Error::invalid_manifest(vec![Problem::new(codes::WRONG_TYPE, "$", e.to_string())])
        })?;
        manifest.raw = bytes.to_vec();
        Ok(manifest)
    }

    /// Every problem of this manifest under the default [`ValidationOptions`].
    pub fn validate(&self) -> Vec<Problem> {
        self.validate_with(&ValidationOptions::default())
    }

    /// Every problem of this manifest under `options`.
    pub fn validate_with(&self, options: &ValidationOptions) -> Vec<Problem> {
        let mut problems = validate_manifest(&self.to_value(), options);
        cap(&mut problems);
        problems
    }

    /// The manifest as pretty-printed JSON (from the fields, not [`Self::raw`]).
    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(self).expect("a manifest always serializes")
    }

    /// The exact bytes the manifest was parsed from; empty if built in code.
    ///
    /// Later changes to the fields are not reflected here.
    pub fn raw(&self) -> &[u8] {
        &self.raw
    }

    /// The value of the first annotation called `name`.
    pub fn annotation(&self, name: &str) -> Option<&str> {
        self.annotations
            .iter()
            .find(|a| a.name.as_str() == name)
            .map(|a| a.value.as_str())
    }

    fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("a manifest always serializes")
    }
}

impl PartialEq for ImageManifest {
    /// Compares the fields, not the raw bytes.
    fn eq(&self, other: &Self) -> bool {
        self.ac_kind == other.ac_kind
            && self.ac_version == other.ac_version
            && self.name == other.name
            && self.labels == other.labels
            && self.app == other.app
            && self.dependencies == other.dependencies
            && self.path_whitelist == other.path_whitelist
            && self.annotations == other.annotations
            && self.extra == other.extra
    }
}

impl Eq for ImageManifest {}

impl fmt::Debug for ImageManifest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ImageManifest")
            .field("ac_kind", &self.ac_kind)
            .field("ac_version", &self.ac_version)
            .field("name", &self.name)
            .field("labels", &self.labels)
            .field("app", &self.app)
            .field("dependencies", &self.dependencies)
            .field("path_whitelist", &self.path_whitelist)
            .field("annotations", &self.annotations)
            .field("extra", &self.extra)
            .field("raw_len", &self.raw.len())
            .finish()
    }
}

/// How to run the image as an application.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    /// The program and its arguments.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub exec: Vec<String>,
    /// User name, UID or absolute path whose owner to run as (required, non-empty).
    pub user: String,
    /// Group name, GID or absolute path whose group to run as (required, non-empty).
    pub group: String,
    /// Supplementary GIDs; read from `supplementaryGIDs` or `supplementaryGids`,
    /// written as `supplementaryGIDs`.
    #[serde(
        rename = "supplementaryGIDs",
        alias = "supplementaryGids",
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub supplementary_gids: Vec<u32>,
    /// Lifecycle hooks (`pre-start`, `post-stop`).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub event_handlers: Vec<EventHandler>,
    /// Absolute working directory (defaults to `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub working_directory: Option<String>,
    /// Environment variables.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub environment: Vec<EnvironmentVariable>,
    /// Isolation steps to apply.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub isolators: Vec<Isolator>,
    /// Where external data is expected to be mounted.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub mount_points: Vec<MountPoint>,
    /// Ports the app listens on.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub ports: Vec<Port>,
    /// Free-form string annotations for end users.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub user_annotations: BTreeMap<String, String>,
    /// Free-form string labels for end users.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub user_labels: BTreeMap<String, String>,
    /// Fields this crate does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl App {
    /// An app running as `user` and `group`, with nothing else.
    pub fn new(user: impl Into<String>, group: impl Into<String>) -> Self {
        App {
            user: user.into(),
            group: group.into(),
            ..App::default()
        }
    }
}

/// A lifecycle hook: a program run at the event `name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventHandler {
    /// `pre-start` or `post-stop`.
    pub name: String,
    /// The program and its arguments (not empty).
    pub exec: Vec<String>,
    /// Fields this crate does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl EventHandler {
    /// A handler running `exec` at event `name`.
    pub fn new(name: impl Into<String>, exec: Vec<String>) -> Self {
        EventHandler {
            name: name.into(),
            exec,
            extra: Map::new(),
        }
    }
}

/// An environment variable of the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvironmentVariable {
    /// The name: letters, digits, `_`, `.` and `-`.
    pub name: String,
    /// The value, used as is.
    pub value: String,
    /// Fields this crate does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl EnvironmentVariable {
    /// The variable `name` = `value`.
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        EnvironmentVariable {
            name: name.into(),
            value: value.into(),
            extra: Map::new(),
        }
    }
}

/// An isolation step (e.g. `resource/cpu`) with an arbitrary JSON value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Isolator {
    /// The isolator name.
    pub name: AcIdentifier,
    /// Its settings, any JSON value.
    pub value: Value,
    /// Fields this crate does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Isolator {
    /// The isolator `name` with settings `value`.
    pub fn new(name: AcIdentifier, value: Value) -> Self {
        Isolator {
            name,
            value,
            extra: Map::new(),
        }
    }
}

/// A place where the app expects external data to be mounted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MountPoint {
    /// The name volumes refer to.
    pub name: AcName,
    /// The absolute path inside the rootfs.
    pub path: String,
    /// Whether the mount is read-only (default false).
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub read_only: bool,
    /// Fields this crate does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl MountPoint {
    /// A read-write mount point `name` at `path`.
    pub fn new(name: AcName, path: impl Into<String>) -> Self {
        MountPoint {
            name,
            path: path.into(),
            read_only: false,
            extra: Map::new(),
        }
    }
}

/// A port (or range of `count` ports) the app listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Port {
    /// The port name, e.g. `http`.
    pub name: AcName,
    /// The protocol, e.g. `tcp`.
    pub protocol: String,
    /// The (first) port number, 1 to 65535.
    pub port: u16,
    /// How many consecutive ports, from `port` (1 if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u16>,
    /// Whether the app expects socket activation on these ports.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "is_false"
    )]
    pub socket_activated: bool,
    /// Fields this crate does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Port {
    /// The single port `port` named `name` over `protocol`.
    pub fn new(name: AcName, protocol: impl Into<String>, port: u16) -> Self {
        Port {
            name,
            protocol: protocol.into(),
            port,
            count: None,
            socket_activated: false,
            extra: Map::new(),
        }
    }
}

/// An image whose files go into the rootfs before this image's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Dependency {
    /// The name of the image.
    pub image_name: AcIdentifier,
    /// The exact image it must be, if pinned.
    #[serde(rename = "imageID", default, skip_serializing_if = "Option::is_none")]
    pub image_id: Option<ImageId>,
    /// Labels the image must have.
    #[serde(
        default,
        deserialize_with = "null_default",
        skip_serializing_if = "Labels::is_empty"
    )]
    pub labels: Labels,
    /// The size of the image in bytes, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Fields this crate does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Dependency {
    /// A dependency on any image named `image_name`.
    pub fn new(image_name: AcIdentifier) -> Self {
        Dependency {
            image_name,
            image_id: None,
            labels: Labels::new(),
            size: None,
            extra: Map::new(),
        }
    }
}

/// One annotation: a name (AC Identifier) and a string value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Annotation {
    /// The annotation name, e.g. `created`.
    pub name: AcIdentifier,
    /// The annotation value.
    pub value: String,
    /// Fields this crate does not know, kept as they were.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Annotation {
    /// The annotation `name` = `value`.
    pub fn new(name: AcIdentifier, value: impl Into<String>) -> Self {
        Annotation {
            name,
            value: value.into(),
            extra: Map::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ErrorKind;
    use crate::schema::ManifestLabel as Label;

    const ID: &str = "sha512-0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\
                      0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// The example manifest of `aci.md`, verbatim.
    const SPEC_EXAMPLE: &str = r#"{
    "acKind": "ImageManifest",
    "acVersion": "0.8.11",
    "name": "example.com/reduce-worker",
    "labels": [
        {
            "name": "version",
            "value": "1.0.0"
        },
        {
            "name": "arch",
            "value": "amd64"
        },
        {
            "name": "os",
            "value": "linux"
        }
    ],
    "app": {
        "exec": [
            "/usr/bin/reduce-worker",
            "--quiet"
        ],
        "user": "100",
        "group": "300",
        "supplementaryGids": [
                400,
                500
        ],
        "eventHandlers": [
            {
                "exec": [
                    "/usr/bin/data-downloader"
                ],
                "name": "pre-start"
            },
            {
                "exec": [
                    "/usr/bin/deregister-worker",
                    "--verbose"
                ],
                "name": "post-stop"
            }
        ],
        "workingDirectory": "/opt/work",
        "environment": [
            {
                "name": "REDUCE_WORKER_DEBUG",
                "value": "true"
            }
        ],
        "isolators": [
            {
                "name": "resource/cpu",
                "value": {
                    "request": "250m",
                    "limit": "500m"
                }
            },
            {
                "name": "resource/memory",
                "value": {
                    "request": "1G",
                    "limit": "2G"
                }
            },
            {
                "name": "os/linux/capabilities-retain-set",
                "value": {
                    "set": ["CAP_NET_BIND_SERVICE"]
                }
            }
        ],
        "mountPoints": [
            {
                "name": "work",
                "path": "/var/lib/work",
                "readOnly": false
            }
        ],
        "ports": [
            {
                "name": "health",
                "port": 4000,
                "protocol": "tcp",
                "socketActivated": true
            },
            {
                "name": "ftp-data",
                "port": 20000,
                "count": 1000,
                "protocol": "tcp"
            }
        ]
    },
    "dependencies": [
        {
            "imageName": "example.com/reduce-worker-base",
            "imageID": "sha512-...",
            "labels": [
                {
                    "name": "os",
                    "value": "linux"
                },
                {
                    "name": "env",
                    "value": "canary"
                }
            ],
            "size": 22017258
        }
    ],
    "pathWhitelist": [
        "/etc/ca/example.com/crt",
        "/usr/bin/map-reduce-worker",
        "/opt/libs/reduce-toolkit.so",
        "/etc/reduce-worker.conf",
        "/etc/systemd/system/"
    ],
    "annotations": [
        {
            "name": "authors",
            "value": "Carly Container <carly@example.com>, Nat Network <[nat@example.com](mailto:nat@example.com)>"
        },
        {
            "name": "created",
            "value": "2014-10-27T19:32:27.67021798Z"
        },
        {
            "name": "documentation",
            "value": "https://example.com/docs"
        },
        {
            "name": "homepage",
            "value": "https://example.com"
        },
        {
            "name": "appc.io/executor/supports-systemd-notify",
            "value": "false"
        }
    ]
}"#;

    fn ident(s: &str) -> AcIdentifier {
        AcIdentifier::parse(s).unwrap()
    }

    fn problems_of(bytes: &[u8]) -> Vec<(&'static str, String)> {
        let err = ImageManifest::parse(bytes).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidManifest);
        err.problems()
            .iter()
            .map(|p| (p.code, p.path.clone()))
            .collect()
    }

    #[test]
    fn spec_example_parses_with_a_real_image_id() {
        let text = SPEC_EXAMPLE.replace("sha512-...", ID);
        let m = ImageManifest::parse(text.as_bytes()).unwrap();
        assert_eq!(m.validate(), []);
        assert_eq!(m.raw(), text.as_bytes());
        assert_eq!(m.name, "example.com/reduce-worker");
        assert_eq!(m.ac_version.as_str(), "0.8.11");
        assert_eq!(m.labels.get("os"), Some("linux"));
        let app = m.app.as_ref().unwrap();
        assert_eq!(app.supplementary_gids, [400, 500]);
        assert_eq!(app.exec, ["/usr/bin/reduce-worker", "--quiet"]);
        assert_eq!(app.event_handlers[1].name, "post-stop");
        assert_eq!(app.working_directory.as_deref(), Some("/opt/work"));
        assert_eq!(
            app.isolators[2].value,
            json!({"set": ["CAP_NET_BIND_SERVICE"]})
        );
        assert!(!app.mount_points[0].read_only);
        assert!(app.ports[0].socket_activated);
        assert_eq!(app.ports[1].count, Some(1000));
        let dep = &m.dependencies[0];
        assert_eq!(dep.image_id.as_ref().unwrap().as_str(), ID);
        assert!(dep.labels.matches(&[("env", "canary")]));
        assert_eq!(dep.size, Some(22017258));
        assert_eq!(m.path_whitelist.len(), 5);
        assert_eq!(
            m.annotation("created"),
            Some("2014-10-27T19:32:27.67021798Z")
        );

        // It survives a round trip through to_json_bytes.
        let again = ImageManifest::parse(&m.to_json_bytes()).unwrap();
        assert_eq!(again, m);
    }

    #[test]
    fn spec_example_placeholder_id_is_rejected() {
        assert_eq!(
            problems_of(SPEC_EXAMPLE.as_bytes()),
            [(codes::BAD_IMAGE_ID, "$.dependencies[0].imageID".to_string())]
        );
    }

    #[test]
    fn not_json_is_one_problem_with_position() {
        for bytes in [&b"{\"acKind\": \n  }"[..], b"", b"{} trailing", b"\xff"] {
            let err = ImageManifest::parse(bytes).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidManifest);
            let [p] = err.problems() else {
                panic!("{:?}", err.problems())
            };
            assert_eq!((p.code, p.path.as_str()), (codes::NOT_JSON, "$"));
            assert!(p.message.contains("line"), "{}", p.message);
        }
    }

    #[test]
    fn collects_every_problem_with_paths() {
        let text = json!({
            "acKind": "ImageManifest",
            "acVersion": "0.8.11",
            "name": 3,
            "labels": [{"name": "a", "value": "1"}, {"name": "b", "value": "2"}, {"name": "Bad", "value": "3"}],
            "app": {"user": "0", "group": "0", "ports": [{"name": "p", "protocol": "tcp", "port": 0}]},
            "dependencies": [{"imageName": "a"}, {"imageName": "b", "imageID": "sha512-12"}],
            "pathWhitelist": ["/a", "/b", "/c", "d"]
        })
        .to_string();
        let err = ImageManifest::parse(text.as_bytes()).unwrap_err();
        assert_eq!(err.message(), "the manifest has 5 problems");
        let paths: Vec<_> = err.problems().iter().map(|p| p.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "$.name",
                "$.labels[2].name",
                "$.app.ports[0].port",
                "$.dependencies[1].imageID",
                "$.pathWhitelist[3]",
            ]
        );
        assert!(
            err.to_string()
                .contains("$.app.ports[0].port: a port must be"),
            "{err}"
        );
    }

    #[test]
    fn duplicate_keys_are_problems() {
        let text =
            br#"{"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "a", "name": "b"}"#;
        assert_eq!(
            problems_of(text),
            [(codes::DUPLICATE_KEY, "$.name".to_string())]
        );
    }

    #[test]
    fn unknown_fields_survive_at_every_level() {
        let original = json!({
            "acKind": "ImageManifest",
            "acVersion": "0.8.11",
            "name": "example.com/app",
            "labels": [{"name": "os", "value": "linux", "x-l": 1}],
            "app": {
                "exec": ["/bin/app"],
                "user": "0",
                "group": "0",
                "supplementaryGIDs": [1],
                "eventHandlers": [{"name": "pre-start", "exec": ["/x"], "x-e": [true]}],
                "workingDirectory": "/",
                "environment": [{"name": "A", "value": "b", "x-v": null}],
                "isolators": [{"name": "resource/cpu", "value": 5, "x-i": "i"}],
                "mountPoints": [{"name": "m", "path": "/m", "readOnly": true, "x-m": {}}],
                "ports": [{"name": "p", "protocol": "tcp", "port": 1, "count": 2, "socketActivated": true, "x-p": 1.5}],
                "userAnnotations": {"k": "v"},
                "userLabels": {"k": "v"},
                "x-app": {"nested": [1, 2, 3]}
            },
            "dependencies": [{
                "imageName": "base",
                "imageID": ID,
                "labels": [{"name": "arch", "value": "amd64", "x-dl": "y"}, {"name": "os", "value": "linux"}],
                "size": 10,
                "x-d": -1
            }],
            "pathWhitelist": ["/a"],
            "annotations": [{"name": "authors", "value": "me", "x-a": "z"}],
            "x-top": {"deep": {"er": ["s"]}}
        });
        let m = ImageManifest::parse(original.to_string().as_bytes()).unwrap();
        assert_eq!(m.extra["x-top"], original["x-top"]);
        assert_eq!(
            m.app.as_ref().unwrap().extra["x-app"],
            original["app"]["x-app"]
        );
        let written: Value = serde_json::from_slice(&m.to_json_bytes()).unwrap();
        assert_eq!(written, original);
    }

    #[test]
    fn raw_bytes_are_kept_exactly() {
        let text =
            b"  {\"name\":\"a\" ,\n\t\"acVersion\" : \"0.8.11\",\"acKind\":\"ImageManifest\"}\n\n";
        let m = ImageManifest::parse(text).unwrap();
        assert_eq!(m.raw(), &text[..]);
        assert!(ImageManifest::new(ident("a")).raw().is_empty());
    }

    #[test]
    fn both_gid_spellings_are_read() {
        let doc = |key: &str| {
            json!({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "a",
                   "app": {"user": "0", "group": "0", key: [7, 8]}})
            .to_string()
        };
        let a = ImageManifest::parse(doc("supplementaryGIDs").as_bytes()).unwrap();
        let b = ImageManifest::parse(doc("supplementaryGids").as_bytes()).unwrap();
        assert_eq!(a.app.as_ref().unwrap().supplementary_gids, [7, 8]);
        assert_eq!(a, b);
        let written: Value = serde_json::from_slice(&b.to_json_bytes()).unwrap();
        assert_eq!(written["app"]["supplementaryGIDs"], json!([7, 8]));
        assert!(written["app"].get("supplementaryGids").is_none());
    }

    #[test]
    fn null_optional_fields_are_absent() {
        let text = json!({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "a",
            "labels": null, "dependencies": null, "pathWhitelist": null, "annotations": null,
            "app": {"user": "u", "group": "g", "exec": null, "ports": null, "userLabels": null,
                    "mountPoints": [{"name": "m", "path": "/m", "readOnly": null}]}})
        .to_string();
        let m = ImageManifest::parse(text.as_bytes()).unwrap();
        assert!(m.labels.is_empty());
        assert!(!m.app.unwrap().mount_points[0].read_only);
    }

    #[test]
    fn validate_manifests_built_in_code() {
        let mut m = ImageManifest::new(ident("example.com/app"));
        assert_eq!(m.validate(), []);

        m.labels.push(Label::new(ident("os"), "linux"));
        m.labels.push(Label::new(ident("os"), "linux"));
        let mut app = App::new("", "0");
        app.ports
            .push(Port::new(AcName::parse("http").unwrap(), "tcp", 0));
        app.mount_points
            .push(MountPoint::new(AcName::parse("data").unwrap(), "data"));
        m.app = Some(app);
        m.ac_kind = AcKind::parse("PodManifest").unwrap();
        let found: Vec<_> = m.validate().into_iter().map(|p| (p.code, p.path)).collect();
        assert_eq!(
            found,
            [
                (codes::WRONG_KIND, "$.acKind".to_string()),
                (codes::DUPLICATE_LABEL, "$.labels[1].name".to_string()),
                (codes::EMPTY_VALUE, "$.app.user".to_string()),
                (
                    codes::RELATIVE_PATH,
                    "$.app.mountPoints[0].path".to_string()
                ),
                (codes::BAD_PORT, "$.app.ports[0].port".to_string()),
            ]
        );
    }

    #[test]
    fn built_manifest_round_trips() {
        let mut m = ImageManifest::new(ident("example.com/app"));
        let mut app = App::new("root", "root");
        app.exec = vec!["/bin/sh".into()];
        app.event_handlers
            .push(EventHandler::new("pre-start", vec!["/bin/true".into()]));
        app.environment
            .push(EnvironmentVariable::new("PATH", "/bin"));
        app.isolators
            .push(Isolator::new(ident("resource/cpu"), json!({"limit": "1"})));
        m.app = Some(app);
        let mut dep = Dependency::new(ident("example.com/base"));
        dep.image_id = Some(ImageId::parse(ID).unwrap());
        m.dependencies.push(dep);
        m.annotations
            .push(Annotation::new(ident("homepage"), "https://example.com"));
        assert_eq!(m.validate(), []);
        let parsed = ImageManifest::parse(&m.to_json_bytes()).unwrap();
        assert_eq!(parsed, m);
        assert_eq!(parsed.annotation("homepage"), Some("https://example.com"));
        assert!(format!("{parsed:?}").contains("raw_len"));
    }

    #[test]
    fn problem_lists_are_capped() {
        let paths: Vec<_> = (0..1500).map(|i| format!("rel{i}")).collect();
        let text = json!({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "a",
            "pathWhitelist": paths})
        .to_string();
        let problems = problems_of(text.as_bytes());
        assert_eq!(problems.len(), crate::schema::problem::MAX_PROBLEMS + 1);
        assert_eq!(
            problems[999],
            (codes::RELATIVE_PATH, "$.pathWhitelist[999]".to_string())
        );
        assert_eq!(problems[1000], (codes::TOO_MANY_PROBLEMS, "$".to_string()));
    }

    #[test]
    fn custom_options_extend_the_whitelist() {
        let text = json!({"acKind": "ImageManifest", "acVersion": "0.8.11", "name": "a",
            "labels": [{"name": "os", "value": "windows"}, {"name": "arch", "value": "amd64"}]})
        .to_string();
        assert_eq!(
            problems_of(text.as_bytes()),
            [(codes::BAD_OS_ARCH, "$.labels[0].value".to_string())]
        );
        let mut options = ValidationOptions::default();
        options.os_arch.allow("windows", "amd64");
        let m = ImageManifest::parse_with(text.as_bytes(), &options).unwrap();
        assert_eq!(m.validate_with(&options), []);
        assert_eq!(m.validate().len(), 1);
    }
}
