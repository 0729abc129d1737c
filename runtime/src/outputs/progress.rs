//! Progress bars on stderr for training, sampling and evaluation: an `indicatif` bar on a terminal
//! (one line that fits the terminal's width, truncating the label rather than wrapping, and the elapsed
//! time once finished), an occasional plain line in logs, or nothing.

use std::io::Write;
use std::time::Instant;

/// Where and how often a [`ProgressBar`] draws.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ProgressMode {
    /// Redraw one line in place (a terminal).
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
    live: Option<indicatif::ProgressBar>,
}

/// Width of the bar itself on a terminal of `columns`: narrower terminals get a shorter bar, so the
/// label keeps some room.
fn bar_width(columns: u16) -> usize {
    (columns as usize / 6).clamp(8, 30)
}

/// The live template: counts, bar and timing keep their place on the right; the label and detail
/// (`{wide_msg}`) take the rest of the line and are truncated to it.
fn live_style(columns: u16, finished: bool) -> indicatif::ProgressStyle {
    let timing = if finished { "in {elapsed}" } else { "ETA {eta}" };
    let template = format!("{{wide_msg}} {{bar:{}}} {{pos}}/{{len}} {timing}", bar_width(columns));
    indicatif::ProgressStyle::with_template(&template)
        .expect("the progress template is valid")
        .progress_chars("█▉▊▋▌▍▎▏░")
}

impl ProgressBar {
    /// A bar over `start..total` (`start > 0` when resuming).
    pub fn new(label: impl Into<String>, start: u64, total: u64, mode: ProgressMode) -> Self {
        let label = label.into();
        let live = (mode == ProgressMode::Live).then(|| {
            let target = indicatif::ProgressDrawTarget::stderr_with_hz(5);
            let bar = indicatif::ProgressBar::with_draw_target(Some(total), target);
            bar.set_style(live_style(terminal_columns(), false));
            bar.set_position(start);
            bar.reset_eta();
            bar.set_message(label.clone());
            bar
        });
        ProgressBar { label, mode, start, total, began: Instant::now(), last_print: None, live }
    }

    /// Changes the amount of work (when it is known only once work has begun).
    pub fn set_total(&mut self, total: u64) {
        self.total = total;
        if let Some(bar) = &self.live {
            bar.set_length(total);
        }
    }

    /// Seconds since the bar was created.
    pub fn elapsed(&self) -> f64 {
        self.began.elapsed().as_secs_f64()
    }

    /// Units per second since the bar was created.
    pub fn rate(&self, done: u64) -> f64 {
        done.saturating_sub(self.start) as f64 / self.elapsed().max(1e-9)
    }

    /// Reports `done` units; `detail` follows the label. A log line is printed only when due (and
    /// always at the end).
    pub fn update(&mut self, done: u64, detail: &str) {
        let every = match self.mode {
            ProgressMode::Off => return,
            ProgressMode::Live => {
                if let Some(bar) = &self.live {
                    bar.set_position(done);
                    bar.set_message(self.message(detail));
                }
                return;
            }
            ProgressMode::Log(s) => s,
        };
        let due = self.last_print.is_none_or(|t| t.elapsed().as_secs_f64() >= every);
        if !due && done < self.total {
            return;
        }
        self.last_print = Some(Instant::now());
        let line = self.line(done, detail);
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }

    fn message(&self, detail: &str) -> String {
        if detail.is_empty() {
            self.label.clone()
        } else {
            format!("{} {detail}", self.label)
        }
    }

    /// The text of a log line at `done` units.
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

    /// Ends the bar: a live bar stays on screen with the time it took (and the last detail); later
    /// output starts on a fresh line.
    pub fn finish(&self) {
        if let Some(bar) = &self.live {
            bar.set_style(live_style(terminal_columns(), true));
            bar.finish();
            // indicatif pads the line to the terminal's width and leaves the cursor at its end; a line
            // feed makes the next output a line of its own rather than a wrapped continuation.
            let _ = writeln!(std::io::stderr().lock());
        }
    }
}

impl Drop for ProgressBar {
    /// A bar dropped unfinished (an error ended the work) leaves its last state on screen.
    fn drop(&mut self) {
        if let Some(bar) = &self.live {
            if !bar.is_finished() {
                bar.abandon();
            }
        }
    }
}

/// Columns of the terminal on standard error (80 when unknown).
fn terminal_columns() -> u16 {
    match console::Term::stderr().size_checked() {
        Some((_, cols)) if cols > 0 => cols,
        _ => 80,
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
