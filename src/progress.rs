//! Progress bars for the long offline and start-up work (log replay), shown
//! only when standard error is a terminal: logs and test harnesses see
//! the final log lines alone.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// A bar for replaying log records, or `None` off a terminal.
pub fn replay_bar() -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "replaying the log {bar:40} {pos}/{len} records ({per_sec}, {eta} left)",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    Some(bar)
}

/// Moves a bar to `done` of `total`.
pub fn advance(bar: Option<&ProgressBar>, done: u64, total: u64) {
    if let Some(bar) = bar {
        bar.set_length(total);
        bar.set_position(done);
    }
}
