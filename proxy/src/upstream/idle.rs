//! Per-thread pools of idle upstream connections, keyed by connector and
//! upstream address, bounded per upstream and per thread, and swept.
//!
//! Each worker thread runs its own runtime, so a thread-local pool is a
//! per-worker pool: checkout and return touch no lock and no shared cache
//! line. A sweeper task on each thread that serves (`super::start_sweeper`)
//! drops, every few seconds, connections the upstream has closed (so none
//! lingers in CLOSE-WAIT after its server went away) and those idle too
//! long.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::thread::LocalKey;
use std::time::{Duration, Instant};

/// Idle connections kept per upstream and thread.
const MAX_IDLE_PER_UPSTREAM: usize = 256;
/// Idle connections kept per thread, all upstreams together.
const MAX_IDLE_PER_THREAD: usize = 4096;
/// Idle connections older than this are closed (upstreams close idle
/// keep-alive connections on their own schedule).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the sweeper looks.
pub(crate) const SWEEP_EVERY: Duration = Duration::from_secs(5);
/// A connection idle this long is taken for one that polls (a JupyterLab
/// tab every few seconds), and gives up its buffers: a client connection
/// while it waits for its next request (`server::inline`), a pooled
/// upstream connection when it goes back after an exchange it waited this
/// long for (`h1::conn`). A busy connection keeps them and never allocates.
pub(crate) const SHED_AFTER: Duration = Duration::from_secs(1);

/// Which connector a pooled connection came from, and its upstream: two
/// proxies in one process (tests) may trust different CAs, so they must
/// never share a TLS connection.
pub(crate) type PoolKey = (u64, Arc<str>);

/// Idle connections of one kind: one per worker thread. Looked up by
/// `&str`, so taking a connection clones no shared `Arc` (its count would
/// bounce between the workers' cores).
pub(crate) struct Pool<T> {
    by_connector: HashMap<u64, ByUpstream<T>, Fast>,
    count: usize,
}

pub(crate) type Idle<T> = RefCell<Pool<T>>;

/// One connector's idle connections by upstream, each with when it parked.
type ByUpstream<T> = HashMap<Arc<str>, Vec<(T, Instant)>, Fast>;

/// FNV-1a for the pool's keys: they are the proxy's own upstream addresses,
/// never outside input, so an unkeyed hash is safe here and spares two
/// SipHash runs on every checkout and return.
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl std::hash::Hasher for Fnv {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

type Fast = std::hash::BuildHasherDefault<Fnv>;

impl<T> Pool<T> {
    pub(crate) fn new() -> Self {
        Self {
            by_connector: HashMap::default(),
            count: 0,
        }
    }

    /// Takes out connections that are too old or no longer `keep` (which
    /// may also trim what a kept one holds), in the order they were parked,
    /// and forgets the upstreams left with none.
    fn sweep(&mut self, now: Instant, mut keep: impl FnMut(&mut T) -> bool) -> Vec<T> {
        let mut count = 0;
        let mut gone = Vec::new();
        self.by_connector.retain(|_, by_upstream| {
            by_upstream.retain(|_, list| {
                // In place, the kept ones in the order they were parked.
                let mut kept = 0;
                for i in 0..list.len() {
                    let (conn, since) = &mut list[i];
                    if now.duration_since(*since) < IDLE_TIMEOUT && keep(conn) {
                        list.swap(kept, i);
                        kept += 1;
                    }
                }
                gone.extend(list.drain(kept..).map(|(conn, _)| conn));
                count += kept;
                !list.is_empty()
            });
            !by_upstream.is_empty()
        });
        self.count = count;
        gone
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.count
    }
}

/// Keeps `conn` for the next request to its pool key (`key` finds it in
/// `conn`) on this thread, unless the pool is full; the key is cloned only
/// for a new upstream.
pub(crate) fn park<T: 'static>(
    idle: &'static LocalKey<Idle<T>>,
    conn: T,
    key: impl FnOnce(&T) -> &PoolKey,
) {
    idle.with_borrow_mut(|pool| {
        if pool.count >= MAX_IDLE_PER_THREAD {
            return;
        }
        let (connector, upstream) = key(&conn);
        let by_upstream = pool.by_connector.entry(*connector).or_default();
        let list = match by_upstream.get_mut(&**upstream) {
            Some(list) => list,
            None => by_upstream.entry(upstream.clone()).or_default(),
        };
        if list.len() < MAX_IDLE_PER_UPSTREAM {
            list.push((conn, Instant::now()));
            pool.count += 1;
        }
    });
}

