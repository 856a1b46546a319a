//! A PostgreSQL schema of its own for one test, in the test database: the server
//! that `.ci/run` installs and starts, or `$ACIKIT_TEST_POSTGRES`.

use std::process::Command;

/// The test database: `$ACIKIT_TEST_POSTGRES`, else the role and database `.ci/run`
/// creates on the local server.
pub fn base_url() -> String {
    std::env::var("ACIKIT_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://acikit:acikit@127.0.0.1:5432/acikit_test".into())
}

/// An empty schema, dropped with everything in it when this is dropped; [`url`]
/// connects to it (its `search_path`).
///
/// [`url`]: TestSchema::url
pub struct TestSchema {
    /// The URL that makes the schema the connection's `search_path`.
    pub url: String,
    schema: String,
}

impl TestSchema {
    /// Creates the schema `acikit_<tag>_<pid>`, dropping any left by an earlier run.
    pub fn new(tag: &str) -> TestSchema {
        let schema = format!("acikit_{tag}_{}", std::process::id());
        psql(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};"
        ));
        let base = base_url();
        let separator = if base.contains('?') { '&' } else { '?' };
        TestSchema {
            url: format!("{base}{separator}options=-c%20search_path%3D{schema}"),
            schema,
        }
    }
}

impl Drop for TestSchema {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            psql(&format!("DROP SCHEMA {} CASCADE;", self.schema));
        }
    }
}

/// Runs SQL on the test database with `psql`, panicking with its output on failure.
fn psql(sql: &str) {
    let out = Command::new("psql")
        .args([
            "-v",
            "ON_ERROR_STOP=1",
            "-q",
            "-X",
            "-d",
            &base_url(),
            "-c",
            sql,
        ])
        .output()
        .expect("psql runs (postgresql-client; .ci/run installs it)");
    assert!(
        out.status.success(),
        "psql failed on the test PostgreSQL (start it and create its role and database as \
         .ci/run does, or set ACIKIT_TEST_POSTGRES): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
