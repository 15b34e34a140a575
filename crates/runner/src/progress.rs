//! Progress for long runs: a bar on a terminal, and a log line per step either way, so
//! runs on a remote GPU host show progress in their captured output too.

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
    total: u64,
    what: String,
}

impl Progress {
    pub fn new(what: &str, total: u64) -> Progress {
        let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            ProgressBar::new(total)
        } else {
            ProgressBar::hidden()
        };
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed} {msg}")
                .unwrap()
                .progress_chars("=> "),
        );
        bar.set_prefix(what.to_string());
        Progress { bar, total, what: what.to_string() }
    }

    /// Marks one step done with a short message.
    pub fn step(&self, msg: &str) {
        self.bar.inc(1);
        self.bar.set_message(msg.to_string());
        if self.bar.is_hidden() {
            tracing::info!("{} [{}/{}] {msg}", self.what, self.bar.position(), self.total);
        }
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
