//! `uniffi-bindgen`: generates the Kotlin and Swift sources of `acikit-uniffi` from its
//! built library (library mode), with the uniffi version the library is built with.
//!
//! ```text
//! cargo run -p uniffi-bindgen -- generate --library target/debug/libacikit_uniffi.so \
//!     --language kotlin --language swift --out-dir target/bindings
//! ```

fn main() {
    uniffi::uniffi_bindgen_main()
}
