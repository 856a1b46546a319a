//! The whole life of an image on loopback: build two images (an app and the base it
//! depends on), sign them with a fresh OpenPGP key, push them to an HTTPS image
//! repository served from an exploded store, then, as a user with an empty store,
//! discover and fetch the app by name (signatures verified, the dependency fetched
//! too), render it with its dependency into a clean rootfs, export it and check that
//! the exported tar hashes to the image ID.
//!
//! Run with `cargo run --release --example repository`. Everything lives in a temporary
//! folder (both stores use the embedded SQLite index).

use std::net::SocketAddr;
use std::path::Path;

use acikit::Store;
use acikit::build::{BuildCompression, Builder};
use acikit::discovery::host_os_arch;
use acikit::fetch::{FetchOptions, FetchSource, Fetched};
use acikit::net::{CaCert, HttpClient, NetOptions};
use acikit::progress::Observer;
use acikit::render::RenderOptions;
use acikit::serve::{ServeOptions, Server, TlsFiles, push_file};
use acikit::store::ExportCompression;
use acikit::trust::{TrustScope, sign_detached};
use sha2::{Digest, Sha512};

const PREFIX: &str = "localhost/acikit-demo";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let work = dir.path();
    let (os, arch) = host_os_arch();

    // 1. Build: two layouts to reproducible images.
    let base = layout(work, "base", &manifest("base", os, arch, None))?;
    let app = layout(
        work,
        "app",
        &manifest("app", os, arch, Some(&format!("{PREFIX}/base"))),
    )?;
    std::fs::write(base.join("rootfs/etc/motd"), "built by acikit\n")?;
    std::fs::create_dir_all(app.join("rootfs/bin"))?;
    std::fs::write(app.join("rootfs/bin/hello"), "#!/bin/sh\ncat /etc/motd\n")?;
    let builder = Builder::new().compression(BuildCompression::Gzip);
    let mut images = Vec::new();
    for (name, layout) in [("base", &base), ("app", &app)] {
        let out = work.join(format!("{name}.aci"));
        let built = builder.build(layout, &out, Observer::default()).await?;
        println!(
            "built   {name}.aci  {} ({} bytes)",
            built.image_id, built.size
        );
        images.push((out, built.image_id));
    }

    // 2. Sign: a fresh Ed25519 key, an ascii-armored detached signature per image.
    let (secret, public) = new_key()?;
    let mut signatures = Vec::new();
    for (aci, _) in &images {
        signatures.push(sign_detached(
            secret.as_bytes(),
            None,
            std::fs::File::open(aci)?,
        )?);
    }
    println!("signed  both with a new Ed25519 key");

    // 3. Serve: an HTTPS repository over its own store, which accepts only pushes signed
    //    by a key it trusts for the name.
    let (ca_pem, tls) = tls_files(work)?;
    let server_store = Store::open(work.join("server-store")).await?;
    server_store
        .trust()?
        .add(public.as_bytes(), TrustScope::prefix(PREFIX)?)?;
    let mut options = ServeOptions::new(SocketAddr::from(([127, 0, 0, 1], 0)));
    options.tls = Some(tls);
    options.push_token = Some("demo-token".into());
    options.require_signature = true;
    let server = Server::new(server_store, options).start().await?;
    let port = server.local_addr().port();
    let mut net = NetOptions::default();
    net.ca_certs = vec![CaCert::Pem(ca_pem.into_bytes())];
    net.port = Some(port);
    let client = HttpClient::new(net.clone())?;
    for ((aci, _), signature) in images.iter().zip(&signatures) {
        let pushed = push_file(
            &client,
            &format!("https://localhost:{port}"),
            aci,
            Some(signature),
            "demo-token",
            Observer::default(),
        )
        .await?;
        let key = pushed.verified_by.as_deref().unwrap_or("not checked");
        println!(
            "pushed  {} (signature verified by the server: {key})",
            pushed.name
        );
    }

    // 4. Fetch: a user's empty store, trusting the key for the prefix, fetches the app by
    //    name through meta discovery; the base comes along as its dependency.
    let store = Store::open(work.join("store")).await?;
    store
        .trust()?
        .add(public.as_bytes(), TrustScope::prefix(PREFIX)?)?;
    let fetched = store
        .fetch(
            FetchSource::parse(&format!("{PREFIX}/app:1.0.0"), &[])?,
            FetchOptions::default().net(net),
            Observer::default(),
        )
        .await?;
    print_fetched(&fetched, 0);
    assert_eq!(fetched.image_id, images[1].1, "the app we built");
    assert_eq!(fetched.dependencies[0].image_id, images[0].1, "its base");

    // 5. Render: the app over its dependency, a clean rootfs for one run.
    let run = work.join("run");
    let rendered = store
        .render(
            &fetched.image_id,
            &run,
            RenderOptions::default(),
            Observer::default(),
        )
        .await?;
    let motd = std::fs::read_to_string(run.join("etc/motd"))?;
    println!(
        "render  {} with {:?}: /bin/hello + /etc/motd ({:?})",
        run.display(),
        rendered.strategy,
        motd.trim()
    );
    assert!(run.join("bin/hello").exists());
    store.release(&run).await?;

    // 6. Export: the exact tar again, from the exploded store; its SHA-512 is the ID.
    let tar = work.join("app.tar");
    store
        .export_to(
            &fetched.image_id,
            &tar,
            ExportCompression::None,
            Observer::default(),
        )
        .await?;
    let digest = Sha512::digest(std::fs::read(&tar)?);
    let id = format!("sha512-{}", hex::encode(digest));
    assert_eq!(id, fetched.image_id.as_str());
    println!("export  app.tar hashes to {id}: the image ID");
    server.shutdown(std::time::Duration::from_secs(1));
    Ok(())
}

