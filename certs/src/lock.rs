//! Who orders a certificate, among replicas sharing one storage directory.
//!
//! A lock is a file created with `O_EXCL` (atomic on local disks and on
//! NFSv3+), holding its holder's name. While it holds the lock, the holder
//! rewrites the file every third of the stale time; a lock whose file has
//! not been written for the stale time was left by a crashed holder and is
//! taken over. After taking a lock a replica looks at the storage again
//! before ordering: another replica may have finished meanwhile.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::CertsError;
use crate::store::Store;

/// A held lock: released (the file removed) on drop.
#[derive(Debug)]
pub(crate) struct Lock {
    path: PathBuf,
    holder: String,
    heartbeat: CancellationToken,
}

/// What trying to lock found.
#[derive(Debug)]
pub(crate) enum Locked {
    /// Ours until dropped.
    Held(Lock),
    /// Another holder's, fresh.
    Busy { holder: String },
}

/// Tries to take the lock for certificate `id` as `holder`.
pub(crate) fn try_lock(
    store: &Store,
    id: &str,
    holder: &str,
    stale: Duration,
) -> Result<Locked, CertsError> {
    let path = store.lock(id);
    for _ in 0..2 {
        match create(&path, holder) {
            Ok(()) => {
                let lock = Lock {
                    path,
                    holder: holder.to_owned(),
                    heartbeat: CancellationToken::new(),
                };
                lock.beat(stale / 3);
                return Ok(Locked::Held(lock));
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let (other, age) = inspect(&path);
                if age < stale {
                    return Ok(Locked::Busy { holder: other });
                }
                tracing::warn!(lock = %path.display(), holder = %other, age_s = age.as_secs(), "taking over a stale lock");
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => return Err(CertsError::io("create", &path, e)),
        }
    }
    let (holder, _) = inspect(&path);
    Ok(Locked::Busy { holder })
}

fn create(path: &PathBuf, holder: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(holder.as_bytes())?;
    f.sync_all()
}

/// The holder named in the lock file and how long ago it was written.
fn inspect(path: &PathBuf) -> (String, Duration) {
    let holder = std::fs::read_to_string(path).unwrap_or_default();
    let age = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .unwrap_or(Duration::MAX);
    (holder, age)
}

impl Lock {
    /// Rewrites the file every `every` until dropped, so others see it alive.
    fn beat(&self, every: Duration) {
        let (path, holder, stop) = (
            self.path.clone(),
            self.holder.clone(),
            self.heartbeat.clone(),
        );
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(every.max(Duration::from_millis(100))) => {}
                }
                // Only while it is still ours (a takeover replaced it).
                if std::fs::read_to_string(&path).ok().as_deref() != Some(holder.as_str()) {
                    return;
                }
                let _ = std::fs::write(&path, holder.as_bytes());
            }
        });
    }

    /// Whether the file still names this holder (not taken over meanwhile).
    pub(crate) fn still_ours(&self) -> bool {
        std::fs::read_to_string(&self.path).ok().as_deref() == Some(self.holder.as_str())
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.heartbeat.cancel();
        if self.still_ours() {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_holder_at_a_time_and_released_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let stale = Duration::from_secs(30);
        let Locked::Held(a) = try_lock(&store, "hub", "a", stale).unwrap() else {
            panic!("a gets the lock")
        };
        match try_lock(&store, "hub", "b", stale).unwrap() {
            Locked::Busy { holder, .. } => assert_eq!(holder, "a"),
            Locked::Held(_) => panic!("b must wait"),
        }
        assert!(a.still_ours());
        drop(a);
        assert!(matches!(
            try_lock(&store, "hub", "b", stale).unwrap(),
            Locked::Held(_)
        ));
    }

    #[tokio::test]
    async fn a_stale_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        // A crashed holder: the file stays, nobody rewrites it.
        std::fs::write(store.lock("hub"), "crashed").unwrap();
        std::thread::sleep(Duration::from_millis(300));
        let stale = Duration::from_millis(200);
        let Locked::Held(b) = try_lock(&store, "hub", "b", stale).unwrap() else {
            panic!("the stale lock is taken over")
        };
        assert!(b.still_ours());
    }

    #[tokio::test]
    async fn a_live_holder_keeps_its_lock_fresh() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let stale = Duration::from_millis(600);
        let Locked::Held(_a) = try_lock(&store, "hub", "a", stale).unwrap() else {
            panic!()
        };
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(
            matches!(
                try_lock(&store, "hub", "b", stale).unwrap(),
                Locked::Busy { .. }
            ),
            "the heartbeat keeps it from going stale"
        );
    }
}
