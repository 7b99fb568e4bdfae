//! Progress for extraction, training and evaluation: an indicatif bar on stderr when it is a
//! terminal, otherwise (Slurm logs, CI, pipes) one plain line every `log_every` steps, so logs
//! stay greppable and do not fill with redraws.

use std::io::IsTerminal;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// One phase's progress.
pub struct Progress {
    label: String,
    total: u64,
    done: u64,
    log_every: u64,
    bar: Option<ProgressBar>,
    started: Instant,
}

impl Progress {
    /// `quiet` forces log lines even on a terminal; `log_every` = 0 logs only the end.
    pub fn new(label: &str, total: u64, quiet: bool, log_every: u64) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix:>10} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
            )
            .expect("static template")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar
        });
        Progress {
            label: label.into(),
            total,
            done: 0,
            log_every,
            bar,
            started: Instant::now(),
        }
    }

    /// Advances by `n` steps; `msg` (e.g. "loss 0.412") is shown on the bar or in the log line.
    pub fn inc(&mut self, n: u64, msg: &str) {
        let before = self.done;
        self.done += n;
        match &self.bar {
            Some(bar) => {
                bar.set_message(msg.to_string());
                bar.inc(n);
            }
            None => {
                if let Some(line) = self.log_line(before, msg) {
                    eprintln!("{line}");
                }
            }
        }
    }

    /// The line to print after moving from `before` to `self.done`, if one is due.
    fn log_line(&self, before: u64, msg: &str) -> Option<String> {
        let crossed = self.log_every > 0 && before / self.log_every != self.done / self.log_every;
        (crossed || self.done >= self.total && before < self.total).then(|| {
            format!(
                "{} {}/{} {msg} ({:.1}s)",
                self.label,
                self.done.min(self.total),
                self.total,
                self.started.elapsed().as_secs_f64()
            )
        })
    }

    /// Ends the phase; returns its wall time in seconds.
    pub fn finish(self) -> f64 {
        if let Some(bar) = &self.bar {
            bar.finish();
        }
        self.started.elapsed().as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_terminal_logs_every_n_steps_and_at_the_end() {
        let mut p = Progress::new("train", 7, true, 3);
        let mut lines = Vec::new();
        for _ in 0..7 {
            let before = p.done;
            p.done += 1;
            lines.extend(p.log_line(before, "x"));
        }
        let steps: Vec<&str> = lines
            .iter()
            .map(|l| l.split_whitespace().nth(1).unwrap())
            .collect();
        assert_eq!(steps, ["3/7", "6/7", "7/7"]);
    }
}
