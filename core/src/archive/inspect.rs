//! STUB: being written.
/// STUB
pub struct Inspection;
/// STUB
pub fn inspect() {}
/// STUB
pub fn inspect_file() {}
