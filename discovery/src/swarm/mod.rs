//! The Docker Swarm source: services and their running tasks, through the
//! engine's API (bollard), on a manager.
//!
//! # How it follows the swarm
//! Swarm has no task events (moby/moby#37403), so this source combines:
//! - **service events** (create, update, remove: swarm-scoped, on managers)
//!   and **container events** (local node) from one event stream, each
//!   followed at once by a re-read, and by a task refresh 200 ms
//!   later (the engine lists a task's endpoint a moment after its
//!   container's start event; without it, a re-read that came too early
//!   waited for the next refresh);
//! - a **task refresh** every `refresh` (1 s): one verbose `GET /networks/<id>`
//!   per network hubgate is on, which lists every service's task endpoints
//!   on that network, cluster-wide: the addresses hubgate dials;
//! - a **full resync** every `resync` (30 s): the service list again, as the
//!   safety net for anything an event missed.
//!
//! API load is bounded by the number of networks, not of services: at idle,
//! one call per network per second plus one service list per 30 s.
//!
//! When the engine is unreachable or the event stream is cut, the last
//! published layer stays (the proxy keeps serving it), the status says
//! `retrying` with the error and the next attempt, and the source reconnects
//! with capped exponential backoff, then resyncs.

mod build;
mod engine;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use bollard::Docker;
use futures_util::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::DiscoveryError;
use crate::labels::ServiceLabels;
use crate::model::{Problem, State};
use crate::now_ms;
use crate::source::{Publisher, Running, Source};
use build::{Listed, ObservedNetwork, ObservedService};
use engine::{Engine, Kind};

/// Above this many services to check at once, one task list for all.
const TARGETED_CHECKS: usize = 8;

/// Makes a client for the engine the source follows.
pub type Connect = Box<dyn Fn() -> Result<Docker, bollard::errors::Error> + Send + Sync>;

/// How the swarm source connects and how often it looks.
#[derive(Debug, Clone)]
pub struct SwarmConfig {
    /// Networks (names or IDs) to reach services on. Empty: the swarm
    /// networks of `self_container`.
    pub networks: Vec<String>,
    /// hubgate's own container (ID, or the hostname swarm gives a task),
    /// whose networks are used when `networks` is empty.
    pub self_container: Option<String>,
    /// Task refresh period.
    pub refresh: Duration,
    /// Full resync period.
    pub resync: Duration,
    /// Longest wait between two reconnection attempts.
    pub max_backoff: Duration,
}

impl Default for SwarmConfig {
    fn default() -> Self {
        Self {
            networks: Vec::new(),
            self_container: None,
            refresh: Duration::from_secs(1),
            resync: Duration::from_secs(30),
            max_backoff: Duration::from_secs(30),
        }
    }
}

/// How long after an event the task refresh looks again (see the module
/// docs); never later than the refresh period itself.
const FOLLOW_UP: Duration = Duration::from_millis(200);

/// The swarm source. See the module docs.
pub struct SwarmSource {
    /// Makes a client for the engine (the binary's, from `DOCKER_HOST`),
    /// at each (re)connection: a socket that is not there yet is a retry,
    /// not the end.
    connect: Connect,
    config: SwarmConfig,
    /// Last labels that parsed, by service ID.
    last_good: HashMap<String, ServiceLabels>,
    services: Vec<ObservedService>,
    /// Each shared network's task endpoints as last listed.
    listed: Vec<Listed>,
    /// Running task IDs of the listed services, as last checked.
    live: HashMap<String, HashSet<String>>,
    /// Problems already logged (each is logged once, when it appears).
    reported: Vec<Problem>,
    /// Engine API calls, across reconnections.
    calls: Arc<AtomicU64>,
}

impl SwarmSource {
    /// A source that has not connected yet; `connect` makes a client for
    /// the engine.
    pub fn new(connect: Connect, config: SwarmConfig) -> Self {
        Self {
            connect,
            config,
            last_good: HashMap::new(),
            services: Vec::new(),
            listed: Vec::new(),
            live: HashMap::new(),
            reported: Vec::new(),
            calls: Arc::default(),
        }
    }

