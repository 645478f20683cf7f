//! Results and the markdown report: medians with min–max over rounds, and
//! every hubgate figure as a ratio to each peer measured in the same run.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Better {
    Higher,
    Lower,
}

struct Row {
    scenario: String,
    target: String,
    metric: String,
    better: Better,
    values: Vec<f64>,
}

/// Every sample, in the order first seen, and notes (failures) per scenario.
#[derive(Default)]
pub(crate) struct Results {
    rows: Vec<Row>,
    notes: Vec<(String, String)>,
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        s[n / 2]
    } else {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    }
}

fn fmt(v: f64) -> String {
    if !v.is_finite() {
        "–".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

impl Results {
    pub(crate) fn push(
        &mut self,
        scenario: &str,
        target: &str,
        metric: &str,
        value: f64,
        better: Better,
    ) {
        match self
            .rows
            .iter_mut()
            .find(|r| r.scenario == scenario && r.target == target && r.metric == metric)
        {
            Some(r) => r.values.push(value),
            None => self.rows.push(Row {
                scenario: scenario.into(),
                target: target.into(),
                metric: metric.into(),
                better,
                values: vec![value],
            }),
        }
    }

    /// Records a failure (or any remark) under `scenario`.
    pub(crate) fn note(&mut self, scenario: &str, text: String) {
        self.notes.push((scenario.into(), text));
    }

    fn scenarios(&self) -> Vec<&str> {
        let mut v: Vec<&str> = Vec::new();
        for s in self
            .rows
            .iter()
            .map(|r| r.scenario.as_str())
            .chain(self.notes.iter().map(|n| n.0.as_str()))
        {
            if !v.contains(&s) {
                v.push(s);
            }
        }
        v
    }

    fn median_of(&self, scenario: &str, target: &str, metric: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario && r.target == target && r.metric == metric)
            .map(|r| median(&r.values))
    }

    /// The markdown report.
    pub(crate) fn markdown(&self, header: &str) -> String {
        let mut out = String::from(header);
        for sc in self.scenarios() {
            let rows: Vec<&Row> = self.rows.iter().filter(|r| r.scenario == sc).collect();
            let mut targets: Vec<&str> = Vec::new();
            let mut metrics: Vec<(&str, Better)> = Vec::new();
            for r in &rows {
                if !targets.contains(&r.target.as_str()) {
                    targets.push(&r.target);
                }
                if !metrics.iter().any(|(m, _)| *m == r.metric) {
                    metrics.push((&r.metric, r.better));
                }
            }
            let _ = writeln!(out, "\n### {sc}\n");
            for (_, note) in self.notes.iter().filter(|n| n.0 == sc) {
                let _ = writeln!(out, "> {note}\n");
            }
            if rows.is_empty() {
                continue;
            }
            let arrows: Vec<String> = metrics
                .iter()
                .map(|(m, b)| format!("{m} {}", if *b == Better::Higher { "↑" } else { "↓" }))
                .collect();
            let _ = writeln!(out, "| target | {} |", arrows.join(" | "));
            let _ = writeln!(out, "|---|{}", "---|".repeat(metrics.len()));
            for t in &targets {
                let cells: Vec<String> = metrics
                    .iter()
                    .map(
                        |(m, _)| match rows.iter().find(|r| r.target == *t && r.metric == *m) {
                            Some(r) if r.values.len() > 1 => {
                                let min = r.values.iter().copied().fold(f64::INFINITY, f64::min);
                                let max =
                                    r.values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                                format!("{} ({}–{})", fmt(median(&r.values)), fmt(min), fmt(max))
                            }
                            Some(r) => fmt(median(&r.values)),
                            None => "–".into(),
                        },
                    )
                    .collect();
                let _ = writeln!(out, "| {t} | {} |", cells.join(" | "));
            }
            self.ratios(&mut out, sc, &targets, &metrics);
        }
        out
    }

    /// hubgate ÷ peer for every metric, at equal worker counts (CHP, with its
    /// single process, against every hubgate row).
    fn ratios(&self, out: &mut String, sc: &str, targets: &[&str], metrics: &[(&str, Better)]) {
        let pairs: Vec<(&str, &str)> = targets
            .iter()
            .filter(|t| t.starts_with("hubgate ("))
            .flat_map(|h| {
                let workers = h.trim_start_matches("hubgate ");
                targets
                    .iter()
                    .filter(move |p| {
                        !p.starts_with("hubgate") && (p.ends_with(workers) || !p.contains('('))
                    })
                    .map(move |p| (*h, *p))
            })
            .collect();
        if pairs.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "\nhubgate ÷ peer (medians; ↑ metrics want > 1, ↓ metrics want < 1):\n"
        );
        let _ = writeln!(
            out,
            "| pair | {} |",
            metrics
                .iter()
                .map(|(m, _)| *m)
                .collect::<Vec<_>>()
                .join(" | ")
        );
        let _ = writeln!(out, "|---|{}", "---|".repeat(metrics.len()));
        for (h, p) in pairs {
            let cells: Vec<String> = metrics
                .iter()
                .map(
                    |(m, _)| match (self.median_of(sc, h, m), self.median_of(sc, p, m)) {
                        (Some(a), Some(b)) if b != 0.0 && a.is_finite() && b.is_finite() => {
                            format!("{:.2}×", a / b)
                        }
                        _ => "–".into(),
                    },
                )
                .collect();
            let _ = writeln!(out, "| {h} ÷ {p} | {} |", cells.join(" | "));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_ratios() {
        let mut r = Results::default();
        for v in [100.0, 300.0, 200.0] {
            r.push("s", "hubgate (1w)", "req/s", v, Better::Higher);
        }
        r.push("s", "nginx (1w)", "req/s", 100.0, Better::Higher);
        r.push("s", "nginx (2w)", "req/s", 1.0, Better::Higher);
        r.push(
            "s",
            "configurable-http-proxy",
            "req/s",
            10.0,
            Better::Higher,
        );
        let md = r.markdown("# t\n");
        assert!(md.contains("| hubgate (1w) | 200 (100–300) |"), "{md}");
        assert!(md.contains("| hubgate (1w) ÷ nginx (1w) | 2.00× |"), "{md}");
        assert!(
            md.contains("| hubgate (1w) ÷ configurable-http-proxy | 20.0× |")
                || md.contains("20.00×"),
            "{md}"
        );
        assert!(!md.contains("hubgate (1w) ÷ nginx (2w)"), "{md}");
    }
}
