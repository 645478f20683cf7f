//! Prometheus metrics as plain atomics, rendered in the text format.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use http::StatusCode;

use crate::error::ProxyError;
use crate::route::RouteTable;

/// Upper bounds (seconds) of the request latency histogram.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];
const FAILURES: [&str; 10] = [
    "no_route",
    "bad_path",
    "refused",
    "client_body",
    "body_too_large",
    "no_endpoint",
    "connect",
    "connect_timeout",
    "timeout",
    "upstream",
];

/// Per-request counters are kept in this many shards, one picked per thread,
/// so workers on different cores do not write the same cache lines.
const SHARDS: usize = 8;

static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS;
}

/// The counters every proxied request writes.
#[repr(align(128))]
struct Shard {
    requests: Box<[AtomicU64]>,
    latency: [AtomicU64; BUCKETS.len() + 1],
    latency_sum_us: AtomicU64,
}

/// Counters and gauges of one proxy.
pub struct Metrics {
    shards: Box<[Shard]>,
    api_requests: Box<[AtomicU64]>,
    failures: [AtomicU64; FAILURES.len()],
    connections: AtomicI64,
    websockets: AtomicI64,
    websockets_total: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        let codes = || (0..600).map(|_| AtomicU64::new(0)).collect();
        Self {
            shards: (0..SHARDS)
                .map(|_| Shard {
                    requests: codes(),
                    latency: Default::default(),
                    latency_sum_us: AtomicU64::new(0),
                })
                .collect(),
            api_requests: codes(),
            failures: Default::default(),
            connections: AtomicI64::new(0),
            websockets: AtomicI64::new(0),
            websockets_total: AtomicU64::new(0),
        }
    }
}

/// Decrements a gauge when dropped.
pub(crate) struct Open<'a>(&'a AtomicI64);

impl Drop for Open<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

