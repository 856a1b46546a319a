//! The integration tests of the `acikit` crate, built as ONE test binary (`--test it`):
//! linking the crate and its dependencies once instead of once per file is most of the
//! test build time. Each module is one group of tests; select a group with its module
//! name, e.g. `cargo test -p acikit --test it -- store_ops::`. Helpers shared by the
//! groups live in [`common`].

mod common;

mod archive_matrix;
mod build;
mod cancel;
mod discovery;
mod fetch;
mod hostile;
mod layers;
mod output;
mod read_only;
mod recompress;
mod render_cancel;
mod render_composefs;
mod render_deps;
mod render_run;
mod render_tree;
mod render_verify;
mod serve;
mod serve_range;
mod sign;
mod store_dedup;
mod store_ops;
mod store_original;
mod store_roundtrip;
mod store_sparse;
mod surface;
mod tar_reader;
mod trust;
