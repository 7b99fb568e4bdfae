//! What a job's evaluations come to: the epoch a table reports (the reference's selection by
//! test P-AUROC, or the final epoch) and the summary of the routing weights (Table 4). One place
//! for both rules: the pipeline, `predict` and `evaluate` read them here.

use crate::experiment::record::{Evaluation, RoutingRow, RoutingSummary, WeightStats};
use crate::experiment::{EpochSelection, RunMetrics};

/// The best epoch by mean P-AUROC among `evals` (ties: the earliest), as the reference picks
/// its checkpoint; the untrained adapters (epoch 0) never count.
pub fn best_by_pixel_auroc(evals: &[Evaluation]) -> Option<&Evaluation> {
    evals
        .iter()
        .filter(|e| e.epoch > 0)
        .fold(None, |best: Option<&Evaluation>, e| {
            match (best.and_then(|b| b.mean.pixel_auroc), e.mean.pixel_auroc) {
                (_, None) => best.or(Some(e)),
                (None, Some(_)) => Some(e),
                (Some(b), Some(v)) => Some(if v > b { e } else { best.expect("some") }),
            }
        })
}

/// The epoch a finished run reports under its own selection rule.
pub fn reported_epoch(metrics: &RunMetrics) -> usize {
    match metrics.selection {
        EpochSelection::ReferenceBest => metrics.best_epoch.epoch,
        EpochSelection::Final => metrics.final_epoch.epoch,
    }
}

/// Mean and spread of anomaly weights (`w_normal = 1 - w_anomaly`, the two softmax outputs).
pub fn weight_stats(w_anomaly: &[f64]) -> WeightStats {
    let n = w_anomaly.len();
    if n == 0 {
        return WeightStats::default();
    }
    let mean = w_anomaly.iter().sum::<f64>() / n as f64;
    let var = w_anomaly.iter().map(|w| (w - mean).powi(2)).sum::<f64>() / n as f64;
    WeightStats {
        count: n,
        mean_w_normal: Some(1.0 - mean),
        mean_w_anomaly: Some(mean),
        std_w_anomaly: Some(var.sqrt()),
    }
}

/// Routing weights per label, overall and per category, and how well `w_anomaly` alone tells
/// the labels apart (its AUROC; undefined with one label or a non-finite weight).
pub fn routing_summary(rows: &[RoutingRow]) -> RoutingSummary {
    let split = |rows: &[&RoutingRow], label: u8| {
        let w: Vec<f64> = rows
            .iter()
            .filter(|r| r.label == label)
            .map(|r| r.w_anomaly)
            .collect();
        weight_stats(&w)
    };
    let all: Vec<&RoutingRow> = rows.iter().collect();
    let mut per_category = std::collections::BTreeMap::new();
    for r in rows {
        if !per_category.contains_key(&r.category) {
            let cat: Vec<&RoutingRow> = rows.iter().filter(|x| x.category == r.category).collect();
            per_category.insert(r.category.clone(), [split(&cat, 0), split(&cat, 1)]);
        }
    }
    let w: Vec<f32> = rows.iter().map(|r| r.w_anomaly as f32).collect();
    let labels: Vec<u8> = rows.iter().map(|r| r.label).collect();
    let separation_auroc = crate::metrics::auroc(&w, &labels).ok().flatten();
    RoutingSummary {
        normal: split(&all, 0),
        anomalous: split(&all, 1),
        per_category,
        separation_auroc,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::record::{CategoryMetrics, MetricSet};

    #[test]
    fn routing_summary_per_label_and_separation() {
        let row = |cat: &str, label, wa: f64| RoutingRow {
            category: cat.into(),
            image: format!("{cat}{label}{wa}"),
            label,
            w_normal: 1.0 - wa,
            w_anomaly: wa,
        };
        let rows = vec![row("a", 0, 0.2), row("a", 1, 0.7), row("b", 1, 0.9)];
        let s = routing_summary(&rows);
        assert_eq!((s.normal.count, s.anomalous.count), (1, 2));
        assert!((s.anomalous.mean_w_anomaly.unwrap() - 0.8).abs() < 1e-12);
        assert!((s.anomalous.std_w_anomaly.unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(s.per_category["b"][0].count, 0);
        assert_eq!(s.separation_auroc, Some(1.0));
        // Swapped weights rank every anomalous image below the normal one; one group: undefined.
        let swapped: Vec<_> = rows
            .iter()
            .cloned()
            .map(|r| RoutingRow {
                w_anomaly: 1.0 - r.w_anomaly,
                ..r
            })
            .collect();
        assert_eq!(routing_summary(&swapped).separation_auroc, Some(0.0));
        assert_eq!(routing_summary(&rows[1..]).separation_auroc, None);
    }

    #[test]
    fn best_epoch_is_the_earliest_maximum_after_initialisation() {
        let e = |epoch, p| {
            Evaluation::new(
                epoch,
                "x",
                vec![CategoryMetrics {
                    category: "c".into(),
                    n_normal: 1,
                    n_anomalous: 1,
                    metrics: MetricSet {
                        pixel_auroc: p,
                        ..Default::default()
                    },
                    interval: None,
                }],
            )
        };
        let evals = vec![
            e(0, Some(0.99)),
            e(1, Some(0.7)),
            e(2, Some(0.9)),
            e(3, Some(0.9)),
            e(4, None),
        ];
        assert_eq!(best_by_pixel_auroc(&evals).unwrap().epoch, 2);
    }
}
