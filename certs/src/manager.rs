//! The certificate loop: for each configured set of names, load what the
//! storage holds (another replica may have renewed it), publish it, and
//! renew when due — under the storage lock, so one replica orders while the
//! others load its result. Failures keep the current certificate serving and
//! back off; every state is in [`Manager::status`].

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use instant_acme::{Account, RetryPolicy};
use serde::Serialize;
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

use crate::challenge::Challenges;
use crate::lock::{Locked, try_lock};
use crate::policy::{Backoff, jitter};
use crate::renewal::Renewal;
use crate::store::Store;
use crate::x509::{Issued, inspect};
use crate::{CertsError, ChallengeKind, acme};

/// What the manager does, and for which names.
#[derive(Debug, Clone)]
pub struct AcmeConfig {
    /// The directory URL (Let's Encrypt production, staging, or a private CA).
    pub directory: String,
    /// Contact for the account (expiry notices).
    pub email: Option<String>,
    /// Trust anchors (PEM) for the directory's HTTPS certificate; `None`:
    /// the web PKI roots.
    pub ca_pem: Option<Vec<u8>>,
    /// How authorizations are answered.
    pub challenge: ChallengeKind,
    /// One certificate per entry, for these names (the first names its
    /// storage and lock).
    pub certificates: Vec<Vec<String>>,
    /// This replica's name in lock files (host name and process ID).
    pub holder: String,
    /// Waits after failed orders.
    pub backoff: Backoff,
    /// A lock not rewritten for this long is taken over.
    pub lock_stale: Duration,
    /// How often the storage is looked at while nothing is due.
    pub check_every: Duration,
    /// How long one order may wait for validation and issuance.
    pub order_timeout: Duration,
}

impl AcmeConfig {
    /// Defaults for `certificates` at `directory`.
    pub fn new(directory: String, certificates: Vec<Vec<String>>, holder: String) -> Self {
        Self {
            directory,
            email: None,
            ca_pem: None,
            challenge: ChallengeKind::Http01,
            certificates,
            holder,
            backoff: Backoff::default(),
            lock_stale: Duration::from_secs(30),
            check_every: Duration::from_secs(60),
            order_timeout: Duration::from_secs(120),
        }
    }
}

/// One certificate's state, for `GET /api/certs`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CertStatus {
    /// The names it covers.
    pub names: Vec<String>,
    /// `pending` (none yet), `valid`, `renewing` or `failing`.
    pub state: &'static str,
    /// Validity (ms since the epoch) of the certificate being served.
    pub not_before_ms: Option<u64>,
    /// End of validity (ms since the epoch).
    pub not_after_ms: Option<u64>,
    /// When renewal is due (ms since the epoch).
    pub renew_at_ms: Option<u64>,
    /// Issuer of the certificate being served.
    pub issuer: Option<String>,
    /// Whether the directory's renewal window (ARI) sets the renewal time.
    pub ari: bool,
    /// Failed attempts in a row.
    pub failures: u32,
    /// The last failure.
    pub last_error: Option<String>,
    /// When the next attempt is due after a failure (ms since the epoch).
    pub next_retry_ms: Option<u64>,
    /// Another replica is ordering it (its name in the lock).
    pub ordered_by: Option<String>,
}

/// Runs the certificate loops and publishes their certificates.
pub struct Manager {
    config: AcmeConfig,
    store: Store,
    challenges: Arc<Challenges>,
    /// The ACME account, once registered or loaded (never on the request
    /// path: only the certificate loops take this lock).
    account: Mutex<Option<Account>>,
    published: watch::Sender<Arc<Vec<Issued>>>,
    /// The certificates kept, in the order they were asked for.
    certs: ArcSwap<Vec<Arc<Kept>>>,
    /// Set by [`Manager::run`]: loops for certificates added later start
    /// at once and stop with the others.
    running: std::sync::OnceLock<CancellationToken>,
}

