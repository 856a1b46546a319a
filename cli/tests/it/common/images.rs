//! Image contents for the CLI tests: manifests and pseudo-random file data.

/// `len` pseudo-random bytes from a seeded xorshift generator.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A valid manifest of the image `name` at `version` (linux/amd64).
pub fn manifest_for(name: &str, version: &str) -> String {
    format!(
        r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{name}","labels":[{{"name":"version","value":"{version}"}},{{"name":"os","value":"linux"}},{{"name":"arch","value":"amd64"}}]}}"#
    )
}
