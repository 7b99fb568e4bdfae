//! Progress of a stage (extraction, training, evaluation): an indicatif bar on stderr when it is
//! a terminal; otherwise (Slurm logs, CI, pipes) plain lines - one when the stage starts, then at
//! least every `interval` (30 s by default) even while a long step runs, each with the stage,
//! the count done, the elapsed time and an ETA, so a full-size job is never silent for minutes
//! and its logs stay greppable.

use std::io::IsTerminal;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

struct State {
    label: String,
    unit: String,
    total: u64,
    done: u64,
    msg: String,
    started: Instant,
    last_line: Instant,
    finished: bool,
}

impl State {
    fn line(&self) -> String {
        let elapsed = self.started.elapsed().as_secs_f64();
        let pct = 100.0 * self.done as f64 / self.total.max(1) as f64;
        let eta = if self.done == 0 {
            "ETA unknown".to_string()
        } else if self.done >= self.total {
            "done".to_string()
        } else {
            let rest = elapsed * (self.total - self.done) as f64 / self.done as f64;
            format!("ETA {}", clock(rest))
        };
        let mut s = format!(
            "[{}] {}/{} {} ({pct:.1}%) | {} elapsed, {eta}",
            self.label,
            self.done.min(self.total),
            self.total,
            self.unit,
            clock(elapsed)
        );
        if !self.msg.is_empty() {
            s.push_str(" | ");
            s.push_str(&self.msg);
        }
        s
    }
}

/// `1h02m`, `3m05s` or `12.4s`.
pub fn clock(secs: f64) -> String {
    let s = secs.max(0.0);
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

/// How stages report: bars or lines, and the line interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Reporter {
    /// Log lines even on a terminal.
    pub quiet: bool,
    pub interval: Duration,
}

/// A milestone or a wait, one line on stderr: the one place the engine writes to the terminal
/// besides the stages' own lines (a run directory's log gets the same line from its caller).
pub fn say(line: &str) {
    eprintln!("{line}");
}

impl Reporter {
    /// A stage of `total` `unit`s.
    pub fn stage(&self, label: &str, unit: &str, total: u64) -> Progress {
        Progress::new(label, unit, total, self.quiet, self.interval)
    }
}

type Shared = Arc<(Mutex<State>, Condvar)>;

/// One stage's progress.
pub struct Progress {
    shared: Shared,
    bar: Option<ProgressBar>,
    heartbeat: Option<std::thread::JoinHandle<()>>,
    interval: Duration,
}

impl Progress {
    /// A stage of `total` `unit`s (`images`, `steps`). `quiet` forces log lines even on a
    /// terminal.
    pub fn new(label: &str, unit: &str, total: u64, quiet: bool, interval: Duration) -> Self {
        let now = Instant::now();
        let shared: Shared = Arc::new((
            Mutex::new(State {
                label: label.to_string(),
                unit: unit.to_string(),
                total,
                done: 0,
                msg: String::new(),
                started: now,
                last_line: now,
                finished: false,
            }),
            Condvar::new(),
        ));
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let style = ProgressStyle::with_template(
                "{prefix:>14} [{bar:30}] {pos}/{len} {msg} ({elapsed}, eta {eta})",
            )
            .expect("static template")
            .progress_chars("=> ");
            bar.set_style(style);
            bar.set_prefix(label.to_string());
            bar
        });
        let heartbeat = bar.is_none().then(|| {
            eprintln!("{}", shared.0.lock().expect("progress lock").line());
            let shared = shared.clone();
            std::thread::spawn(move || heartbeat(shared, interval))
        });
        Progress {
            shared,
            bar,
            heartbeat,
            interval,
        }
    }

    /// Advances by `n`.
    pub fn inc(&mut self, n: u64) {
        self.update(n, None);
    }

    /// Advances by `n` and shows `msg` (e.g. "epoch 3 loss 0.412").
    pub fn inc_with(&mut self, n: u64, msg: &str) {
        self.update(n, Some(msg));
    }

    fn update(&mut self, n: u64, msg: Option<&str>) {
        let (lock, _) = &*self.shared;
        let mut st = lock.lock().expect("progress lock");
        st.done += n;
        if let Some(m) = msg {
            st.msg = m.to_string();
        }
        match &self.bar {
            Some(bar) => {
                if let Some(m) = msg {
                    bar.set_message(m.to_string());
                }
                bar.inc(n);
            }
            None => {
                let due = st.last_line.elapsed() >= self.interval;
                if due || st.done >= st.total {
                    st.last_line = Instant::now();
                    eprintln!("{}", st.line());
                }
            }
        }
    }

    /// Ends the stage; returns its wall time in seconds.
    pub fn finish(mut self) -> f64 {
        let (lock, cvar) = &*self.shared;
        let secs = {
            let mut st = lock.lock().expect("progress lock");
            st.finished = true;
            st.started.elapsed().as_secs_f64()
        };
        cvar.notify_all();
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
        if let Some(bar) = &self.bar {
            bar.finish();
        }
        secs
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        // A stage left by an error still stops its heartbeat.
        let (lock, cvar) = &*self.shared;
        if let Ok(mut st) = lock.lock() {
            st.finished = true;
        }
        cvar.notify_all();
        if let Some(h) = self.heartbeat.take() {
            let _ = h.join();
        }
    }
}

/// Prints the state whenever `interval` passed without a line.
fn heartbeat(shared: Shared, interval: Duration) {
    let (lock, cvar) = &*shared;
    let mut st = lock.lock().expect("progress lock");
    loop {
        if st.finished {
            return;
        }
        let wait = interval.saturating_sub(st.last_line.elapsed());
        if wait.is_zero() {
            st.last_line = Instant::now();
            eprintln!("{}", st.line());
            continue;
        }
        st = cvar.wait_timeout(st, wait).expect("progress lock").0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_stage_count_and_eta() {
        let now = Instant::now();
        let mut st = State {
            label: "extract visa".into(),
            unit: "images".into(),
            total: 200,
            done: 0,
            msg: String::new(),
            started: now - Duration::from_secs(60),
            last_line: now,
            finished: false,
        };
        assert!(st.line().contains("ETA unknown"), "{}", st.line());
        st.done = 50;
        let line = st.line();
        assert!(
            line.starts_with("[extract visa] 50/200 images (25.0%)"),
            "{line}"
        );
        // 50 images in 60 s: 150 more take 180 s.
        assert!(
            line.contains("ETA 3m00s") || line.contains("ETA 2m59s"),
            "{line}"
        );
        assert_eq!(clock(3725.0), "1h02m");
    }

    #[test]
    fn heartbeat_stops_with_the_stage() {
        let mut p = Progress::new("t", "steps", 3, true, Duration::from_millis(5));
        std::thread::sleep(Duration::from_millis(30));
        p.inc(1);
        let started = Instant::now();
        p.finish();
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
