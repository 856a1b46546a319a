//! Reading manifest JSON loosely for validation: a [`Value`] tree built in one pass
//! that reports duplicate object keys (which `serde_json` would silently resolve to
//! the last one) as problems, and the JSON path notation of problems.

use std::fmt;

use serde::de::{DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::problem::{MAX_PROBLEMS, Problem, codes};

/// Keys longer than this many characters are cut in paths.
const MAX_PATH_KEY: usize = 64;

/// Parses `bytes` as one JSON document; also returns a problem per duplicate key
/// (at most [`MAX_PROBLEMS`] + 1 of them).
pub(crate) fn read(bytes: &[u8]) -> Result<(Value, Vec<Problem>), serde_json::Error> {
    let mut context = Context {
        stack: Vec::new(),
        problems: Vec::new(),
    };
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = Node(&mut context).deserialize(&mut de)?;
    de.end()?;
    Ok((value, context.problems))
}

/// The path of member `key` of the object at `parent`: `$.a` or `$["a b"]`.
///
/// A key longer than 64 characters is cut and ends in `...` inside the quotes.
pub(crate) fn key_path(parent: &str, key: &str) -> String {
    if let Some((cut, _)) = key.char_indices().nth(MAX_PATH_KEY) {
        let quoted = Value::from(&key[..cut]).to_string();
        return format!("{parent}[{}...\"]", &quoted[..quoted.len() - 1]);
    }
    let plain = key.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if plain {
        format!("{parent}.{key}")
    } else {
        // A JSON string literal is a valid bracket key.
        format!("{parent}[{}]", Value::from(key))
    }
}

/// The path of element `index` of the array at `parent`: `$.a[3]`.
pub(crate) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// One step of the path from the root to the value being read.
enum Step {
    Key(String),
    Index(usize),
}

/// The state of one [`read`]: where it is, and the duplicates found so far.
struct Context {
    /// Paths are built from it only when a problem is found.
    stack: Vec<Step>,
    problems: Vec<Problem>,
}

impl Context {
    fn path(&self) -> String {
        self.stack
            .iter()
            .fold("$".to_string(), |path, step| match step {
                Step::Key(key) => key_path(&path, key),
                Step::Index(i) => index_path(&path, *i),
            })
    }
}

/// Builds the [`Value`] at the top of the context's stack.
struct Node<'c>(&'c mut Context);

impl<'de> DeserializeSeed<'de> for Node<'_> {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let context = self.0;
        let mut items = Vec::new();
        loop {
            context.stack.push(Step::Index(items.len()));
            let item = seq.next_element_seed(Node(&mut *context))?;
            context.stack.pop();
            match item {
                Some(v) => items.push(v),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let context = self.0;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            context.stack.push(Step::Key(key));
            let value = map.next_value_seed(Node(&mut *context))?;
            let duplicate =
                matches!(context.stack.last(), Some(Step::Key(k)) if object.contains_key(k));
            if duplicate && context.problems.len() <= MAX_PROBLEMS {
                let message = "key appears more than once in the object (the last one is used)";
                let problem = Problem::new(codes::DUPLICATE_KEY, context.path(), message);
                context.problems.push(problem);
            }
            if let Some(Step::Key(key)) = context.stack.pop() {
                object.insert(key, value);
            }
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_like_serde_json() {
        let text = br#"{"a": [1, -2, 3.5, "x", null, true, {"b": {}}], "c": 18446744073709551615}"#;
        let (value, problems) = read(text).unwrap();
        assert!(problems.is_empty());
        assert_eq!(value, serde_json::from_slice::<Value>(text).unwrap());
    }

    #[test]
    fn reports_duplicate_keys_with_paths() {
        let (value, problems) =
            read(br#"{"name": "a", "x": [{"k": 1, "k": 2}], "name": "b"}"#).unwrap();
        assert_eq!(value["name"], "b");
        let paths: Vec<_> = problems.iter().map(|p| p.path.as_str()).collect();
        assert_eq!(paths, ["$.x[0].k", "$.name"]);
        assert!(problems.iter().all(|p| p.code == codes::DUPLICATE_KEY));
    }

    #[test]
    fn errors_have_positions_and_trailing_data_fails() {
        let err = read(b"{\n  \"a\": }").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
        assert!(read(b"{} {}").is_err());
        assert!(read(b"").is_err());
    }

    #[test]
    fn paths() {
        assert_eq!(key_path("$", "acKind"), "$.acKind");
        assert_eq!(key_path("$.a", "appc.io/x"), "$.a[\"appc.io/x\"]");
        assert_eq!(key_path("$", "say \"hi\""), r#"$["say \"hi\""]"#);
        assert_eq!(key_path("$", ""), r#"$[""]"#);
        assert_eq!(index_path("$.labels", 2), "$.labels[2]");
        let long = format!("{}\"", "é".repeat(100));
        let cut = key_path("$", &long);
        assert_eq!(cut, format!("$[\"{}...\"]", "é".repeat(64)));
    }

    #[test]
    fn duplicates_are_capped_and_paths_stay_short() {
        let key = "k".repeat(100_000);
        let mut text = format!("{{\"{key}\": {{");
        for i in 0..3000 {
            text.push_str(&format!("\"a\": {i},"));
        }
        text.push_str("\"a\": 0}}");
        let (_, problems) = read(text.as_bytes()).unwrap();
        assert_eq!(problems.len(), MAX_PROBLEMS + 1);
        assert!(
            problems.iter().all(|p| p.path.len() < 100),
            "{}",
            problems[0].path
        );
        assert!(
            problems[0].path.ends_with("...\"].a"),
            "{}",
            problems[0].path
        );
    }
}
