//! One number of ours as a table shows it: the mean over seeds, the sample standard deviation
//! over seeds, and a confidence interval.
//!
//! With several seeds the interval is the hull of the seeds' intervals (lowest `lo`, highest
//! `hi`). The check flags a published value only when it lies outside that hull, that is outside
//! every seed's interval: a claim that no seed supports the published number, which is what a
//! reproduction can say when seeds move the numbers more than the test set does.

use crate::experiment::Interval;

/// An aggregated number of ours (percent for metrics, weight units for routing weights).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Estimate {
    /// Mean over the seeds with a finite value; `None` when there is none.
    pub value: Option<f64>,
    /// Sample standard deviation over those seeds (`n - 1`); `None` with fewer than two.
    pub std: Option<f64>,
    /// Hull of the seeds' intervals; `None` when any seed with a value has no interval (runs
    /// made before intervals existed): a partial hull would claim more than the runs measured.
    pub interval: Option<Interval>,
    /// Seeds with a finite value.
    pub n_seeds: usize,
}

impl Estimate {
    /// From one `(value, interval)` per seed; non-finite values are left out, with their
    /// intervals.
    pub fn over_seeds(samples: impl IntoIterator<Item = (f64, Option<Interval>)>) -> Estimate {
        let samples: Vec<(f64, Option<Interval>)> =
            samples.into_iter().filter(|(v, _)| v.is_finite()).collect();
        let values: Vec<f64> = samples.iter().map(|(v, _)| *v).collect();
        let n = values.len();
        Estimate {
            value: (n > 0).then(|| values.iter().sum::<f64>() / n as f64),
            std: sample_std(&values),
            interval: hull(samples.iter().map(|(_, i)| *i)),
            n_seeds: n,
        }
    }

    /// The same estimate with value, std and interval multiplied by `k` (fractions to percent).
    pub fn scaled(self, k: f64) -> Estimate {
        Estimate {
            value: self.value.map(|v| v * k),
            std: self.std.map(|s| s * k.abs()),
            interval: self.interval.map(|i| {
                let (a, b) = (i.lo * k, i.hi * k);
                Interval {
                    lo: a.min(b),
                    hi: a.max(b),
                }
            }),
            n_seeds: self.n_seeds,
        }
    }

    /// `45.0`, `45.0 [38.1, 52.3]`, `45.0 ± 1.2` or `45.0 ± 1.2 [36.0, 55.1]`; `–` without a
    /// value.
    pub fn markdown(&self, decimals: usize) -> String {
        let Some(v) = self.value else {
            return "–".into();
        };
        let mut s = format!("{v:.decimals$}");
        if let Some(sd) = self.std {
            s.push_str(&format!(" ± {sd:.decimals$}"));
        }
        if let Some(i) = self.interval {
            s.push_str(&format!(" [{:.decimals$}, {:.decimals$}]", i.lo, i.hi));
        }
        s
    }
}

/// Sample standard deviation (`n - 1` in the denominator); `None` with fewer than two values.
pub fn sample_std(values: &[f64]) -> Option<f64> {
    let n = values.len();
    if n < 2 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let ss: f64 = values.iter().map(|v| (v - mean).powi(2)).sum();
    Some((ss / (n - 1) as f64).sqrt())
}

/// Lowest `lo` and highest `hi` of the intervals; `None` when there are none or any is missing.
pub fn hull(intervals: impl IntoIterator<Item = Option<Interval>>) -> Option<Interval> {
    let mut out: Option<Interval> = None;
    for i in intervals {
        let i = i?;
        out = Some(match out {
            None => i,
            Some(h) => Interval {
                lo: h.lo.min(i.lo),
                hi: h.hi.max(i.hi),
            },
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iv(lo: f64, hi: f64) -> Option<Interval> {
        Some(Interval { lo, hi })
    }

    #[test]
    fn one_seed_shows_the_value_and_its_interval() {
        let e = Estimate::over_seeds([(0.45, iv(0.381, 0.523))]).scaled(100.0);
        assert_eq!(e.n_seeds, 1);
        assert_eq!(e.std, None);
        assert_eq!(e.markdown(1), "45.0 [38.1, 52.3]");
    }

    #[test]
    fn several_seeds_show_mean_std_and_the_hull() {
        let e = Estimate::over_seeds([
            (44.0, iv(36.0, 52.0)),
            (45.0, iv(38.0, 55.1)),
            (46.0, iv(39.0, 54.0)),
        ]);
        assert_eq!(e.n_seeds, 3);
        assert!((e.value.unwrap() - 45.0).abs() < 1e-12);
        // Sample std of 44, 45, 46: sqrt(2 / 2) = 1.
        assert!((e.std.unwrap() - 1.0).abs() < 1e-12);
        assert_eq!(e.interval, iv(36.0, 55.1));
        assert_eq!(e.markdown(1), "45.0 ± 1.0 [36.0, 55.1]");
    }

    #[test]
    fn no_interval_renders_as_before() {
        let e = Estimate::over_seeds([(45.0, None)]);
        assert_eq!(e.markdown(1), "45.0");
        // Two seeds without intervals: the spread over seeds, no brackets.
        let e = Estimate::over_seeds([(40.0, None), (50.0, None)]);
        assert_eq!(e.markdown(1), "45.0 ± 7.1");
        assert_eq!(Estimate::over_seeds([]).markdown(1), "–");
        assert_eq!(Estimate::over_seeds([]).n_seeds, 0);
    }

    #[test]
    fn a_seed_without_interval_drops_the_hull_and_nan_seeds_are_left_out() {
        assert_eq!(hull([iv(1.0, 2.0), None]), None);
        assert_eq!(hull([]), None);
        assert_eq!(hull([iv(1.0, 2.0), iv(0.5, 1.5)]), iv(0.5, 2.0));
        let e = Estimate::over_seeds([(f64::NAN, None), (45.0, iv(40.0, 50.0))]);
        assert_eq!((e.n_seeds, e.interval), (1, iv(40.0, 50.0)));
        assert_eq!(sample_std(&[3.0]), None);
        assert!((sample_std(&[1.0, 3.0]).unwrap() - 2f64.sqrt()).abs() < 1e-12);
    }
}
