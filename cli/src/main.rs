//! The `acikit` command line (STUB).
fn main() {}
