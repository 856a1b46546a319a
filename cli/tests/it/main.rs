//! The integration tests of the `acikit` binary (package `acikit-cli`), built as ONE test
//! binary (`--test it`): linking it once instead of once per file is most of the test
//! build time. Each module is one group of tests; select a group with its module name,
//! e.g. `cargo test -p acikit-cli --test it -- store_cli::`. Helpers shared by the groups
//! live in [`common`].

mod common;

mod ambiguous_cli;
mod build_cli;
mod cli;
mod discover_cli;
mod fetch_cli;
mod import_cancel_cli;
mod original_cli;
mod output_cli;
mod postgres_cli;
mod read_only_cli;
mod render_cancel_cli;
mod render_cli;
mod serve_cli;
mod store_cli;
mod trust_cli;
