//! One certificate's renewal state, as its loop in `manager` sees it: what
//! serves, the directory's renewal window, failures and when to try again.
//! Pure: the loop does the I/O and tells the state what happened.

use std::time::SystemTime;

use crate::policy::renew_at;
use crate::x509::Issued;

/// A renewal window (RFC 9773): renew between these two instants.
pub(crate) type Window = (SystemTime, SystemTime);

/// What the loop knows of one certificate.
#[derive(Debug)]
pub(crate) struct Renewal {
    /// The certificate that serves, if any.
    current: Option<Issued>,
    window: Option<Window>,
    /// The serial the window was asked for.
    window_for: Option<String>,
    failures: u32,
    next_retry: SystemTime,
    /// Issued and serving, but not yet in the storage (a full disk).
    unsaved: bool,
    /// This replica's place in the renewal window, 0 to 1.
    jitter: f64,
}

impl Renewal {
    /// Nothing serves yet: due at once.
    pub(crate) fn new(jitter: f64) -> Self {
        Self {
            current: None,
            window: None,
            window_for: None,
            failures: 0,
            next_retry: SystemTime::UNIX_EPOCH,
            unsaved: false,
            jitter,
        }
    }

    /// The certificate that serves.
    pub(crate) fn current(&self) -> Option<&Issued> {
        self.current.as_ref()
    }

    /// Whether `stored` outlives what serves (another replica renewed it).
    pub(crate) fn is_newer(&self, stored: &Issued) -> bool {
        self.current
            .as_ref()
            .is_none_or(|c| c.not_after < stored.not_after)
    }

    /// A certificate the storage holds now serves.
    pub(crate) fn on_stored(&mut self, issued: Issued) {
        self.current = Some(issued);
        self.on_saved();
    }

    /// A certificate issued here and stored: it serves, and its window is
    /// asked anew.
    pub(crate) fn on_issued(&mut self, issued: Issued) {
        self.window = None;
        self.on_stored(issued);
    }

    /// A certificate issued here that the storage did not take: it serves,
    /// and storing it is retried.
    pub(crate) fn on_unsaved(&mut self, issued: Issued) {
        self.current = Some(issued);
        self.unsaved = true;
    }

    /// What serves is in the storage.
    pub(crate) fn on_saved(&mut self) {
        self.unsaved = false;
        self.failures = 0;
        self.next_retry = SystemTime::UNIX_EPOCH;
    }

    /// A failure (order, lock, storage); the failures in a row, for the
    /// backoff, whose end `retry_at` then sets.
    pub(crate) fn on_failure(&mut self) -> u32 {
        self.failures += 1;
        self.failures
    }

    /// No attempt before `at`.
    pub(crate) fn retry_at(&mut self, at: SystemTime) {
        self.next_retry = at;
    }

    /// The certificate whose renewal window is still to ask.
    pub(crate) fn window_wanted(&self) -> Option<&Issued> {
        self.current
            .as_ref()
            .filter(|c| self.window_for.as_deref() != Some(c.serial.as_str()))
    }

    /// The window the directory gave for certificate `serial` (none: it
    /// has no ARI).
    pub(crate) fn set_window(&mut self, serial: String, window: Option<Window>) {
        self.window = window;
        self.window_for = Some(serial);
    }

    /// Whether the directory gave a window.
    pub(crate) fn has_window(&self) -> bool {
        self.window.is_some()
    }

    /// What to store again, when storing failed and the retry is due.
    pub(crate) fn unsaved_due(&self, now: SystemTime) -> Option<&Issued> {
        self.current
            .as_ref()
            .filter(|_| self.unsaved && now >= self.next_retry)
    }

    /// When to renew: in the window (the directory's, else the last third
    /// of the lifetime), never before a failure's backoff ends.
    pub(crate) fn due(&self, now: SystemTime) -> SystemTime {
        self.current
            .as_ref()
            .map_or(now, |c| {
                renew_at(c.not_before, c.not_after, self.window, self.jitter)
            })
            .max(self.next_retry)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn issued(serial: &str, from_s: u64, days: u64) -> Issued {
        let from = SystemTime::UNIX_EPOCH + Duration::from_secs(from_s);
        Issued {
            names: vec!["hub.test".into()],
            not_before: from,
            not_after: from + Duration::from_secs(days * 86_400),
            serial: serial.into(),
            issuer: "test".into(),
            chain_pem: String::new(),
            key_pem: String::new(),
        }
    }

    #[test]
    fn due_at_once_then_in_the_lifetime_and_never_before_a_backoff() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut r = Renewal::new(0.5);
        assert_eq!(r.due(now), now, "nothing serves: due at once");
        r.on_stored(issued("a", 0, 90));
        let due = r.due(now);
        assert!(due > now && due < r.current().unwrap().not_after, "{due:?}");
        r.on_failure();
        let later = due + Duration::from_secs(3_600);
        r.retry_at(later);
        assert_eq!(r.due(now), later, "a backoff past the window wins");
        r.on_saved();
        assert_eq!(r.due(now), due, "a success clears it");
    }

    #[test]
    fn only_a_longer_certificate_is_adopted_and_each_window_is_asked_once() {
        let mut r = Renewal::new(0.0);
        r.on_stored(issued("a", 0, 90));
        assert!(!r.is_newer(&issued("old", 0, 30)));
        assert!(r.is_newer(&issued("b", 10, 90)));
        assert_eq!(r.window_wanted().map(|c| c.serial.as_str()), Some("a"));
        r.set_window("a".into(), None);
        assert!(r.window_wanted().is_none(), "asked for this serial");
        r.on_issued(issued("b", 10, 90));
        assert_eq!(r.window_wanted().map(|c| c.serial.as_str()), Some("b"));
    }

    #[test]
    fn an_unsaved_certificate_serves_and_is_stored_again_after_its_backoff() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let mut r = Renewal::new(0.0);
        r.on_unsaved(issued("a", 0, 90));
        assert_eq!(r.on_failure(), 1);
        r.retry_at(now + Duration::from_secs(60));
        assert_eq!(r.current().map(|c| c.serial.as_str()), Some("a"));
        assert!(r.unsaved_due(now).is_none(), "backing off");
        assert!(r.unsaved_due(now + Duration::from_secs(60)).is_some());
        r.on_saved();
        assert!(r.unsaved_due(now + Duration::from_secs(60)).is_none());
    }
}
