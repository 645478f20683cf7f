//! When to renew and when to retry: pure functions of the certificate's
//! lifetime, the directory's renewal window (RFC 9773 ARI) and the failures
//! so far, so every rule is unit-tested with fixed clocks.
//!
//! - Without ARI: at 2/3 of the lifetime (Let's Encrypt's own guidance,
//!   certbot and certmagic alike), moved earlier by a random part of 1/30
//!   of the lifetime so replicas and many names do not renew in step. Never
//!   a fixed number of days: lifetimes are going from 90 to 45 and 6 days.
//! - With ARI: a random moment inside the suggested window.
//! - Emergency floor: with 1/20 of the lifetime left, now, whatever ARI says.
//! - Failures: capped exponential backoff from `base`, so a failing name is
//!   not hammered (Let's Encrypt allows 5 failed validations per name and
//!   hour): 2 min, 4, 8, ... up to `cap` by default.

use std::time::{Duration, SystemTime};

/// Backoff after failed orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Wait after the first failure.
    pub base: Duration,
    /// Longest wait.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(120),
            cap: Duration::from_secs(4 * 3600),
        }
    }
}

impl Backoff {
    /// The wait after `failures` failures in a row (1 = the first).
    pub fn after(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(30));
        self.base.saturating_mul(factor).min(self.cap)
    }
}

/// When a certificate valid from `not_before` to `not_after` is to be
/// renewed. `window` is the directory's ARI suggestion; `jitter` in [0, 1)
/// picks the random moment.
pub fn renew_at(
    not_before: SystemTime,
    not_after: SystemTime,
    window: Option<(SystemTime, SystemTime)>,
    jitter: f64,
) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    let emergency = not_after.checked_sub(lifetime / 20).unwrap_or(not_before);
    let planned = match window {
        Some((start, end)) if end > start => {
            let span = end.duration_since(start).unwrap_or_default();
            start + span.mul_f64(jitter.clamp(0.0, 1.0))
        }
        Some((start, _)) => start,
        None => {
            let two_thirds = not_before + lifetime.mul_f64(2.0 / 3.0);
            two_thirds
                .checked_sub((lifetime / 30).mul_f64(jitter.clamp(0.0, 1.0)))
                .unwrap_or(two_thirds)
        }
    };
    planned.min(emergency)
}

/// A number in [0, 1) from `seed` and the clock: jitter without a random
/// number generator dependency (FNV-1a, then the top 53 bits).
pub fn jitter(seed: &str) -> f64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let h = fnv(seed.bytes().chain(nanos.to_le_bytes()));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// FNV-1a over `bytes`: stable names for files, and jitter.
pub(crate) fn fnv(bytes: impl IntoIterator<Item = u8>) -> u64 {
    bytes.into_iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: Duration = Duration::from_secs(86_400);

    fn t(days: f64) -> SystemTime {
        SystemTime::UNIX_EPOCH + DAY.mul_f64(days)
    }

    #[test]
    fn two_thirds_of_the_lifetime_with_jitter_before_it() {
        let (nb, na) = (t(100.0), t(190.0));
        assert_eq!(renew_at(nb, na, None, 0.0), t(160.0));
        let early = renew_at(nb, na, None, 0.999);
        assert!(early < t(160.0) && early > t(156.9), "at most 1/30 earlier");
        // A 6-day certificate: day 4.
        assert_eq!(renew_at(t(0.0), t(6.0), None, 0.0), t(4.0));
    }

    #[test]
    fn an_ari_window_is_followed_but_not_past_the_emergency_floor() {
        let (nb, na) = (t(0.0), t(90.0));
        let window = Some((t(50.0), t(52.0)));
        assert_eq!(renew_at(nb, na, window, 0.5), t(51.0));
        let late = Some((t(89.0), t(95.0)));
        assert_eq!(
            renew_at(nb, na, late, 0.5),
            t(85.5),
            "1/20 of the lifetime left"
        );
        let revoked = Some((t(10.0), t(10.0)));
        assert_eq!(renew_at(nb, na, revoked, 0.7), t(10.0), "renew now");
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let b = Backoff {
            base: Duration::from_secs(120),
            cap: Duration::from_secs(3600),
        };
        let waits: Vec<u64> = (1..=7).map(|n| b.after(n).as_secs()).collect();
        assert_eq!(waits, [120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(b.after(1000), b.cap);
    }

    #[test]
    fn jitter_is_in_range() {
        for i in 0..100 {
            let j = jitter(&format!("name{i}"));
            assert!((0.0..1.0).contains(&j));
        }
    }
}
