//! The `acikit` command line: a thin layer over the `acikit` crate.
//!
//! Each subcommand lives in [`commands`]; [`report`] prints results as text or JSON.

mod commands;
mod report;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// Tools for App Container Images (appc ACIs).
#[derive(Parser)]
#[command(name = "acikit", version, about)]
struct Cli {
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
        acikit::archive::Limits {
            max_manifest_size: self.max_manifest_size,
            max_total_size: self.max_total_size,
            max_entries: self.max_entries,
            ..Default::default()
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        match cli.command {
            Command::Validate { files, opts } => commands::validate(&files, &opts).await,
            Command::Id { file, opts } => commands::id(&file, &opts).await,
            Command::Manifest { file, opts } => commands::manifest(&file, &opts).await,
        }
    })
}
