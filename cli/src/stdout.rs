//! Everything the CLI prints goes through here, so that no write error panics (`println!`
//! panics when stdout is a closed pipe: Rust ignores SIGPIPE, so a write gets EPIPE):
//! - a broken pipe on stdout ends the process quietly with status 141, what a shell reports
//!   for a process SIGPIPE killed (`acikit list | head -1`);
//! - any other write error on stdout (e.g. stdout is `/dev/full`) prints
//!   `error: io: writing to stdout: ...` on stderr and exits 1;
//! - a write error on stderr is ignored: there is nowhere left to report it.
//!
//! SIGPIPE keeps Rust's ignored disposition: a closed pipe the core writes to (an export
//! to a FIFO, the copy a build reads back) is an error, never a silent death that would
//! skip the clean-up.

use std::io::{IsTerminal, Write};
use std::os::fd::AsFd;
use std::process::ExitCode;

/// The status of a command whose stdout was closed under it (128 + SIGPIPE).
pub const BROKEN_PIPE_STATUS: u8 = 141;

/// Prints a line on stdout through [`write_out`].
macro_rules! outln {
    () => {
        $crate::stdout::write_out(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::stdout::write_out(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Prints a line on stderr, ignoring write errors.
macro_rules! errln {
    ($($arg:tt)*) => {
        $crate::stdout::write_err(format_args!("{}\n", format_args!($($arg)*)))
    };
}

/// Writes on stdout; a write error ends the process (see the module documentation).
pub fn write_out(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        stdout_failed(&e);
    }
}

/// Writes bytes on stdout and flushes; a write error ends the process.
pub fn write_bytes(bytes: &[u8]) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_all(bytes).and_then(|()| out.flush()) {
        stdout_failed(&e);
    }
}

/// Writes on stderr, ignoring errors.
pub fn write_err(args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_fmt(args);
}

/// Flushes stdout at the end of a command; a write error ends the process.
pub fn finish() {
    if let Err(e) = std::io::stdout().lock().flush() {
        stdout_failed(&e);
    }
}

/// Ends the process after a failed write on stdout: 141 quietly for a broken pipe, else a
/// message and 1.
pub fn stdout_failed(err: &std::io::Error) -> ! {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        std::process::exit(i32::from(BROKEN_PIPE_STATUS));
    }
    write_err(format_args!("error: io: writing to stdout: {err}\n"));
    std::process::exit(1);
}

/// Whether a core error comes from a broken pipe (the reader of our output went away).
pub fn is_broken_pipe(err: &acikit::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return true;
        }
        source = e.source();
    }
    false
}

/// Stdout as a file of its own (a duplicate of descriptor 1), for streaming binary output
/// (`OUT` given as `-`) past the line buffer of [`std::io::Stdout`]. Refused when stdout is a
/// terminal, as tar and gzip refuse to write an archive there.
pub fn binary_stdout() -> acikit::Result<std::fs::File> {
    let stdout = std::io::stdout();
    if stdout.is_terminal() {
        return Err(acikit::Error::new(
            acikit::ErrorKind::InvalidArgument,
            "refusing to write an archive to a terminal: redirect stdout, or give a file",
        ));
    }
    // Whatever was printed before goes first.
    finish();
    let fd = stdout
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| acikit::Error::io("duplicating stdout", e))?;
    Ok(std::fs::File::from(fd))
}

/// The exit of a command whose stream to stdout failed: 141 quietly for a broken pipe,
/// else the error printed and 1.
pub fn stream_failed(err: &acikit::Error) -> ExitCode {
    if is_broken_pipe(err) {
        return ExitCode::from(BROKEN_PIPE_STATUS);
    }
    errln!("error: {err}");
    ExitCode::from(1)
}
