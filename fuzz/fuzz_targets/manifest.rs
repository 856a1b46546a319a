//! Feeds arbitrary bytes to `ImageManifest::parse`.
//!
//! Properties checked when it parses:
//! - `raw()` keeps the input byte for byte;
//! - a parsed manifest has no validation problems (parse refuses what validate would flag);
//! - its serialization (`to_json_bytes`) parses again, without problems.
//!
//! An error is a fine outcome; a panic is a bug.
#![no_main]

use acikit::schema::ImageManifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(manifest) = ImageManifest::parse(data) else {
        return;
    };
    assert!(manifest.raw() == data, "raw() is the input");
    let problems = manifest.validate();
    assert!(
        problems.is_empty(),
        "a parsed manifest has problems: {problems:?}"
    );

    let json = manifest.to_json_bytes();
    if let Err(e) = ImageManifest::parse(&json) {
        panic!(
            "the serialization of a parsed manifest does not parse: {e}\n{}",
            String::from_utf8_lossy(&json)
        );
    }
    // Not checked: that serializing it again gives `json` byte for byte. It does not for numbers
    // that f64 cannot hold exactly in unknown fields (serde_json parses them to within an ulp
    // without its `float_roundtrip` feature): see docs/FUZZING.md.
});