impl Metrics {
    pub(crate) fn request(&self, status: StatusCode, elapsed: Duration) {
        let Some(shard) = self.shards.get(SHARD.with(|s| *s)) else {
            return;
        };
        if let Some(c) = shard.requests.get(usize::from(status.as_u16())) {
            c.fetch_add(1, Relaxed);
        }
        let secs = elapsed.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        shard.latency[bucket].fetch_add(1, Relaxed);
        shard.latency_sum_us.fetch_add(
            u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }

    pub(crate) fn api_request(&self, status: StatusCode) {
        if let Some(c) = self.api_requests.get(usize::from(status.as_u16())) {
            c.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn upstream_error(&self, e: &ProxyError) {
        if let Some(i) = FAILURES.iter().position(|k| *k == e.kind()) {
            self.failures[i].fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn connection_opened(&self) -> Open<'_> {
        self.connections.fetch_add(1, Relaxed);
        Open(&self.connections)
    }

    pub(crate) fn websocket_opened(&self) -> Open<'_> {
        self.websockets.fetch_add(1, Relaxed);
        self.websockets_total.fetch_add(1, Relaxed);
        Open(&self.websockets)
    }

    /// Open websocket tunnels.
    pub fn open_websockets(&self) -> i64 {
        self.websockets.load(Relaxed)
    }

    /// The Prometheus text exposition of every metric, with the route count
    /// taken from `table`.
    pub fn render(&self, table: &RouteTable) -> String {
        let mut out = String::with_capacity(4096);
        self.render_requests(&mut out);
        self.render_latency(&mut out);
        let name = "hubgate_proxy_errors_total";
        let _ = writeln!(
            out,
            "# HELP {name} Failed proxied requests by failure.\n# TYPE {name} counter"
        );
        for (kind, c) in FAILURES.iter().zip(&self.failures) {
            let _ = writeln!(out, "{name}{{failure=\"{kind}\"}} {}", c.load(Relaxed));
        }
        for (name, help, v) in self.gauges(table) {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {v}");
        }
        let name = "hubgate_websockets_total";
        let _ = writeln!(
            out,
            "# HELP {name} Websocket tunnels opened.\n# TYPE {name} counter"
        );
        let _ = writeln!(out, "{name} {}", self.websockets_total.load(Relaxed));
        out
    }

    /// A counter summed over the workers' shards.
    fn sum(&self, of: &dyn Fn(&Shard) -> &AtomicU64) -> u64 {
        self.shards.iter().map(|s| of(s).load(Relaxed)).sum()
    }

    /// Proxied and API requests by status.
    fn render_requests(&self, out: &mut String) {
        let by_code = |out: &mut String, name: &str, help: &str, counts: &[u64]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (code, n) in counts.iter().enumerate() {
                if *n > 0 {
                    let _ = writeln!(out, "{name}{{status=\"{code}\"}} {n}");
                }
            }
        };
        let requests: Vec<u64> = (0..self.api_requests.len())
            .map(|code| self.sum(&|s| &s.requests[code]))
            .collect();
        let api: Vec<u64> = self.api_requests.iter().map(|c| c.load(Relaxed)).collect();
        by_code(
            out,
            "hubgate_requests_total",
            "Proxied requests by response status.",
            &requests,
        );
        by_code(
            out,
            "hubgate_api_requests_total",
            "REST API requests by response status.",
            &api,
        );
    }

    /// The time-to-head histogram.
    fn render_latency(&self, out: &mut String) {
        let name = "hubgate_request_duration_seconds";
        let _ = writeln!(
            out,
            "# HELP {name} Time to the response head.\n# TYPE {name} histogram"
        );
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += self.sum(&|s| &s.latency[i]);
            let _ = writeln!(out, "{name}_bucket{{le=\"{bound}\"}} {cumulative}");
        }
        cumulative += self.sum(&|s| &s.latency[BUCKETS.len()]);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(
            out,
            "{name}_sum {}",
            self.sum(&|s| &s.latency_sum_us) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count {cumulative}");
    }

    /// The gauges: routes, endpoints in and out of rotation, connections.
    fn gauges(&self, table: &RouteTable) -> [(&'static str, &'static str, i64); 6] {
        let balancers = table.discovered_balancers();
        let endpoints = balancers.iter().flat_map(|b| b.backends());
        let (up, down) = endpoints.fold((0i64, 0i64), |(up, down), e| {
            if e.healthy() && !e.passively_down() {
                (up + 1, down)
            } else {
                (up, down + 1)
            }
        });
        [
            (
                "hubgate_discovered_routes",
                "Routes from discovery (swarm services, a discovery file).",
                i64::try_from(balancers.len()).unwrap_or(i64::MAX),
            ),
            (
                "hubgate_endpoints_up",
                "Endpoints of discovered routes in rotation.",
                up,
            ),
            (
                "hubgate_endpoints_down",
                "Endpoints of discovered routes out of rotation (failed health check or connection).",
                down,
            ),
            (
                "hubgate_open_connections",
                "Open client connections.",
                self.connections.load(Relaxed),
            ),
            (
                "hubgate_open_websockets",
                "Open websocket tunnels.",
                self.websockets.load(Relaxed),
            ),
            (
                "hubgate_routes",
                "Routes in the table.",
                i64::try_from(table.len()).unwrap_or(i64::MAX),
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_histogram_and_gauges() {
        let m = Metrics::default();
        m.request(StatusCode::OK, Duration::from_micros(300));
        m.request(StatusCode::SERVICE_UNAVAILABLE, Duration::from_secs(9));
        let _ws = m.websocket_opened();
        // Another thread writes another shard; the rendering sums them.
        std::thread::scope(|s| {
            s.spawn(|| m.request(StatusCode::OK, Duration::from_micros(300)));
        });
        let text = m.render(&RouteTable::default());
        assert!(text.contains("hubgate_requests_total{status=\"200\"} 2"));
        assert!(text.contains("hubgate_requests_total{status=\"503\"} 1"));
        assert!(text.contains("hubgate_request_duration_seconds_bucket{le=\"0.0005\"} 2"));
        assert!(text.contains("hubgate_request_duration_seconds_bucket{le=\"+Inf\"} 3"));
        assert!(text.contains("hubgate_open_websockets 1"));
        assert!(text.contains("hubgate_routes 0"));
        assert!(text.contains("hubgate_discovered_routes 0"));
        assert!(text.contains("hubgate_endpoints_down 0"));
    }
}
