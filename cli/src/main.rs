//! The `acikit` command line: a thin layer over the `acikit` crate.
//!
//! Each subcommand lives in [`commands`]; [`report`] prints results as text or JSON, and
//! every print goes through [`stdout`], so that no write error panics.

#[macro_use]
mod stdout;
mod commands;
mod report;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Tools for App Container Images (appc ACIs).
#[derive(Parser)]
#[command(name = "acikit", version, about)]
struct Cli {
    /// The image store folder (default: $ACIKIT_STORE, else the user's data folder).
    #[arg(long, global = true, value_name = "DIR")]
    store: Option<std::path::PathBuf>,
    /// The store's index in PostgreSQL (postgres://USER[:PASSWORD]@HOST[:PORT]/DB), for a
    /// store that several servers share. Needed when the store is created; later the
    /// store remembers it (password from PGPASSWORD or ~/.pgpass). Default: SQLite.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "ACIKIT_DATABASE",
        hide_env_values = true
    )]
    database: Option<String>,
    /// Open the store read-only: reads work and write nothing into it, writes (import, rm,
    /// gc, fsck --repair, trust add/rm, fetch, pushes) fail with read_only_store. A store
    /// on a read-only mount or in a folder this user cannot write is read-only anyway.
    #[arg(
        long,
        global = true,
        env = "ACIKIT_READ_ONLY",
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    read_only: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check image archives: layout, every tar member, manifest. Exit 0 only if all are valid.
    Validate {
        /// Image archives (any compression).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        #[command(flatten)]
        opts: CommonOpts,
    },
    /// Print the image ID (sha512 of the uncompressed tar) of a valid image archive.
    Id {
        /// Image archive.
        file: std::path::PathBuf,
        #[command(flatten)]
        opts: CommonOpts,
    },
    /// Print the manifest of a valid image archive, byte for byte as stored.
    Manifest {
        /// Image archive.
        file: std::path::PathBuf,
        #[command(flatten)]
        opts: CommonOpts,
    },
    /// Import image archives into the store (validated, de-duplicated, one pass each).
    Import {
        /// Image archives (any compression).
        #[arg(required = true)]
        files: Vec<std::path::PathBuf>,
        /// Also record the archives' original form, so that `export --compression original`
        /// gives their exact compressed bytes back: a compressed archive is kept whole until
        /// `gc` turns it into a correction record or encoder parameters (fetch and push always
        /// record).
        #[arg(long)]
        original: bool,
        #[command(flatten)]
        opts: CommonOpts,
    },
    /// Regenerate an image's exact tar from the store, checked against its image ID.
    Export {
        /// Image ID, unambiguous ID prefix, or NAME[:VERSION].
        image: String,
        /// Output file (replaced atomically), FIFO or character device (written in place),
        /// or `-` for stdout.
        out: std::path::PathBuf,
        /// Compression of the output.
        #[arg(long, value_enum, default_value = "none")]
        compression: commands::ExportCompressionArg,
        /// Labels the image must have (with a name).
        #[arg(long = "label", value_name = "K=V", value_parser = commands::parse_label)]
        labels: Vec<acikit::Label>,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// List the images in the store.
    List {
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Remove images from the store (and the objects no other image uses).
    Rm {
        /// Image IDs, unambiguous ID prefixes, or NAME[:VERSION].
        #[arg(required = true)]
        images: Vec<String>,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Remove objects and recipes no image references, and leftovers of killed imports;
    /// compact the originals kept whole until now (see `import --original`).
    Gc {
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Re-hash every object and regenerate every image to check its ID.
    Fsck {
        /// Drop broken images and corrupt objects.
        #[arg(long)]
        repair: bool,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Render an image (with its dependencies and pathWhitelist) into a clean rootfs at DIR.
    Render {
        /// Image ID, unambiguous ID prefix, or NAME[:VERSION].
        image: String,
        /// Where the run's rootfs goes (missing or an empty folder).
        dir: std::path::PathBuf,
        /// How the per-run copy is made.
        #[arg(long, value_enum, default_value = "auto")]
        strategy: commands::StrategyArg,
        /// Labels the image must have (with a name).
        #[arg(long = "label", value_name = "K=V", value_parser = commands::parse_label)]
        labels: Vec<acikit::Label>,
        /// Skip device nodes and foreign owners that need root, with a warning.
        #[arg(long)]
        skip_unprivileged: bool,
        /// Allow a hardlink run that cannot be protected by a read-only mount (without
        /// root): it shares its files with the store's cache, so it must only be read.
        #[arg(long)]
        unprotected_read_only: bool,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Undo a render: unmount or remove the run's rootfs at DIR.
    Release {
        /// The rendered rootfs.
        dir: std::path::PathBuf,
    },
    /// Find an image's URLs by appc meta discovery (https://NAME?ac-discovery=1 and parents).
    Discover {
        /// Image name, e.g. example.com/app or example.com/app:1.0.0.
        image: String,
        /// Labels to render the templates with (os and arch default to this host,
        /// version to `latest`).
        #[arg(long = "label", value_name = "K=V", value_parser = commands::parse_label)]
        labels: Vec<acikit::Label>,
        #[command(flatten)]
        net: commands::NetArgs,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Fetch an image by name (meta discovery), URL or file:// path into the store, its
    /// signature verified against the trusted keys, then its dependencies.
    Fetch {
        /// NAME[:VERSION] (e.g. example.com/app:1.0.0), or an image URL.
        image: String,
        /// Labels to discover and check (os and arch default to this host, version to
        /// `latest`).
        #[arg(long = "label", value_name = "K=V", value_parser = commands::parse_label)]
        labels: Vec<acikit::Label>,
        /// The signature URL, when fetching a URL whose signature is not at URL.asc.
        #[arg(long, value_name = "URL")]
        signature: Option<String>,
        /// Fetch the keys discovery lists (ac-discovery-pubkeys) and trust them for the
        /// image's name, printing their fingerprints.
        #[arg(long)]
        trust_keys_from_discovery: bool,
        /// Most bytes downloaded per image.
        #[arg(long, value_name = "BYTES")]
        max_size: Option<u64>,
        /// Do not fetch dependencies.
        #[arg(long)]
        no_dependencies: bool,
        #[command(flatten)]
        net: commands::NetArgs,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Build an image layout (DIR/manifest + DIR/rootfs) into a reproducible image archive:
    /// the same folder always gives the same bytes.
    Build {
        /// The image layout folder.
        dir: std::path::PathBuf,
        /// The archive to write (replaced atomically if it exists; a FIFO or character
        /// device is written in place; `-` is stdout).
        out: std::path::PathBuf,
        /// Compression of the output.
        #[arg(long, value_enum, default_value = "gzip")]
        compression: commands::CompressionArg,
        /// Clamp every mtime newer than this to it; older mtimes are kept (seconds since the
        /// epoch). Without it, a set SOURCE_DATE_EPOCH (digits only, as `date +%s` prints;
        /// anything else is an error) is the clamp; --mtime wins over the variable.
        #[arg(long, value_name = "SECONDS", allow_negative_numbers = true)]
        mtime: Option<i64>,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Sign a file (an image archive) with an OpenPGP secret key: an ascii-armored detached
    /// signature, FILE.asc unless -o says otherwise.
    Sign {
        /// The file to sign.
        file: std::path::PathBuf,
        /// The ascii-armored secret key (gpg --armor --export-secret-keys).
        #[arg(long, value_name = "SECRETKEY")]
        key: std::path::PathBuf,
        /// A file whose first line is the key's passphrase.
        #[arg(long, value_name = "FILE")]
        passphrase_file: Option<std::path::PathBuf>,
        /// Where the signature goes (default: FILE.asc; `-` is stdout).
        #[arg(short = 'o', long = "output", value_name = "OUT")]
        output: Option<std::path::PathBuf>,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Sizes: logical, on disk, de-duplication ratio.
    Stats {
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Serve the store as an HTTP(S) image repository (discovery, images, signatures,
    /// keys, a JSON API, pushes) until SIGINT or SIGTERM.
    Serve(commands::serve::ServeArgs),
    /// Push an ACI (and its signature) into a server's store.
    Push {
        /// The image archive, sent as it is.
        file: std::path::PathBuf,
        /// Its ascii-armored detached signature (default: none).
        #[arg(long, value_name = "FILE")]
        signature: Option<std::path::PathBuf>,
        /// The server's base URL (https://HOST[:PORT]).
        #[arg(long, value_name = "URL")]
        to: String,
        /// The server's push token.
        #[arg(long, value_name = "TOKEN")]
        token: String,
        #[command(flatten)]
        net: commands::NetArgs,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Manage the OpenPGP keys trusted to sign images (for all names or a name prefix).
    #[command(subcommand)]
    Trust(TrustCommand),
}

#[derive(Subcommand)]
enum TrustCommand {
    /// Trust an ascii-armored public key for a name prefix (--prefix) or all names (--root).
    #[command(group = clap::ArgGroup::new("scope").required(true).args(["prefix", "root"]))]
    Add {
        /// Trust the key for this name prefix and the names below it (e.g. example.com/app).
        #[arg(long, value_name = "PREFIX")]
        prefix: Option<String>,
        /// Trust the key for every name.
        #[arg(long)]
        root: bool,
        /// The ascii-armored public key (gpg --armor --export).
        keyfile: std::path::PathBuf,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// List the trusted keys.
    List {
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a key, in every scope (full fingerprint or long key ID).
    Rm {
        /// The key's fingerprint or long key ID.
        fingerprint: String,
        /// Machine-readable output (JSON).
        #[arg(long)]
        json: bool,
    },
}

/// Options every archive-reading command takes.
#[derive(Args, Clone)]
struct CommonOpts {
    /// Machine-readable output (JSON).
    #[arg(long)]
    json: bool,
    /// Largest manifest accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = acikit::archive::Limits::default().max_manifest_size)]
    max_manifest_size: u64,
    /// Largest uncompressed archive accepted, in bytes.
    #[arg(long, value_name = "BYTES", default_value_t = acikit::archive::Limits::default().max_total_size)]
    max_total_size: u64,
    /// Most tar members accepted.
    #[arg(long, value_name = "N", default_value_t = acikit::archive::Limits::default().max_entries)]
    max_entries: u64,
}

impl CommonOpts {
    fn limits(&self) -> acikit::archive::Limits {
        let mut limits = acikit::archive::Limits::default();
        limits.max_manifest_size = self.max_manifest_size;
        limits.max_total_size = self.max_total_size;
        limits.max_entries = self.max_entries;
        limits
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version go to stdout: a write error there is handled like any other.
            if let Err(e) = err.print()
                && !err.use_stderr()
            {
                stdout::stdout_failed(&e);
            }
            std::process::exit(err.exit_code());
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let store_dir = cli.store.unwrap_or_else(acikit::Store::default_dir);
    commands::store::set_database_url(cli.database);
    commands::store::set_read_only(cli.read_only);
    let code = runtime.block_on(async {
        match cli.command {
            Command::Validate { files, opts } => commands::validate(&files, &opts).await,
            Command::Id { file, opts } => commands::id(&file, &opts).await,
            Command::Manifest { file, opts } => commands::manifest(&file, &opts).await,
            Command::Import {
                files,
                original,
                opts,
            } => commands::import(&store_dir, &files, &opts, original).await,
            Command::Export {
                image,
                out,
                compression,
                labels,
                json,
            } => commands::export(&store_dir, &image, &labels, &out, compression, json).await,
            Command::List { json } => commands::list(&store_dir, json).await,
            Command::Rm { images, json } => commands::rm(&store_dir, &images, json).await,
            Command::Gc { json } => commands::gc(&store_dir, json).await,
            Command::Fsck { repair, json } => commands::fsck(&store_dir, repair, json).await,
            Command::Build {
                dir,
                out,
                compression,
                mtime,
                json,
            } => commands::build(&store_dir, &dir, &out, compression, mtime, json).await,
            Command::Sign {
                file,
                key,
                passphrase_file,
                output,
                json,
            } => {
                commands::sign(
                    &store_dir,
                    &file,
                    &key,
                    passphrase_file.as_deref(),
                    output.as_deref(),
                    json,
                )
                .await
            }
            Command::Stats { json } => commands::stats(&store_dir, json).await,
            Command::Render {
                image,
                dir,
                strategy,
                labels,
                skip_unprivileged,
                unprotected_read_only,
                json,
            } => {
                let flags = commands::RenderFlags {
                    strategy,
                    skip_unprivileged,
                    unprotected_read_only,
                };
                commands::render(&store_dir, &image, &labels, &dir, flags, json).await
            }
            Command::Release { dir } => commands::release(&store_dir, &dir).await,
            Command::Trust(TrustCommand::Add {
                prefix,
                root,
                keyfile,
                json,
            }) => commands::trust::add(&store_dir, prefix.as_deref(), root, &keyfile, json).await,
            Command::Trust(TrustCommand::List { json }) => {
                commands::trust::list(&store_dir, json).await
            }
            Command::Trust(TrustCommand::Rm { fingerprint, json }) => {
                commands::trust::rm(&store_dir, &fingerprint, json).await
            }
            Command::Fetch {
                image,
                labels,
                signature,
                trust_keys_from_discovery,
                max_size,
                no_dependencies,
                net,
                json,
            } => {
                commands::fetch::fetch(
                    &store_dir,
                    commands::fetch::FetchArgs {
                        image: &image,
                        labels: &labels,
                        signature: signature.as_deref(),
                        trust_discovered_keys: trust_keys_from_discovery,
                        max_size,
                        no_dependencies,
                        net: &net,
                        json,
                    },
                )
                .await
            }
            Command::Discover {
                image,
                labels,
                net,
                json,
            } => commands::discover(&store_dir, &image, &labels, &net, json).await,
            Command::Serve(args) => commands::serve::serve(&store_dir, args).await,
            Command::Push {
                file,
                signature,
                to,
                token,
                net,
                json,
            } => {
                commands::serve::push(
                    &store_dir,
                    &file,
                    signature.as_deref(),
                    &to,
                    &token,
                    &net,
                    json,
                )
                .await
            }
        }
    });
    stdout::finish();
    code
}
