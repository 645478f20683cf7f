//! `--routes-file`: the API's routes survive a restart. The file holds what
//! `GET /api/routes` returns; it is rewritten atomically (temporary file,
//! fsync, rename) shortly after each change and once more at shutdown.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hubgate_certs::files::write_atomic;
use hubgate_proxy::RouteStore;

/// Changes arriving within this window are written together.
const COALESCE: Duration = Duration::from_millis(100);
/// Wait before retrying a failed write.
const RETRY: Duration = Duration::from_secs(5);

/// Restores routes from `path` if it exists. A file that cannot be parsed is
/// moved aside (never deleted) and the proxy starts without it.
pub(crate) async fn restore(path: &Path, routes: &RouteStore) -> anyhow::Result<()> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(file = %path.display(), "no routes file yet; starting with an empty table");
            return Ok(());
        }
        Err(e) => {
            return Err(e).with_context(|| format!("cannot read routes file {}", path.display()));
        }
    };
    match routes.restore_api_routes(&bytes).await {
        Ok(n) => tracing::info!(file = %path.display(), routes = n, "restored routes"),
        Err(e) => {
            let aside = aside_path(path);
            std::fs::rename(path, &aside)
                .with_context(|| format!("cannot move bad routes file {} aside", path.display()))?;
            tracing::error!(
                file = %path.display(), moved_to = %aside.display(), error = %e,
                "routes file is not valid; starting without it"
            );
        }
    }
    Ok(())
}

fn aside_path(path: &Path) -> PathBuf {
    let mut name = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    name.push(format!(".bad-{}", hubgate_proxy::now_ms()));
    path.with_file_name(name)
}

/// Writes the current API routes to `path`; false when the write failed.
pub(crate) async fn save(path: &Path, routes: &RouteStore) -> bool {
    let json = routes.load().render_api_routes(None);
    let target = path.to_owned();
    let result =
        tokio::task::spawn_blocking(move || write_atomic(&target, json.as_bytes(), 0o644)).await;
    let error = match result {
        Ok(Ok(())) => {
            tracing::debug!(file = %path.display(), "routes file written");
            return true;
        }
        Ok(Err(e)) => e.to_string(),
        Err(e) => e.to_string(),
    };
    tracing::error!(file = %path.display(), %error, "cannot write routes file; will retry");
    false
}

/// Rewrites the file after every change until the store is dropped. A
/// failed write (full disk, say) is retried, so the file catches up even if
/// no further change comes.
pub(crate) async fn keep_saved(path: PathBuf, routes: Arc<RouteStore>) {
    let mut changes = routes.subscribe();
    while changes.changed().await.is_ok() {
        loop {
            tokio::time::sleep(COALESCE).await;
            changes.borrow_and_update();
            if save(&path, &routes).await {
                break;
            }
            tokio::time::sleep(RETRY).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_bad_file_moved_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("routes.json");
        let store = RouteStore::new(false);
        store
            .add_api_route("/user/a", br#"{"target":"http://127.0.0.1:1","user":"a"}"#)
            .await
            .unwrap();
        save(&path, &store).await;

        let restored = RouteStore::new(false);
        restore(&path, &restored).await.unwrap();
        assert_eq!(
            restored.load().render_api_routes(None),
            store.load().render_api_routes(None)
        );

        std::fs::write(&path, b"{not json").unwrap();
        let fresh = RouteStore::new(false);
        restore(&path, &fresh).await.unwrap();
        assert!(fresh.load().is_empty());
        assert!(!path.exists());
        let aside: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(aside.len(), 1, "the bad file is kept");
    }

    /// Where the current thread's log lines go, for a test to read.
    #[derive(Clone)]
    struct Logs(std::sync::mpsc::Sender<Vec<u8>>);

    impl std::io::Write for Logs {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(bytes.to_vec());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Waits (at most 10 s) until `done`.
    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(std::time::Instant::now() < deadline, "{what}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    #[tokio::test]
    async fn a_failed_write_is_retried_without_a_new_change() {
        let (lines, logged) = std::sync::mpsc::channel();
        let writer = Logs(lines);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .finish();
        let mut log = String::new();
        // This test's runtime runs on this thread only: the log is its own.
        let _log = tracing::subscriber::set_default(subscriber);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-yet").join("routes.json");
        let store = Arc::new(RouteStore::new(false));
        tokio::spawn(keep_saved(path.clone(), store.clone()));
        tokio::task::yield_now().await;
        store
            .add_api_route("/user/a", br#"{"target":"http://127.0.0.1:1"}"#)
            .await
            .unwrap();
        // The first write fails (no directory) and says it will retry.
        wait_for("no failed write logged", || {
            log.extend(
                logged
                    .try_iter()
                    .map(|l| String::from_utf8_lossy(&l).into_owned()),
            );
            log.contains("cannot write routes file; will retry")
        })
        .await;
        std::fs::create_dir(path.parent().unwrap()).unwrap();
        // No further change: only the retry can write it.
        wait_for("the write was not retried", || path.exists()).await;
        assert!(std::fs::read_to_string(&path).unwrap().contains("/user/a"));
    }
}
