//! A progress bar on stderr for long operations, drawn only when stdout is a terminal.

use std::io::IsTerminal;
use std::sync::Arc;

use acikit::progress::{Observer, Phase, Progress};
use indicatif::{ProgressBar, ProgressStyle};

/// An observer that draws a bar (or nothing when stdout is not a terminal), and the bar.
pub fn observer(label: &str) -> (Observer, Option<ProgressBar>) {
    if !std::io::stdout().is_terminal() {
        return (Observer::default(), None);
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg:12} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    bar.set_message(label.to_string());
    let drawn = bar.clone();
    let progress = Arc::new(move |p: Progress| {
        if let Some(total) = p.total {
            drawn.set_length(total);
        }
        drawn.set_position(p.done);
        match p.phase {
            Phase::Commit => drawn.set_message("committing"),
            Phase::Download => drawn.set_message("downloading"),
            _ => {}
        }
    });
    (
        Observer {
            progress: Some(progress),
            ..Observer::default()
        },
        Some(bar),
    )
}

/// An observer for `render`, whose phases count entries: a bar per phase ("checkout" while
/// the cached tree is built, then "render" while the run is made), or nothing when stdout
/// is not a terminal.
pub fn render_observer() -> (Observer, Option<ProgressBar>) {
    if !std::io::stdout().is_terminal() {
        return (Observer::default(), None);
    }
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{msg:12} [{bar:30}] {pos}/{len} entries {eta}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_message("rendering");
    let drawn = bar.clone();
    let progress = Arc::new(move |p: Progress| {
        match p.phase {
            Phase::Checkout => drawn.set_message("checkout"),
            Phase::Render => drawn.set_message("render"),
            _ => {}
        }
        if let Some(total) = p.total {
            drawn.set_length(total);
        }
        drawn.set_position(p.done);
    });
    (
        Observer {
            progress: Some(progress),
            ..Observer::default()
        },
        Some(bar),
    )
}
