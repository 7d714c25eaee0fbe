//! Progress of long work (eval's modes, bench's rounds): indicatif's bar on a terminal, and a
//! plain line every [`LOG_EVERY`] (and one at the end) when standard error is a file or a pipe,
//! where indicatif draws nothing and a run under nohup or CI would be silent for minutes.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a redirected run prints its progress.
const LOG_EVERY: Duration = Duration::from_secs(30);

/// A progress bar of `len` steps.
pub struct Progress {
    bar: ProgressBar,
    /// What the work is, at the start of each printed line.
    label: String,
    /// When the last line was printed; None on a terminal (the bar draws itself).
    logged: Option<Mutex<Instant>>,
}

impl Progress {
    /// A bar drawn with indicatif's `template` (see `ProgressStyle::with_template`), showing
    /// `message` (also the label of the lines printed when redirected).
    pub fn new(len: usize, template: &str, message: impl Into<String>) -> Self {
        let bar = ProgressBar::new(len as u64);
        bar.set_style(
            ProgressStyle::with_template(template)
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let label = message.into();
        bar.set_message(label.clone());
        let logged = (!std::io::stderr().is_terminal()).then(|| Mutex::new(Instant::now()));
        Progress { bar, label, logged }
    }

    /// Advances by `n` steps.
    pub fn inc(&self, n: u64) {
        self.bar.inc(n);
        if let Some(last) = &self.logged {
            let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
            if last.elapsed() >= LOG_EVERY {
                *last = Instant::now();
                self.log("");
            }
        }
    }

    /// Shows `message` beside the bar (and in the next line, when redirected).
    pub fn set_message(&self, message: impl Into<String>) {
        self.bar.set_message(message.into());
    }

    /// Runs `f` with the bar hidden (for output of its own).
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Removes the bar; when redirected, prints the final count and time.
    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
        if self.logged.is_some() {
            self.log(" done");
        }
    }

    fn log(&self, tail: &str) {
        let (pos, len) = (self.bar.position(), self.bar.length().unwrap_or(0));
        let secs = self.bar.elapsed().as_secs_f64();
        let eta = match pos {
            0 => String::new(),
            _ if pos >= len => String::new(),
            _ => format!(", eta {:.0} s", secs / pos as f64 * (len - pos) as f64),
        };
        let now = self.bar.message();
        let now = match now == self.label || tail == " done" {
            true => String::new(),
            false => format!(", at {now}"),
        };
        eprintln!("{} {pos}/{len} ({secs:.0} s{eta}{now}){tail}", self.label);
    }
}
