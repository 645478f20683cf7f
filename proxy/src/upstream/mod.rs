//! The upstream side: where a route's requests go and how they get there.
//!
//! Nothing here imports the route table, the request handler or the
//! server; the modules import each other without a cycle
//! (`scripts/check-cycles`):
//! - [`balance`]: a route's endpoint set (several task addresses of a swarm
//!   service), the choice of one per request (round robin, least
//!   connections, sticky cookie) and its passive and active health state;
//! - [`health`]: the active health checker that probes balanced endpoints;
//! - [`h1`]: the inline HTTP/1.1 exchange: a pooled connection, the
//!   response head, the body and its framing;
//! - [`pool`]: the connector and hyper's client connections;
//! - [`idle`]: the per-thread pools of idle connections, bounded and swept;
//! - [`body`]: request bodies going up and hyper's response bodies coming back;
//! - [`target`]: a parsed upstream URL;
//! - [`socket`]: TCP keepalive and waker hygiene for upstream sockets.

pub(crate) mod balance;
pub(crate) mod body;
pub(crate) mod h1;
pub(crate) mod health;
pub(crate) mod idle;
pub(crate) mod pool;
pub(crate) mod socket;
pub(crate) mod target;

thread_local! {
    static SWEEPING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Starts this thread's sweeper of idle upstream connections, once per
/// thread; it runs as long as the thread's runtime. Must be called inside
/// a runtime.
pub(crate) fn start_sweeper() {
    if SWEEPING.replace(true) {
        return;
    }
    tokio::spawn(async {
        let mut every = tokio::time::interval(idle::SWEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let now = std::time::Instant::now();
            idle::close_gradually(h1::sweep(now)).await;
            idle::close_gradually(pool::sweep(now)).await;
        }
    });
}
