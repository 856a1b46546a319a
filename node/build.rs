//! Links the addon against the N-API symbols node provides at load time.

fn main() {
    napi_build::setup();
}
