//! Keras' progress bar: one bar per epoch that fills as batches run (verbose 1), or one line per
//! epoch (verbose 2).

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use crate::logs::Logs;

/// The width of the bar in characters.
const WIDTH: usize = 20;
/// The least time between two redraws of the bar.
const INTERVAL: Duration = Duration::from_millis(50);

/// A progress bar over `target` steps, written to stdout as Keras' `Progbar`.
#[derive(Debug)]
pub(crate) struct Progbar {
    target: usize,
    verbose: u8,
    start: Instant,
    last_draw: Option<Instant>,
    current: usize,
    /// Redraw in place (a terminal); otherwise only the final line of each epoch is written.
    interactive: bool,
}

impl Progbar {
    /// A bar over `target` steps; silent unless `verbose` is 1 or 2.
    pub(crate) fn new(target: usize, verbose: u8) -> Progbar {
        Progbar {
            target,
            verbose,
            start: Instant::now(),
            last_draw: None,
            current: 0,
            interactive: std::io::stdout().is_terminal(),
        }
    }

    /// Step `current` is done; `logs` are the running averages. Redraws at most every 50 ms
    /// unless `force`.
    pub(crate) fn update(&mut self, current: usize, logs: &Logs, force: bool) {
        self.current = current;
        if self.verbose != 1 || !(self.interactive || force) {
            return;
        }
        let now = Instant::now();
        if !force && current < self.target && self.last_draw.is_some_and(|t| now - t < INTERVAL) {
            return;
        }
        self.last_draw = Some(now);
        let line = self.line(logs, current >= self.target && force);
        let mut out = std::io::stdout().lock();
        let _ = if self.interactive {
            write!(out, "\r{line}\x1b[K")
        } else {
            write!(out, "{line}")
        };
        let _ = out.flush();
    }

    /// The epoch is over: the final line with `logs` (validation entries included).
    pub(crate) fn finish(&mut self, logs: &Logs) {
        match self.verbose {
            1 => {
                self.update(self.target, logs, true);
                println!();
            }
            2 => {
                let elapsed = self.start.elapsed();
                let per_step = elapsed.as_secs_f64() / self.target.max(1) as f64;
                println!(
                    "{}/{} - {}s - {} - {logs}",
                    self.target,
                    self.target,
                    elapsed.as_secs(),
                    format_per_step(per_step)
                );
            }
            _ => {}
        }
    }

    /// `3/4 ━━━━━━━━━━━━━━━─────  0s 2ms/step - loss: 0.1234`; the ETA while running, the
    /// elapsed time once `done`.
    fn line(&self, logs: &Logs, done: bool) -> String {
        let width = self.target.to_string().len();
        let filled = (WIDTH * self.current / self.target.max(1)).min(WIDTH);
        let bar = format!("{}{}", "━".repeat(filled), "─".repeat(WIDTH - filled));
        let elapsed = self.start.elapsed().as_secs_f64();
        let per_step = elapsed / self.current.max(1) as f64;
        let time = if done {
            format!("{}s", elapsed as u64)
        } else {
            format_eta(per_step * (self.target - self.current.min(self.target)) as f64)
        };
        let mut line = format!(
            "{:>width$}/{} {bar} {time} {}",
            self.current,
            self.target,
            format_per_step(per_step)
        );
        if !logs.is_empty() {
            line.push_str(&format!(" - {logs}"));
        }
        line
    }
}

/// Seconds per step as Keras prints them: `1s/step`, `12ms/step`, `850us/step`.
fn format_per_step(seconds: f64) -> String {
    if seconds >= 1.0 {
        format!("{seconds:.0}s/step")
    } else if seconds >= 1e-3 {
        format!("{:.0}ms/step", seconds * 1e3)
    } else {
        format!("{:.0}us/step", seconds * 1e6)
    }
}

/// An ETA as Keras prints it: `5s`, `1:05`, `1:01:05`.
fn format_eta(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    } else if s >= 60 {
        format!("{}:{:02}", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_formatted_as_keras() {
        assert_eq!(format_per_step(0.0021), "2ms/step");
        assert_eq!(format_per_step(2.4), "2s/step");
        assert_eq!(format_per_step(0.000_85), "850us/step");
        assert_eq!(format_eta(5.2), "5s");
        assert_eq!(format_eta(65.0), "1:05");
        assert_eq!(format_eta(3665.0), "1:01:05");
    }

    #[test]
    fn the_bar_fills_with_the_steps() {
        let mut bar = Progbar::new(4, 0);
        bar.current = 2;
        let mut logs = Logs::new();
        logs.insert("loss", 0.1234);
        let line = bar.line(&logs, false);
        assert!(line.starts_with("2/4 ━━━━━━━━━━────────── "), "{line}");
        assert!(line.ends_with("/step - loss: 0.1234"), "{line}");
    }
}