fn manifest(name: &str, os: &str, arch: &str, dependency: Option<&str>) -> String {
    let deps = dependency.map_or(String::new(), |d| {
        format!(
            r#","dependencies":[{{"imageName":"{d}","labels":[{{"name":"version","value":"1.0.0"}}]}}]"#
        )
    });
    format!(
        r#"{{"acKind":"ImageManifest","acVersion":"0.8.11","name":"{PREFIX}/{name}","labels":[{{"name":"version","value":"1.0.0"}},{{"name":"os","value":"{os}"}},{{"name":"arch","value":"{arch}"}}]{deps}}}"#
    )
}

fn layout(work: &Path, name: &str, manifest: &str) -> std::io::Result<std::path::PathBuf> {
    let dir = work.join(name);
    std::fs::create_dir_all(dir.join("rootfs/etc"))?;
    std::fs::write(dir.join("manifest"), manifest)?;
    Ok(dir)
}

/// A new Ed25519 signing key: (armored secret key, armored public key).
fn new_key() -> Result<(String, String), Box<dyn std::error::Error>> {
    use pgp::composed::{KeyType, SecretKeyParamsBuilder};
    let params = SecretKeyParamsBuilder::default()
        .key_type(KeyType::Ed25519Legacy)
        .can_certify(true)
        .can_sign(true)
        .primary_user_id("acikit demo <demo@localhost>".into())
        .build()?;
    let secret = params.generate(rand::thread_rng())?;
    let public = secret.to_public_key();
    Ok((
        secret.to_armored_string(None.into())?,
        public.to_armored_string(None.into())?,
    ))
}

/// A throw-away CA and a certificate for `localhost` it signed: (CA PEM, server files).
fn tls_files(work: &Path) -> Result<(String, TlsFiles), Box<dyn std::error::Error>> {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])?
        .signed_by(&leaf_key, &issuer)?;
    let files = TlsFiles::new(work.join("server.pem"), work.join("server.key"));
    std::fs::write(&files.cert, leaf.pem())?;
    std::fs::write(&files.key, leaf_key.serialize_pem())?;
    Ok((ca_cert.pem(), files))
}

fn print_fetched(fetched: &Fetched, depth: usize) {
    let signer = fetched
        .signature
        .as_ref()
        .map_or("unsigned".to_string(), |s| {
            format!("signed by {}", s.fingerprint)
        });
    println!(
        "fetch   {:indent$}{} {} ({:?}, {signer})",
        "",
        fetched.name,
        fetched.image_id,
        fetched.outcome,
        indent = depth * 2
    );
    for dep in &fetched.dependencies {
        print_fetched(dep, depth + 1);
    }
}
