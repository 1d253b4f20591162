//! A progress bar on terminals only; in Batch/ECS (no terminal) it is hidden and logs carry progress.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn hidden() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
        }
    }

    /// A bar on stderr when it is a terminal, hidden otherwise.
    pub fn for_stderr() -> Progress {
        if !std::io::stderr().is_terminal() {
            return Self::hidden();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {msg} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
        ) {
            bar.set_style(style);
        }
        Progress { bar }
    }

    /// Starts a new input of `total` bytes (0 if unknown).
    pub fn start(&self, message: &str, total: u64) {
        self.bar.set_message(message.to_string());
        self.bar.set_length(total);
        self.bar.set_position(0);
    }

    pub fn set_bytes(&self, bytes: u64) {
        self.bar.set_position(bytes);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
