//! A route's endpoint set: the task addresses of a swarm service, or any
//! other several upstreams one route spreads its requests over.
//!
//! The set itself is immutable and lives in the published route table; what
//! changes per request (the round-robin cursor, connections in flight, the
//! passive and active health marks) is atomics, so picking an endpoint takes
//! no lock. A new table version reuses the [`Backend`]s of the old one for
//! addresses that stay, so health and counters survive a route update.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use super::target::Target;
use crate::clock::now_ms;

/// How a route picks one of its endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Each endpoint in turn.
    #[default]
    RoundRobin,
    /// The endpoint with the fewest requests in flight and tunnels open.
    LeastConnections,
}

/// An active health check: `GET path` on each endpoint every `interval`;
/// anything but a 2xx or 3xx answer within `timeout` marks it down.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    /// Request path, e.g. `/healthz`.
    pub path: String,
    /// Time between two checks of one endpoint.
    pub interval: Duration,
    /// Longest wait for the answer.
    pub timeout: Duration,
}

/// How long an endpoint that refused a connection is skipped, at first; each
/// further failure in a row doubles it, up to [`MAX_DOWN`].
const FIRST_DOWN: Duration = Duration::from_secs(1);
const MAX_DOWN: Duration = Duration::from_secs(30);

/// One endpoint of a balanced route.
#[derive(Debug)]
pub struct Backend {
    pub(crate) target: Target,
    /// The sticky-cookie value naming this endpoint (stable for an address).
    pub(crate) id: Box<str>,
    active: AtomicU32,
    /// Passive health: skipped until then (ms since the epoch).
    down_until: AtomicU64,
    failures: AtomicU32,
    /// Active health: the last check's verdict. Without checks always
    /// true; with checks false until the first one passes.
    healthy: AtomicBool,
    /// When the next active check is due (ms since the epoch).
    pub(crate) next_check: AtomicU64,
}

impl Backend {
    /// An endpoint; `checked`: its route has an active health check, so it
    /// takes no request before one passes.
    pub(crate) fn new(target: Target, checked: bool) -> Self {
        let id = format!("{:016x}", fnv1a(target.pool_key.as_bytes())).into_boxed_str();
        Self {
            target,
            id,
            active: AtomicU32::new(0),
            down_until: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            healthy: AtomicBool::new(!checked),
            next_check: AtomicU64::new(0),
        }
    }

    /// The endpoint's URL, e.g. `http://10.0.1.5:8888`.
    pub fn url(&self) -> &str {
        self.target.as_str()
    }

    /// Requests in flight and tunnels open through this endpoint.
    pub fn active(&self) -> u32 {
        self.active.load(Ordering::Relaxed)
    }

    /// Whether the last active check passed (true without checks, false
    /// before the first check).
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Whether a recent connection failure keeps it out of rotation.
    pub fn passively_down(&self) -> bool {
        now_ms() < self.down_until.load(Ordering::Relaxed)
    }

    fn available(&self, now: u64) -> bool {
        self.healthy() && now >= self.down_until.load(Ordering::Relaxed)
    }

    /// A connection to it failed: skip it for a while (longer each time).
    pub(crate) fn connect_failed(&self) {
        let n = self.failures.fetch_add(1, Ordering::Relaxed).min(5);
        let down = (FIRST_DOWN * 2u32.pow(n)).min(MAX_DOWN);
        let until = now_ms() + u64::try_from(down.as_millis()).unwrap_or(u64::MAX);
        self.down_until.store(until, Ordering::Relaxed);
    }

    /// A connection to it worked: forget earlier failures.
    pub(crate) fn connected(&self) {
        if self.failures.load(Ordering::Relaxed) != 0 {
            self.failures.store(0, Ordering::Relaxed);
            self.down_until.store(0, Ordering::Relaxed);
        }
    }

