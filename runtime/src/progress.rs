//! Progress bars on stderr for training, sampling and evaluation: a line redrawn in place on a terminal,
//! an occasional plain line in logs, or nothing.

use std::io::Write;
use std::time::Instant;

/// Where and how often a [`ProgressBar`] draws.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProgressMode {
    /// Redraw one line in place (a terminal), at most five times a second.
    Live,
    /// Print a new line at most every so many seconds (logs, CI).
    Log(f64),
    /// Draw nothing.
    Off,
}

/// A progress bar over `total` units of work, with rate and ETA from its own clock.
pub struct ProgressBar {
    label: String,
    mode: ProgressMode,
    start: u64,
    total: u64,
    began: Instant,
    last_print: Option<Instant>,
    drawn: bool,
}

impl ProgressBar {
    /// A bar over `start..total` (`start > 0` when resuming).
    pub fn new(label: impl Into<String>, start: u64, total: u64, mode: ProgressMode) -> Self {
        ProgressBar {
            label: label.into(),
            mode,
            start,
            total,
            began: Instant::now(),
            last_print: None,
            drawn: false,
        }
    }

    /// Changes the amount of work (when it is known only once work has begun).
    pub fn set_total(&mut self, total: u64) {
        self.total = total;
    }

    /// Seconds since the bar was created.
    pub fn elapsed(&self) -> f64 {
        self.began.elapsed().as_secs_f64()
    }

    /// Units per second since the bar was created.
    pub fn rate(&self, done: u64) -> f64 {
        done.saturating_sub(self.start) as f64 / self.elapsed().max(1e-9)
    }

    /// Reports `done` units; `detail` follows the counts. Draws only when due (and always at the end).
    pub fn update(&mut self, done: u64, detail: &str) {
        let every = match self.mode {
            ProgressMode::Off => return,
            ProgressMode::Live => 0.2,
            ProgressMode::Log(s) => s,
        };
        let due = self.last_print.is_none_or(|t| t.elapsed().as_secs_f64() >= every);
        if !due && done < self.total {
            return;
        }
        self.last_print = Some(Instant::now());
        let line = self.line(done, detail);
        let mut err = std::io::stderr().lock();
        if self.mode == ProgressMode::Live {
            let _ = write!(err, "\r{line}\x1b[K");
            self.drawn = true;
        } else {
            let _ = writeln!(err, "{line}");
        }
    }

    /// The text of the bar at `done` units.
    pub fn line(&self, done: u64, detail: &str) -> String {
        let width = 24;
        let filled = (width as f64 * done as f64 / self.total.max(1) as f64) as usize;
        let bar = "█".repeat(filled.min(width)) + &"░".repeat(width - filled.min(width));
        let rate = self.rate(done);
        let eta = self.total.saturating_sub(done) as f64 / rate.max(1e-9);
        let detail = if detail.is_empty() { String::new() } else { format!(" {detail}") };
        let eta = if done > self.start { format!(" ETA {}", format_duration(eta)) } else { String::new() };
        format!("{} {bar} {done}/{}{detail}{eta}", self.label, self.total)
    }

    /// Ends a live line so that later output starts on a fresh line.
    pub fn finish(&self) {
        if self.drawn {
            eprintln!();
        }
    }
}

/// `75` → `1m15s`.
pub fn format_duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_shows_counts_bar_and_eta() {
        let bar = ProgressBar::new("evaluate", 0, 8, ProgressMode::Off);
        let line = bar.line(2, "128/500 samples");
        assert!(line.starts_with("evaluate ██████░░░░░░░░░░░░░░░░░░ 2/8 128/500 samples ETA "), "{line}");
        assert!(!bar.line(0, "").contains("ETA"), "no rate yet, no ETA");
        assert!(bar.line(8, "").contains("████████████████████████ 8/8"));
        // Over-reporting never overflows the bar.
        assert!(bar.line(9, "").contains("████████████████████████ 9/8"));
    }

    #[test]
    fn durations() {
        assert_eq!(format_duration(0.4), "0s");
        assert_eq!(format_duration(75.0), "1m15s");
        assert_eq!(format_duration(10_920.0), "3h02m");
    }
}
