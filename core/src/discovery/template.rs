//! Rendering `ac-discovery` URL templates: plain `{var}` replacement, as the reference
//! does (strict RFC 6570 would escape the `/` of names).
//!
//! Variables are `{name}`, `{ext}` (`aci` for the image, `aci.asc` for its signature) and
//! every label (`{version}`, `{os}`, `{arch}`, or any other). A template that uses a
//! variable we have no value for is dropped, as is one without `{ext}` (the spec requires
//! it: without it the image and signature URLs would be the same). The text is scanned
//! once, so a `{` inside a value is never expanded again.

use std::collections::BTreeMap;

/// The image and signature URLs one template gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The image URL (`{ext}` = `aci`).
    pub aci: String,
    /// The signature URL (`{ext}` = `aci.asc`).
    pub asc: String,
}

/// Renders `template` with `vars` (which must not hold `ext`). `None` when the template
/// has no `{ext}` or uses a variable missing from `vars`.
pub fn render(template: &str, vars: &BTreeMap<String, String>) -> Option<Rendered> {
    let aci = render_one(template, vars, "aci")?;
    let asc = render_one(template, vars, "aci.asc")?;
    if aci == asc {
        return None;
    }
    Some(Rendered { aci, asc })
}

/// The variable names `template` uses, in order (repeats kept).
pub fn variables(template: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        match after.find('}') {
            Some(close) => {
                out.push(&after[..close]);
                rest = &after[close + 1..];
            }
            None => break,
        }
    }
    out
}

fn render_one(template: &str, vars: &BTreeMap<String, String>, ext: &str) -> Option<String> {
    let mut out = String::with_capacity(template.len() + 64);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            // A `{` that is never closed is not a variable.
            out.push_str(&rest[open..]);
            return Some(out);
        };
        let name = &after[..close];
        let value = if name == "ext" {
            ext
        } else {
            vars.get(name)?.as_str()
        };
        out.push_str(value);
        rest = &after[close + 1..];
    }
    out.push_str(rest);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn renders_the_spec_example() {
        let v = vars(&[
            ("name", "example.com/reduce-worker"),
            ("version", "1.0.0"),
            ("os", "linux"),
            ("arch", "amd64"),
        ]);
        let r = render(
            "https://storage.example.com/{os}/{arch}/{name}-{version}.{ext}",
            &v,
        )
        .unwrap();
        assert_eq!(
            r.aci,
            "https://storage.example.com/linux/amd64/example.com/reduce-worker-1.0.0.aci"
        );
        assert_eq!(
            r.asc,
            "https://storage.example.com/linux/amd64/example.com/reduce-worker-1.0.0.aci.asc"
        );
    }

    #[test]
    fn any_label_is_a_variable_and_repeats_work() {
        let v = vars(&[("name", "n"), ("channel", "beta")]);
        let r = render("https://h/{channel}/{name}/{name}.{ext}?c={channel}", &v).unwrap();
        assert_eq!(r.aci, "https://h/beta/n/n.aci?c=beta");
    }

    #[test]
    fn missing_variable_or_ext_drops_the_template() {
        let v = vars(&[("name", "n"), ("version", "1")]);
        assert_eq!(render("https://h/{name}-{os}.{ext}", &v), None);
        assert_eq!(render("https://h/{name}-{version}.aci", &v), None);
        assert_eq!(render("https://h/{}/{name}.{ext}", &v), None);
    }

    #[test]
    fn values_are_not_expanded_twice_and_lone_braces_stay() {
        let v = vars(&[("name", "{version}"), ("version", "1")]);
        let r = render("https://h/{name}.{ext}#{", &v).unwrap();
        assert_eq!(r.aci, "https://h/{version}.aci#{");
    }

    #[test]
    fn lists_variables() {
        assert_eq!(
            variables("https://{a}/{b}{c}/{a}.{ext}{"),
            vec!["a", "b", "c", "a", "ext"]
        );
    }
}