    pub(crate) fn set_healthy(&self, healthy: bool) {
        if self.healthy.swap(healthy, Ordering::Relaxed) != healthy {
            tracing::info!(backend = self.url(), healthy, "health check changed");
        }
    }
}

/// Counts a request or tunnel against its endpoint while it lives.
pub(crate) struct InFlight(Arc<Backend>);

impl InFlight {
    pub(crate) fn new(backend: &Arc<Backend>) -> Self {
        backend.active.fetch_add(1, Ordering::Relaxed);
        Self(backend.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A route's endpoints and how it chooses among them.
#[derive(Debug)]
pub struct Balancer {
    backends: Box<[Arc<Backend>]>,
    policy: Policy,
    sticky: Option<Box<str>>,
    health: Option<HealthCheck>,
    next: AtomicUsize,
}

impl Balancer {
    /// A balancer over `targets`, reusing the backends of `previous` whose
    /// address is unchanged (their counters and health marks carry over).
    pub(crate) fn new(
        targets: Vec<Target>,
        policy: Policy,
        sticky: Option<String>,
        health: Option<HealthCheck>,
        previous: Option<&Balancer>,
    ) -> Self {
        let backends = targets
            .into_iter()
            .map(|t| {
                previous
                    .and_then(|p| p.backends.iter().find(|b| b.target.pool_key == t.pool_key))
                    .cloned()
                    .unwrap_or_else(|| Arc::new(Backend::new(t, health.is_some())))
            })
            .collect();
        Self {
            backends,
            policy,
            sticky: sticky.map(String::into_boxed_str),
            health,
            next: AtomicUsize::new(0),
        }
    }

    /// The endpoints, in the order given.
    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// The load-balancing policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// The sticky-session cookie's name, when sessions stick.
    pub fn sticky_cookie(&self) -> Option<&str> {
        self.sticky.as_deref()
    }

    /// The active health check, when one is configured.
    pub fn health_check(&self) -> Option<&HealthCheck> {
        self.health.as_ref()
    }

    /// Chooses an endpoint. `pinned` is the sticky cookie's value, honoured
    /// while its endpoint is available; `tried` marks (by index, as a bit
    /// set) endpoints already tried for this request. Endpoints marked down
    /// after a failed connection are skipped while any other is up; when
    /// all are, they are candidates again, so a recovered endpoint is found
    /// at once. An endpoint failing its active health check (or not checked
    /// yet) is never a candidate: a route whose endpoints all fail has none
    /// (a 503), like HAProxy's and Traefik's checks.
    pub(crate) fn pick(&self, pinned: Option<&str>, tried: u64) -> Option<(usize, &Arc<Backend>)> {
        let now = now_ms();
        let untried = |i: usize| i >= 64 || tried & (1 << i) == 0;
        if let Some(id) = pinned {
            if let Some((i, b)) = self.backends.iter().enumerate().find(|(_, b)| *b.id == *id) {
                if untried(i) && b.available(now) {
                    return Some((i, b));
                }
            }
        }
        let candidates = |up_only: bool| {
            self.backends
                .iter()
                .enumerate()
                .filter(move |(i, b)| untried(*i) && b.healthy() && (!up_only || b.available(now)))
        };
        let up = candidates(true).count();
        let up_only = up > 0;
        let n = if up_only {
            up
        } else {
            candidates(false).count()
        };
        if n == 0 {
            return None;
        }
        match self.policy {
            Policy::RoundRobin => {
                let k = self.next.fetch_add(1, Ordering::Relaxed) % n;
                candidates(up_only).nth(k)
            }
            Policy::LeastConnections => {
                // Ties go round robin, so equal endpoints share the load.
                let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
                candidates(up_only)
                    .cycle()
                    .skip(start)
                    .take(n)
                    .min_by_key(|(_, b)| b.active())
            }
        }
    }
}

/// FNV-1a: a stable, dependency-free hash for sticky-cookie values.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn balancer(n: u16, policy: Policy) -> Balancer {
        let targets = (0..n)
            .map(|i| Target::parse(&format!("http://10.0.0.{i}:80")).unwrap())
            .collect();
        Balancer::new(targets, policy, Some("s".into()), None, None)
    }

    fn picks(b: &Balancer, n: usize) -> Vec<usize> {
        (0..n).map(|_| b.pick(None, 0).unwrap().0).collect()
    }

    #[test]
    fn round_robin_visits_every_endpoint_in_turn() {
        let b = balancer(3, Policy::RoundRobin);
        assert_eq!(picks(&b, 6), vec![0, 1, 2, 0, 1, 2]);
    }

    #[test]
    fn least_connections_prefers_the_idle_endpoint() {
        let b = balancer(3, Policy::LeastConnections);
        let _busy0 = InFlight::new(&b.backends[0]);
        let _busy2 = InFlight::new(&b.backends[2]);
        assert!(picks(&b, 5).iter().all(|&i| i == 1));
        drop(_busy0);
        let seen = picks(&b, 6);
        assert!(seen.contains(&0) && seen.contains(&1) && !seen.contains(&2));
    }

    #[test]
    fn down_endpoints_are_skipped_until_all_are_down() {
        let b = balancer(3, Policy::RoundRobin);
        b.backends[1].connect_failed();
        b.backends[2].set_healthy(false);
        assert!(picks(&b, 4).iter().all(|&i| i == 0));
        b.backends[0].connect_failed();
        let seen = picks(&b, 4);
        assert!(
            seen.contains(&0) && seen.contains(&1),
            "all down: each is tried"
        );
        assert!(!seen.contains(&2), "never one failing its health check");
        b.backends[1].connected();
        assert!(picks(&b, 3).iter().all(|&i| i == 1));
        b.backends[1].set_healthy(false);
        b.backends[0].set_healthy(false);
        assert!(b.pick(None, 0).is_none(), "all fail their checks: none");
    }

    #[test]
    fn a_checked_endpoint_waits_for_its_first_check() {
        let check = HealthCheck {
            path: "/health".into(),
            interval: std::time::Duration::from_secs(1),
            timeout: std::time::Duration::from_secs(1),
        };
        let targets = vec![Target::parse("http://10.0.0.1:80").unwrap()];
        let b = Balancer::new(targets, Policy::RoundRobin, None, Some(check), None);
        assert!(b.pick(None, 0).is_none());
        b.backends[0].set_healthy(true);
        assert_eq!(b.pick(None, 0).unwrap().0, 0);
    }

    #[test]
    fn tried_endpoints_are_not_picked_again() {
        let b = balancer(3, Policy::RoundRobin);
        assert_eq!(b.pick(None, 0b011).unwrap().0, 2);
        assert!(b.pick(None, 0b111).is_none());
    }

    #[test]
    fn a_sticky_cookie_pins_while_its_endpoint_is_up() {
        let b = balancer(3, Policy::RoundRobin);
        let id = b.backends[2].id.to_string();
        assert!((0..5).all(|_| b.pick(Some(&id), 0).unwrap().0 == 2));
        b.backends[2].connect_failed();
        assert_ne!(b.pick(Some(&id), 0).unwrap().0, 2);
        assert!(b.pick(Some("nonsense"), 0).is_some());
    }

    #[test]
    fn backends_of_unchanged_addresses_survive_a_rebuild() {
        let old = balancer(2, Policy::RoundRobin);
        old.backends[1].set_healthy(false);
        let targets = ["http://10.0.0.1:80", "http://10.0.0.9:80"]
            .iter()
            .map(|t| Target::parse(t).unwrap())
            .collect();
        let new = Balancer::new(targets, Policy::RoundRobin, None, None, Some(&old));
        assert!(Arc::ptr_eq(&new.backends[0], &old.backends[1]));
        assert!(!new.backends[0].healthy());
        assert!(new.backends[1].healthy());
    }
}