/// What a certificate's loop does after one round.
enum Next {
    /// Look again at once.
    Now,
    /// Look again after this long.
    Wait(Duration),
    /// Shutting down.
    Stop,
}

/// One certificate the manager keeps.
struct Kept {
    names: Vec<String>,
    status: ArcSwap<CertStatus>,
    /// Its loop runs (started once, by `run` or `manage`).
    started: std::sync::atomic::AtomicBool,
}

impl Kept {
    fn new(names: Vec<String>) -> Arc<Self> {
        let status = ArcSwap::from_pointee(CertStatus {
            names: names.clone(),
            state: "pending",
            ..CertStatus::default()
        });
        Arc::new(Self {
            names,
            status,
            started: std::sync::atomic::AtomicBool::new(false),
        })
    }
}

/// Whether the CA no longer knows the account the error came from.
fn account_gone(e: &CertsError) -> bool {
    matches!(e, CertsError::Acme(instant_acme::Error::Api(p))
        if p.r#type.as_deref().is_some_and(|t| t.ends_with(":accountDoesNotExist")))
}

fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Manager {
    /// A manager over `store`. Nothing is ordered before [`Manager::run`].
    pub fn new(config: AcmeConfig, store: Store) -> Self {
        let certs = config.certificates.iter().cloned().map(Kept::new).collect();
        Self {
            challenges: Arc::new(Challenges::new(store.clone())),
            published: watch::Sender::new(Arc::new(Vec::new())),
            store,
            config,
            account: Mutex::new(None),
            certs: ArcSwap::from_pointee(certs),
            running: std::sync::OnceLock::new(),
        }
    }

    /// Keeps a certificate for `names` too (the TLS domains of discovered
    /// services), unless one with the same first name is kept already.
    /// Names that cannot be ordered are refused before anything is asked.
    pub fn manage(self: &Arc<Self>, names: Vec<String>) -> Result<(), CertsError> {
        crate::check_names(&names)?;
        let Some(first) = names.first().cloned() else {
            return Ok(());
        };
        let mut added = None;
        self.certs.rcu(|certs| {
            if certs.iter().any(|k| k.names[0] == first) {
                added = None;
                return Arc::clone(certs);
            }
            let kept = Kept::new(names.clone());
            added = Some(kept.clone());
            let mut next = Vec::clone(certs);
            next.push(kept);
            Arc::new(next)
        });
        if let Some(kept) = added {
            tracing::info!(names = ?kept.names, "certificate wanted by discovery");
            self.start(&kept);
        }
        Ok(())
    }

    /// Starts `kept`'s loop once the manager runs (and only once).
    fn start(self: &Arc<Self>, kept: &Arc<Kept>) {
        let Some(stop) = self.running.get() else {
            return;
        };
        if !kept.started.swap(true, std::sync::atomic::Ordering::SeqCst) {
            let (me, kept, stop) = (self.clone(), kept.clone(), stop.clone());
            tokio::spawn(async move { me.keep(kept, stop).await });
        }
    }

    /// The challenges to answer (HTTP-01 tokens, TLS-ALPN-01 certificates).
    pub fn challenges(&self) -> &Arc<Challenges> {
        &self.challenges
    }

    /// Every valid certificate, republished on each change.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Vec<Issued>>> {
        self.published.subscribe()
    }

    /// Each certificate's state.
    pub fn status(&self) -> Vec<CertStatus> {
        self.certs
            .load()
            .iter()
            .map(|k| CertStatus::clone(&k.status.load()))
            .collect()
    }

    /// Loads what the storage holds, publishes it, then keeps every
    /// certificate renewed until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        if self.running.set(shutdown.clone()).is_err() {
            return;
        }
        for kept in self.certs.load().iter() {
            self.start(kept);
        }
        shutdown.cancelled().await;
    }

    /// Keeps certificate `kept` valid: adopts what the storage holds (a
    /// replica may have renewed it), asks its renewal window, stores again
    /// what a full disk refused, and orders a new one when due.
    async fn keep(&self, kept: Arc<Kept>, shutdown: CancellationToken) {
        let id = &kept.names[0];
        let mut r = Renewal::new(jitter(&format!("{id}{}", self.config.holder)));
        loop {
            self.adopt_stored(&kept, &mut r);
            self.ask_window(&mut r).await;
            let now = SystemTime::now();
            self.store_again(&kept, &mut r, now);
            let due = r.due(now);
            self.set_status(&kept, |s| {
                s.renew_at_ms = Some(ms(due));
                s.ari = r.has_window();
            });
            let next = match due.duration_since(now) {
                Ok(wait) if !wait.is_zero() => Next::Wait(wait.min(self.config.check_every)),
                _ => self.renew(&kept, &mut r, &shutdown).await,
            };
            let wait = match next {
                Next::Stop => return,
                Next::Now => continue,
                Next::Wait(wait) => wait,
            };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// The storage is the truth: a certificate there that outlives what
    /// serves (another replica renewed it) serves from now on.
    fn adopt_stored(&self, kept: &Kept, r: &mut Renewal) {
        let id = &kept.names[0];
        match self.load(id, &kept.names) {
            Ok(Some(stored)) if r.is_newer(&stored) => {
                r.on_stored(stored);
                self.publish(kept, r.current());
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(certificate = %id, error = %e, "stored certificate unusable")
            }
        }
    }

    /// The directory's renewal window (RFC 9773), asked once per
    /// certificate; a directory without ARI answers none at once.
    async fn ask_window(&self, r: &mut Renewal) {
        let Some(current) = r.window_wanted().cloned() else {
            return;
        };
        if let Ok(account) = self.account(false).await {
            let window = acme::renewal_window(&account, &current).await;
            r.set_window(current.serial, window);
        }
    }

    /// Stores again an issued certificate the storage refused, once its
    /// backoff has passed.
    fn store_again(&self, kept: &Kept, r: &mut Renewal, now: SystemTime) {
        let Some(c) = r.unsaved_due(now) else {
            return;
        };
        let id = &kept.names[0];
        match self
            .store
            .write_cert(id, c.chain_pem.as_bytes(), c.key_pem.as_bytes())
        {
            Ok(()) => {
                r.on_saved();
                self.publish(kept, r.current());
            }
            Err(e) => {
                let failures = r.on_failure();
                r.retry_at(self.failed(kept, failures, &e));
            }
        }
    }

    /// Orders a new certificate under the storage's lock (one replica
    /// orders; the others wait and adopt it) and stores it.
    async fn renew(&self, kept: &Kept, r: &mut Renewal, shutdown: &CancellationToken) -> Next {
        let id = &kept.names[0];
        let lock = match try_lock(&self.store, id, &self.config.holder, self.config.lock_stale) {
            Ok(Locked::Held(lock)) => lock,
            Ok(Locked::Busy { holder, .. }) => {
                self.set_status(kept, |s| s.ordered_by = Some(holder));
                return Next::Wait(self.config.check_every.min(Duration::from_secs(2)));
            }
            Err(e) => {
                let failures = r.on_failure();
                r.retry_at(self.failed(kept, failures, &e));
                return Next::Now;
            }
        };
        // It may have been renewed between the look and the lock.
        if let Ok(Some(stored)) = self.load(id, &kept.names) {
            if r.is_newer(&stored) {
                return Next::Now;
            }
        }
        self.set_status(kept, |s| {
            s.state = "renewing";
            s.ordered_by = None;
        });
        let attempt = tokio::select! {
            () = shutdown.cancelled() => return Next::Stop,
            r = self.obtain(&kept.names, r.current()) => r,
        };
        let issued = match attempt {
            Ok(issued) => issued,
            Err(e) => {
                drop(lock);
                self.publish(kept, r.current());
                let failures = r.on_failure();
                r.retry_at(self.failed(kept, failures, &e));
                return Next::Now;
            }
        };
        let saved =
            self.store
                .write_cert(id, issued.chain_pem.as_bytes(), issued.key_pem.as_bytes());
        drop(lock);
        match saved {
            Ok(()) => {
                r.on_issued(issued);
                tracing::info!(certificate = %id, "certificate issued");
                self.publish(kept, r.current());
            }
            Err(e) => {
                // An issued certificate that could not be stored still
                // serves; storing it is retried with the backoff.
                r.on_unsaved(issued);
                self.publish(kept, r.current());
                let failures = r.on_failure();
                r.retry_at(self.failed(kept, failures, &e));
            }
        }
        Next::Now
    }

    fn load(&self, id: &str, names: &[String]) -> Result<Option<Issued>, CertsError> {
        let Some((chain, key)) = self.store.read_cert(id)? else {
            return Ok(None);
        };
        let text = |b: Vec<u8>| {
            String::from_utf8(b).map_err(|_| CertsError::BadCertificate("not PEM".into()))
        };
        inspect(&text(chain)?, &text(key)?, names, SystemTime::now()).map(Some)
    }

    async fn obtain(
        &self,
        names: &[String],
        current: Option<&Issued>,
    ) -> Result<Issued, CertsError> {
        let c = &self.config;
        let poll = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .backoff(1.5)
            .timeout(c.order_timeout);
        let mut fresh = false;
        loop {
            let account = self.account(fresh).await?;
            match acme::order(
                &account,
                names,
                c.challenge,
                &self.challenges,
                current,
                poll,
            )
            .await
            {
                // The CA forgot the account (a test CA restarted, or it was
                // deactivated): register again, once.
                Err(e) if !fresh && account_gone(&e) => {
                    tracing::warn!(error = %e, "the ACME server no longer knows the account; registering again");
                    fresh = true;
                }
                other => return other,
            }
        }
    }

    /// The account: loaded or registered once, or again when `fresh`.
    async fn account(&self, fresh: bool) -> Result<Account, CertsError> {
        let c = &self.config;
        let mut slot = self.account.lock().await;
        if let Some(a) = slot.as_ref().filter(|_| !fresh) {
            return Ok(a.clone());
        }
        let a = acme::account(
            &self.store,
            &c.directory,
            c.email.as_deref(),
            c.ca_pem.as_deref(),
            &c.holder,
            fresh,
        )
        .await?;
        *slot = Some(a.clone());
        Ok(a)
    }

    /// Records a failure; returns when to try again.
    fn failed(&self, i: &Kept, failures: u32, e: &CertsError) -> SystemTime {
        let wait = self.config.backoff.after(failures);
        let next = SystemTime::now() + wait;
        tracing::warn!(
            certificate = %i.names[0],
            error = %e,
            failures,
            retry_in_s = wait.as_secs(),
            "certificate not renewed; the current one keeps serving"
        );
        self.set_status(i, |s| {
            s.state = "failing";
            s.failures = failures;
            s.last_error = Some(e.to_string());
            s.next_retry_ms = Some(ms(next));
        });
        next
    }

    fn publish(&self, i: &Kept, issued: Option<&Issued>) {
        let Some(issued) = issued else { return };
        self.set_status(i, |s| {
            s.state = "valid";
            s.not_before_ms = Some(ms(issued.not_before));
            s.not_after_ms = Some(ms(issued.not_after));
            s.issuer = Some(issued.issuer.clone());
            s.failures = 0;
            s.last_error = None;
            s.next_retry_ms = None;
        });
        self.published.send_modify(|all| {
            let mut next: Vec<Issued> = all
                .iter()
                .filter(|c| c.names != issued.names)
                .cloned()
                .collect();
            next.push(issued.clone());
            *all = Arc::new(next);
        });
    }

    fn set_status(&self, i: &Kept, change: impl FnOnce(&mut CertStatus)) {
        let mut next = CertStatus::clone(&i.status.load());
        change(&mut next);
        i.status.store(Arc::new(next));
    }
}
