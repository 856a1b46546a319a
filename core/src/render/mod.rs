//! Rendering images into root filesystems (being written).
