//! `uniffi-bindgen`: generates the Kotlin and Swift sources of `acikit-uniffi` from its
//! built library (library mode), with the uniffi version the library is built with.
//!
//! ```text
//! CARGO_TARGET_DIR=target cargo run --manifest-path bindings/uniffi-bindgen/Cargo.toml -- generate --library target/debug/libacikit_uniffi.so \
//!     --language kotlin --language swift --out-dir target/bindings
//! ```

fn main() {
    uniffi::uniffi_bindgen_main()
}