/// The most recently parked connection of `connector` to `upstream` that is
/// young enough and `usable`, and how long it sat idle; the others found on
/// the way are dropped.
pub(crate) fn unpark<T: 'static>(
    idle: &'static LocalKey<Idle<T>>,
    connector: u64,
    upstream: &str,
    usable: impl Fn(&T) -> bool,
) -> Option<(T, Duration)> {
    idle.with_borrow_mut(|pool| {
        let list = pool.by_connector.get_mut(&connector)?.get_mut(upstream)?;
        while let Some((conn, since)) = list.pop() {
            pool.count -= 1;
            let idle = since.elapsed();
            if idle < IDLE_TIMEOUT && usable(&conn) {
                return Some((conn, idle));
            }
        }
        None
    })
}

/// Sweeps the pool `idle` of this thread: `keep` says whether a connection
/// stays, and may trim what it holds meanwhile. Returns those that go, for
/// [`close_gradually`].
pub(crate) fn sweep<T: 'static>(
    idle: &'static LocalKey<Idle<T>>,
    now: Instant,
    keep: impl FnMut(&mut T) -> bool,
) -> Vec<T> {
    idle.with_borrow_mut(|pool| pool.sweep(now, keep))
}

/// Connections closed between two turns of the worker's other tasks.
const CLOSE_BATCH: usize = 32;

/// Drops `gone` a few at a time, letting the thread's other tasks run in
/// between. A sweep can find thousands of connections expired at once (a
/// ramp of logins parks each browser's burst connections within seconds
/// of each other): closing them in one go held a worker for 18 ms, which
/// every request on it waited out.
pub(crate) async fn close_gradually<T>(mut gone: Vec<T>) {
    while !gone.is_empty() {
        gone.truncate(gone.len().saturating_sub(CLOSE_BATCH));
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        static TEST: Idle<(PoolKey, bool)> = RefCell::new(Pool::new());
        static COUNTED: Idle<(PoolKey, Counted)> = RefCell::new(Pool::new());
        static CLOSED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
    }

    /// A connection that counts its close.
    struct Counted;

    impl Drop for Counted {
        fn drop(&mut self) {
            CLOSED.set(CLOSED.get() + 1);
        }
    }

    /// Closing a thousand expired connections lets the thread's other
    /// tasks run before the last is closed (closed in one go, they held a
    /// worker for 18 ms at 1,000 JupyterHub users in the bench).
    #[tokio::test(flavor = "current_thread")]
    async fn closing_many_lets_other_tasks_run_between() {
        for i in 0..1000 {
            let key: PoolKey = (1, format!("10.0.0.{}:80", i % 8).into());
            park(&COUNTED, (key, Counted), |(k, _)| k);
        }
        let gone = sweep(&COUNTED, Instant::now() + IDLE_TIMEOUT, |_| true);
        assert_eq!((gone.len(), CLOSED.get()), (1000, 0));
        let other = tokio::spawn(async { CLOSED.get() });
        close_gradually(gone).await;
        let seen = other.await.unwrap();
        assert!(seen > 0 && seen < 1000, "the other task saw {seen} closed");
        assert_eq!(CLOSED.get(), 1000);
    }

    #[test]
    fn parks_sweeps_and_bounds() {
        let key: PoolKey = (7, "10.0.0.1:80".into());
        for alive in [true, false, true] {
            park(&TEST, (key.clone(), alive), |(k, _)| k);
        }
        TEST.with_borrow(|p| assert_eq!(p.len(), 3));
        let gone = sweep(&TEST, Instant::now(), |(_, alive)| *alive);
        assert_eq!(gone.len(), 1);
        TEST.with_borrow(|p| assert_eq!(p.len(), 2));
        let gone = sweep(&TEST, Instant::now() + IDLE_TIMEOUT, |_| true);
        assert_eq!(gone.len(), 2);
        TEST.with_borrow(|p| assert_eq!(p.len(), 0));
        TEST.with_borrow(|p| assert!(p.by_connector.is_empty()));
        for _ in 0..MAX_IDLE_PER_UPSTREAM + 5 {
            park(&TEST, (key.clone(), true), |(k, _)| k);
        }
        TEST.with_borrow(|p| assert_eq!(p.len(), MAX_IDLE_PER_UPSTREAM));
        assert!(unpark(&TEST, 7, "10.0.0.1:80", |_| true).is_some());
        TEST.with_borrow(|p| assert_eq!(p.len(), MAX_IDLE_PER_UPSTREAM - 1));
    }
}
