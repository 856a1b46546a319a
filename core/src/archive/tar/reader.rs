//! STUB: being written.
/// STUB
pub struct TarReader;
