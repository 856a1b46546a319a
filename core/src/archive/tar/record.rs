//! Records of the non-content bytes of a tar stream (STUB: being written).
/// STUB
pub trait RecordSink {}
/// STUB
pub struct NullSink;
/// STUB
pub struct RecordLog;
/// STUB
pub enum Record {}
