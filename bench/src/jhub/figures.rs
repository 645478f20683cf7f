//! One step's figures, whether the proxy sustained it, and how they go
//! into the report.

use super::stats::{Drained, quantile};
use crate::report::{Better, Results};

/// A kernel round trip p99 past this is a broken step.
const BROKEN_P99_US: f64 = 1_000_000.0;

/// What one step (N users) measured.
pub(crate) struct Step {
    pub(crate) users: usize,
    /// `(RSS, RSS before any user)` in KiB; none for the baseline.
    rss: Option<(u64, u64)>,
    /// Proxy CPU µs per user-second of the window.
    cpu: Option<f64>,
    /// Kernel round trip p50, p99, p99.9 in µs.
    pub(crate) kernel: [f64; 3],
    kernel_samples: usize,
    rest_p99_ms: f64,
    burst_ms: [f64; 2],
    errors: u64,
    error_summary: String,
    /// Users not in when the step's wait ran out.
    late: usize,
}

impl Step {
    pub(crate) fn new(
        users: usize,
        rss: Option<(u64, u64)>,
        cpu: Option<f64>,
        mut ramp: Drained,
        mut window: Drained,
        late: usize,
    ) -> Self {
        let errors = ramp.error_count() + window.error_count();
        let summary = [ramp.error_summary(), window.error_summary()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let bursts = &mut ramp.burst_ms;
        bursts.append(&mut window.burst_ms);
        let k = &mut window.kernel_us;
        Self {
            users,
            rss,
            cpu,
            kernel: [quantile(k, 0.5), quantile(k, 0.99), quantile(k, 0.999)],
            kernel_samples: k.len(),
            rest_p99_ms: quantile(&mut window.rest_us, 0.99) / 1e3,
            burst_ms: [quantile(bursts, 0.5), quantile(bursts, 0.99)],
            errors,
            error_summary: summary,
            late,
        }
    }

    pub(crate) fn sustained(&self) -> bool {
        self.errors == 0
            && self.late == 0
            && self.kernel_samples > 0
            && self.kernel[1] <= BROKEN_P99_US
    }

    /// Why the step is not sustained.
    pub(crate) fn why(&self) -> String {
        let mut parts = Vec::new();
        if self.errors > 0 {
            parts.push(format!("{} errors: {}", self.errors, self.error_summary));
        }
        if self.late > 0 {
            parts.push(format!("{} users not logged in within 60 s", self.late));
        }
        if self.kernel_samples == 0 {
            parts.push("no kernel round trip completed in the window".to_owned());
        } else if self.kernel[1] > BROKEN_P99_US {
            parts.push(format!(
                "kernel round trip p99 {:.0} ms",
                self.kernel[1] / 1e3
            ));
        }
        parts.join("; ")
    }

    /// A progress line.
    pub(crate) fn line(&self) -> String {
        format!(
            "RSS {} KiB, CPU {:.1} µs/user-s, kernel p50/p99/p99.9 {:.0}/{:.0}/{:.0} µs ({} samples), REST p99 {:.2} ms, burst p50/p99 {:.0}/{:.0} ms, {} errors{}",
            self.rss.map_or(0, |r| r.0),
            self.cpu.unwrap_or(f64::NAN),
            self.kernel[0],
            self.kernel[1],
            self.kernel[2],
            self.kernel_samples,
            self.rest_p99_ms,
            self.burst_ms[0],
            self.burst_ms[1],
            self.errors,
            if self.errors > 0 {
                format!(" ({})", self.error_summary)
            } else {
                String::new()
            }
        )
    }
}

/// Puts `step` in the report under its user count; `baseline` is the same
/// count straight to the servers, for the added round trip.
pub(crate) fn push_step(results: &mut Results, target: &str, step: &Step, baseline: Option<&Step>) {
    let scenario = format!("10. JupyterHub users: {}", step.users);
    let mut put = |metric: &str, value: f64| {
        results.push(&scenario, target, metric, value, Better::Lower);
    };
    if let Some((rss, idle)) = step.rss {
        put("RSS MiB", rss as f64 / 1024.0);
        put(
            "KiB per user",
            rss.saturating_sub(idle) as f64 / step.users as f64,
        );
    }
    if let Some(cpu) = step.cpu {
        put("CPU µs per user-s", cpu);
    }
    for (i, q) in ["p50", "p99", "p99.9"].iter().enumerate() {
        put(&format!("kernel RTT {q} µs"), step.kernel[i]);
    }
    if let Some(base) = baseline.filter(|_| step.rss.is_some()) {
        for (i, q) in ["p50", "p99", "p99.9"].iter().enumerate() {
            put(&format!("added {q} µs"), step.kernel[i] - base.kernel[i]);
        }
    }
    put("REST p99 ms", step.rest_p99_ms);
    put("login burst p50 ms", step.burst_ms[0]);
    put("login burst p99 ms", step.burst_ms[1]);
    put("errors", step.errors as f64);
}
