//! What the simulated users measure, sent from their tasks: samples
//! (taken only while a step's window is open, but login bursts always),
//! how many users are ready, and errors by kind with the first of each.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel};

enum Event {
    Kernel(f64),
    Rest(f64),
    Burst(f64),
    Error(&'static str, String),
}

/// The users' side: what they saw goes down a channel to the [`Collector`].
pub(crate) struct Stats {
    recording: AtomicBool,
    ready: AtomicUsize,
    gave_up: AtomicUsize,
    tx: UnboundedSender<Event>,
}

/// The driver's side: drains what the users sent.
pub(crate) struct Collector(UnboundedReceiver<Event>);

/// One step's samples, drained.
#[derive(Default)]
pub(crate) struct Drained {
    pub(crate) kernel_us: Vec<f64>,
    pub(crate) rest_us: Vec<f64>,
    pub(crate) burst_ms: Vec<f64>,
    /// Kind → (count, first message).
    pub(crate) errors: BTreeMap<&'static str, (u64, String)>,
}

impl Drained {
    pub(crate) fn error_count(&self) -> u64 {
        self.errors.values().map(|(n, _)| n).sum()
    }

    /// `kind ×count (first: …)`, one per kind.
    pub(crate) fn error_summary(&self) -> String {
        self.errors
            .iter()
            .map(|(kind, (n, first))| format!("{kind} ×{n} (first: {first})"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// A pair: the users' side, shared, and the driver's.
pub(crate) fn stats() -> (Stats, Collector) {
    let (tx, rx) = unbounded_channel();
    let stats = Stats {
        recording: AtomicBool::new(false),
        ready: AtomicUsize::new(0),
        gave_up: AtomicUsize::new(0),
        tx,
    };
    (stats, Collector(rx))
}

impl Stats {
    pub(crate) fn record(&self, on: bool) {
        self.recording.store(on, Ordering::SeqCst);
    }

    fn recording(&self) -> bool {
        self.recording.load(Ordering::Relaxed)
    }

    fn send(&self, event: Event) {
        // The collector lives as long as the run; a send after it is gone
        // has no one to tell.
        let _ = self.tx.send(event);
    }

    pub(crate) fn kernel(&self, us: f64) {
        if self.recording() {
            self.send(Event::Kernel(us));
        }
    }

    pub(crate) fn rest(&self, us: f64) {
        if self.recording() {
            self.send(Event::Rest(us));
        }
    }

    pub(crate) fn burst(&self, ms: f64) {
        self.send(Event::Burst(ms));
    }

    pub(crate) fn ready(&self) {
        self.ready.fetch_add(1, Ordering::SeqCst);
    }

    /// A user whose login failed: counted so the ramp does not wait for it.
    pub(crate) fn gave_up(&self) {
        self.gave_up.fetch_add(1, Ordering::SeqCst);
    }

    /// Users logged in, plus those that gave up.
    pub(crate) fn settled(&self) -> usize {
        self.ready.load(Ordering::SeqCst) + self.gave_up.load(Ordering::SeqCst)
    }

    pub(crate) fn error(&self, kind: &'static str, detail: impl std::fmt::Display) {
        self.send(Event::Error(kind, detail.to_string()));
    }
}

impl Collector {
    /// Everything sent so far.
    pub(crate) fn drain(&mut self) -> Drained {
        let mut d = Drained::default();
        while let Ok(event) = self.0.try_recv() {
            match event {
                Event::Kernel(v) => d.kernel_us.push(v),
                Event::Rest(v) => d.rest_us.push(v),
                Event::Burst(v) => d.burst_ms.push(v),
                Event::Error(kind, detail) => d.errors.entry(kind).or_insert((0, detail)).0 += 1,
            }
        }
        d
    }
}

/// The `q` quantile of `v` (sorted here), or NaN when empty.
pub(crate) fn quantile(v: &mut [f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// A small, fast generator for jitter (xorshift64*), seeded per user.
pub(crate) struct Jitter(u64);

impl Jitter {
    pub(crate) fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// Uniform in [0, 1).
    pub(crate) fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// `base` scaled by a factor in [0.8, 1.2).
    pub(crate) fn around(&mut self, base: std::time::Duration) -> std::time::Duration {
        base.mul_f64(0.8 + 0.4 * self.unit())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_and_jitter_stay_in_range() {
        let mut v: Vec<f64> = (1..=1000).map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.5), 501.0);
        assert_eq!(quantile(&mut v, 0.99), 990.0);
        assert!(quantile(&mut [], 0.5).is_nan());
        let mut j = Jitter::new(7);
        for _ in 0..10_000 {
            let u = j.unit();
            assert!((0.0..1.0).contains(&u));
        }
    }

    #[test]
    fn samples_count_only_while_recording_and_errors_keep_the_first() {
        let (s, mut collector) = stats();
        s.kernel(1.0);
        s.record(true);
        s.kernel(2.0);
        s.burst(3.0);
        s.error("rest", "first");
        s.error("rest", "second");
        let d = collector.drain();
        assert_eq!(d.kernel_us, vec![2.0]);
        assert_eq!(d.burst_ms, vec![3.0]);
        assert_eq!(d.error_count(), 2);
        assert!(d.error_summary().contains("first"), "{}", d.error_summary());
    }
}