    async fn follow(
        &mut self,
        out: &Publisher,
        shutdown: &CancellationToken,
    ) -> Result<(), DiscoveryError> {
        let engine = Engine::connect((self.connect)()?, self.calls.clone()).await?;
        let networks = engine
            .shared_networks(&self.config.networks, self.config.self_container.as_deref())
            .await?;
        out.status(|s| {
            s.api_version = Some(engine.version());
            s.networks = networks.iter().map(|(_, name)| name.clone()).collect();
        });
        // Subscribe before the first read, so no change falls in between.
        let mut events = Box::pin(engine.events());
        self.services = engine.services().await?;
        self.live.clear();
        let observed = self
            .refresh_tasks(&engine, &networks, HashSet::new())
            .await?;
        self.publish(out, &engine, &observed);
        out.status(|s| {
            s.state = State::Watching;
            s.last_error = None;
            s.next_retry_ms = None;
        });
        tracing::info!(networks = ?networks.iter().map(|n| &n.1).collect::<Vec<_>>(), "swarm discovery watching");
        let mut refresh = tokio::time::interval(self.config.refresh);
        let mut resync = tokio::time::interval(self.config.resync);
        for t in [&mut refresh, &mut resync] {
            t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            t.reset();
        }
        loop {
            let mut full = false;
            let mut recheck = HashSet::new();
            let mut note = |kind: Kind| match kind {
                Kind::Service => full = true,
                Kind::Container(service) => recheck.extend(service),
            };
            tokio::select! {
                () = shutdown.cancelled() => return Ok(()),
                event = events.next() => {
                    match event {
                        Some(Ok(kind)) => note(kind),
                        Some(Err(e)) => return Err(e),
                        None => return Err(DiscoveryError::StreamEnded),
                    }
                    // Take whatever else already arrived in one go.
                    use futures_util::FutureExt as _;
                    while let Some(Some(more)) = events.next().now_or_never() {
                        note(more?);
                    }
                    refresh.reset_after(FOLLOW_UP.min(self.config.refresh));
                }
                _ = refresh.tick() => {}
                _ = resync.tick() => full = true,
            }
            if full {
                self.services = engine.services().await?;
            }
            let observed = self.refresh_tasks(&engine, &networks, recheck).await?;
            self.publish(out, &engine, &observed);
        }
    }

    /// Reads the task endpoints of every shared network, and (one targeted
    /// call each) which tasks still run for the services whose endpoints
    /// changed since the last look or whose containers just started or died;
    /// returns each network with the addresses of its running tasks.
    async fn refresh_tasks(
        &mut self,
        engine: &Engine,
        networks: &[(String, String)],
        mut recheck: HashSet<String>,
    ) -> Result<Vec<ObservedNetwork>, DiscoveryError> {
        let listed = engine.networks(networks).await?;
        for (i, now) in listed.iter().enumerate() {
            let before = self.listed.get(i);
            for (service, endpoints) in now {
                let seen = before.and_then(|b| b.get(service));
                if seen != Some(endpoints) || !self.live.contains_key(service) {
                    recheck.insert(service.clone());
                }
            }
        }
        let listed_names: HashSet<&String> = listed.iter().flat_map(|l| l.keys()).collect();
        self.live.retain(|s, _| listed_names.contains(s));
        recheck.retain(|s| listed_names.contains(s));
        let id_of = |name: &str| {
            self.services
                .iter()
                .find(|s| s.name == name)
                .map(|s| s.id.clone())
        };
        if recheck.len() > TARGETED_CHECKS {
            // Many at once (the first look, a burst): one call for all.
            let mut all = engine.running_tasks(None).await?;
            for service in recheck {
                // A service too new for the service list is checked by name
                // at the next look; until then its endpoints count as listed.
                if let Some(id) = id_of(&service) {
                    let running = all.remove(&id).unwrap_or_default();
                    self.live.insert(service, running);
                }
            }
        } else {
            for service in recheck {
                let mut one = engine.running_tasks(Some(&service)).await?;
                let running = one.drain().flat_map(|(_, tasks)| tasks).collect();
                self.live.insert(service, running);
            }
        }
        let observed = networks
            .iter()
            .zip(&listed)
            .map(|((id, name), l)| ObservedNetwork {
                id: id.clone(),
                name: name.clone(),
                tasks: build::running_only(l, &self.live),
            })
            .collect();
        self.listed = listed;
        Ok(observed)
    }

    fn publish(&mut self, out: &Publisher, engine: &Engine, networks: &[ObservedNetwork]) {
        let (snapshot, problems) = build::build(&self.services, networks, &mut self.last_good);
        for p in problems.iter().filter(|p| !self.reported.contains(p)) {
            tracing::warn!(
                service = p.service.as_deref().unwrap_or("-"),
                label = p.label.as_deref().unwrap_or("-"),
                "{}",
                p.message
            );
        }
        self.reported.clone_from(&problems);
        out.snapshot(snapshot);
        out.status(|s| {
            s.last_sync_ms = Some(now_ms());
            s.api_calls = engine.calls();
            s.problems = problems;
        });
    }
}

impl Source for SwarmSource {
    fn run(mut self: Box<Self>, out: Publisher, shutdown: CancellationToken) -> Running {
        Box::pin(async move {
            let first = Duration::from_secs(1);
            let mut backoff = first;
            loop {
                let started = tokio::time::Instant::now();
                let result = tokio::select! {
                    r = self.follow(&out, &shutdown) => r,
                    () = shutdown.cancelled() => Ok(()),
                };
                let Err(e) = result else {
                    out.status(|s| s.state = State::Stopped);
                    return;
                };
                // A session that ran a while earns a fresh, short backoff.
                if started.elapsed() > self.config.max_backoff {
                    backoff = first;
                }
                let retry_at = now_ms() + u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "swarm discovery lost the engine; serving the last known routes");
                let calls = self.calls.load(std::sync::atomic::Ordering::Relaxed);
                out.status(|s| {
                    s.state = State::Retrying;
                    s.last_error = Some(e.to_string());
                    s.next_retry_ms = Some(retry_at);
                    s.api_calls = calls;
                });
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.cancelled() => {
                        out.status(|s| s.state = State::Stopped);
                        return;
                    }
                }
                backoff = (backoff * 2).min(self.config.max_backoff);
            }
        })
    }
}
