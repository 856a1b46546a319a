//! Rendering images into root filesystems (being written).
pub mod deps;
pub mod fsops;
pub mod run;
pub mod stack;
pub mod tree;
