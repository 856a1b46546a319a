//! `discover`: print the image, signature and key URLs meta discovery finds for a name.

use std::path::Path;
use std::process::ExitCode;

use acikit::discovery::{self, DiscoveryOptions};
use acikit::net::HttpClient;
use acikit::progress::Observer;
use acikit::store::ImageQuery;
use acikit::{Error, ErrorKind, Label};

use super::net::NetArgs;
use super::store::fail;

/// `acikit discover NAME[:VERSION] [--label K=V]... [--json]`
///
/// Text output, as `actool discover`: one `ACI: URL, ASC: URL` line per endpoint in
/// order, then one `Keys: URL` line per key URL.
pub async fn discover(
    store_dir: &Path,
    image: &str,
    labels: &[Label],
    net: &NetArgs,
    json: bool,
) -> ExitCode {
    let image_name = match ImageQuery::parse(image, labels) {
        Ok(ImageQuery::Name(image_name)) => image_name,
        Ok(ImageQuery::Id(_)) => {
            return fail(&Error::new(
                ErrorKind::InvalidArgument,
                format!("discover takes an image name, not an image ID: {image}"),
            ));
        }
        Err(err) => return fail(&err),
    };
    let client = match net.net_options(store_dir).and_then(HttpClient::new) {
        Ok(client) => client,
        Err(err) => return fail(&err),
    };
    let options = DiscoveryOptions::default();
    match discovery::discover(&client, &image_name, &options, Observer::default()).await {
        Ok(found) => {
            if json {
                crate::report::print_json(&found);
            } else {
                for endpoint in &found.aci_endpoints {
                    outln!("ACI: {}, ASC: {}", endpoint.aci, endpoint.asc);
                }
                for key in &found.pubkeys {
                    outln!("Keys: {key}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(err) => fail(&err),
    }
}
