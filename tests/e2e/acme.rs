//! ACME against Pebble (Debian's `pebble` package): certificates issued by
//! HTTP-01 and TLS-ALPN-01 and checked with a client that trusts only
//! Pebble's issuing root, reused after a restart, renewed live, and kept
//! serving through CA outages; replicas sharing one storage directory.

use std::path::Path;
use std::time::{Duration, Instant};

use http::{Method, StatusCode};

use crate::harness::{Hubgate, Pebble, TOKEN, api_call, fixture, free_port, tls_handshake};

const NAME: &str = "hub.test";

fn acme_flags<'a>(pebble_dir: &'a str, storage: &'a Path, ca: &'a str) -> Vec<&'a str> {
    vec![
        "--acme-domain",
        NAME,
        "--acme-directory",
        pebble_dir,
        "--acme-ca-file",
        ca,
        "--acme-storage",
        storage.to_str().unwrap(),
        "--acme-check-ms",
        "200",
    ]
}

async fn certs(hg: &Hubgate) -> serde_json::Value {
    let (status, body) = api_call(hg.api_addr(), Method::GET, "/api/certs", "", Some(TOKEN)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Waits for a handshake for `NAME` that verifies against Pebble's root.
async fn first_valid_handshake(hg: &Hubgate, pebble: &Pebble, limit: Duration) -> Vec<u8> {
    let root = pebble.root().await;
    let deadline = Instant::now() + limit;
    loop {
        match tls_handshake(hg.addr(), NAME, &root).await {
            Ok(leaf) => return leaf,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no valid certificate in {limit:?}: {e}; status {}",
                certs(hg).await
            ),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn http01_issues_a_certificate_that_verifies_and_a_restart_reuses_it() {
    let (https, http) = (free_port(), free_port());
    let pebble = Pebble::start(http, https, 3600).await;
    let storage = tempfile::tempdir().unwrap();
    let (dir, ca) = (pebble.directory(), fixture("ca.pem").display().to_string());
    let (http_port, metrics_port) = (http.to_string(), free_port().to_string());
    let mut flags = acme_flags(&dir, storage.path(), &ca);
    flags.extend(["--redirect-port", &http_port]);
    flags.extend(["--metrics-ip", "127.0.0.1", "--metrics-port", &metrics_port]);
    let mut hg = Hubgate::spawn_at(https, &flags, &[("CONFIGPROXY_AUTH_TOKEN", TOKEN)]).await;
    let leaf = first_valid_handshake(&hg, &pebble, Duration::from_secs(30)).await;
    assert_eq!(pebble.orders(), 1);
    let status = certs(&hg).await;
    assert_eq!(status["acme"][0]["state"], "valid", "{status}");
    assert!(status["acme"][0]["renew_at_ms"].as_u64().is_some());
    let metrics_addr = format!("127.0.0.1:{metrics_port}").parse().unwrap();
    let (_, metrics) = crate::harness::get(metrics_addr, "/metrics").await;
    let expiry = status["acme"][0]["not_after_ms"].as_u64().unwrap() / 1000;
    let line =
        format!("hubgate_certificate_expiry_seconds{{name=\"{NAME}\",source=\"acme\"}} {expiry}");
    assert!(metrics.contains(&line), "{metrics}");

    // The plain-HTTP listener still redirects everything else.
    let (code, _) = crate::harness::get(([127, 0, 0, 1], http).into(), "/hub/").await;
    assert_eq!(code, StatusCode::MOVED_PERMANENTLY);

    // A restart serves the stored certificate and orders nothing.
    hg.child.kill().unwrap();
    hg.child.wait().unwrap();
    let hg = Hubgate::spawn_at(https, &flags, &[("CONFIGPROXY_AUTH_TOKEN", TOKEN)]).await;
    let again = first_valid_handshake(&hg, &pebble, Duration::from_secs(5)).await;
    assert_eq!(again, leaf, "the same certificate");
    assert_eq!(pebble.orders(), 1, "no new order after a restart");
    let key = storage.path().join("certs").join(NAME).join("key.pem");
    use std::os::unix::fs::MetadataExt as _;
    assert_eq!(key.metadata().unwrap().mode() & 0o777, 0o600);
}

#[tokio::test]
async fn tls_alpn01_issues_a_certificate_on_the_tls_listener() {
    let https = free_port();
    // HTTP-01 would fail: nothing listens on Pebble's httpPort.
    let pebble = Pebble::start(free_port(), https, 3600).await;
    let storage = tempfile::tempdir().unwrap();
    let (dir, ca) = (pebble.directory(), fixture("ca.pem").display().to_string());
    let mut flags = acme_flags(&dir, storage.path(), &ca);
    flags.extend(["--acme-challenge", "tls-alpn-01"]);
    let hg = Hubgate::spawn_at(https, &flags, &[("CONFIGPROXY_AUTH_TOKEN", TOKEN)]).await;
    first_valid_handshake(&hg, &pebble, Duration::from_secs(30)).await;
    assert_eq!(pebble.orders(), 1);
}

#[tokio::test]
async fn a_replica_that_did_not_order_answers_the_challenge_and_serves_the_certificate() {
    let (a_port, b_port, b_http) = (free_port(), free_port(), free_port());
    // The CA validates at replica B's plain-HTTP port only.
    let pebble = Pebble::start(b_http, free_port(), 3600).await;
    let storage = tempfile::tempdir().unwrap();
    let (dir, ca) = (pebble.directory(), fixture("ca.pem").display().to_string());
    // B cannot reach the CA at all: it never orders, only shares the storage.
    let unreachable = "https://127.0.0.1:1/dir".to_owned();
    let b_http_port = b_http.to_string();
    let mut b_flags = acme_flags(&unreachable, storage.path(), &ca);
    b_flags.extend(["--redirect-port", &b_http_port]);
    let b = Hubgate::spawn_at(b_port, &b_flags, &[("CONFIGPROXY_AUTH_TOKEN", TOKEN)]).await;
    let a_http = free_port().to_string();
    let mut a_flags = acme_flags(&dir, storage.path(), &ca);
    a_flags.extend(["--redirect-port", &a_http]);
    let a = Hubgate::spawn_at(a_port, &a_flags, &[("CONFIGPROXY_AUTH_TOKEN", TOKEN)]).await;
    let from_a = first_valid_handshake(&a, &pebble, Duration::from_secs(30)).await;
    let from_b = first_valid_handshake(&b, &pebble, Duration::from_secs(10)).await;
    assert_eq!(from_a, from_b, "B serves the certificate A ordered");
    assert_eq!(pebble.orders(), 1);
}

#[tokio::test]
async fn two_replicas_on_one_storage_order_exactly_once() {
    let (a_port, b_port, a_http, b_http) = (free_port(), free_port(), free_port(), free_port());
    let pebble = Pebble::start(a_http, free_port(), 3600).await;
    let storage = tempfile::tempdir().unwrap();
    let (dir, ca) = (pebble.directory(), fixture("ca.pem").display().to_string());
    let (a_http, b_http) = (a_http.to_string(), b_http.to_string());
    let mut a_flags = acme_flags(&dir, storage.path(), &ca);
    a_flags.extend(["--redirect-port", &a_http]);
    let mut b_flags = acme_flags(&dir, storage.path(), &ca);
    b_flags.extend(["--redirect-port", &b_http]);
    let env = [("CONFIGPROXY_AUTH_TOKEN", TOKEN)];
    let (a, b) = tokio::join!(
        Hubgate::spawn_at(a_port, &a_flags, &env),
        Hubgate::spawn_at(b_port, &b_flags, &env)
    );
    let from_a = first_valid_handshake(&a, &pebble, Duration::from_secs(30)).await;
    let from_b = first_valid_handshake(&b, &pebble, Duration::from_secs(10)).await;
    assert_eq!(from_a, from_b);
    assert_eq!(pebble.orders(), 1, "one order for two replicas");
}

#[tokio::test]
async fn a_stale_lock_left_by_a_crashed_replica_is_taken_over() {
    let (https, http) = (free_port(), free_port());
    let pebble = Pebble::start(http, https, 3600).await;
    let storage = tempfile::tempdir().unwrap();
    let locks = storage.path().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    let lock = std::fs::File::create(locks.join(format!("{NAME}.lock"))).unwrap();
    use std::io::Write as _;
    (&lock).write_all(b"crashed-replica:1").unwrap();
    lock.set_modified(std::time::SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    let (dir, ca) = (pebble.directory(), fixture("ca.pem").display().to_string());
    let http_port = http.to_string();
    let mut flags = acme_flags(&dir, storage.path(), &ca);
    flags.extend(["--redirect-port", &http_port]);
    let hg = Hubgate::spawn_at(https, &flags, &[("CONFIGPROXY_AUTH_TOKEN", TOKEN)]).await;
    first_valid_handshake(&hg, &pebble, Duration::from_secs(30)).await;
    assert!(
        !locks.join(format!("{NAME}.lock")).exists(),
        "released after the order"
    );
}

#[tokio::test]
async fn a_failed_validation_backs_off_and_is_shown() {
    let https = free_port();
    // Nothing answers on Pebble's httpPort: every HTTP-01 validation fails.
    let pebble = Pebble::start(free_port(), https, 3600).await;
    let storage = tempfile::tempdir().unwrap();
    let (dir, ca) = (pebble.directory(), fixture("ca.pem").display().to_string());
    let http_port = free_port().to_string();
    let mut flags = acme_flags(&dir, storage.path(), &ca);
    flags.extend(["--redirect-port", &http_port]);
    let hg = Hubgate::spawn_at(https, &flags, &[("CONFIGPROXY_AUTH_TOKEN", TOKEN)]).await;
    let mut seen: Vec<(u64, u64)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "three failures expected: {seen:?}"
        );
        let s = certs(&hg).await;
        let c = &s["acme"][0];
        if c["state"] == "failing" {
            let entry = (
                c["failures"].as_u64().unwrap(),
                c["next_retry_ms"].as_u64().unwrap(),
            );
            if seen.last() != Some(&entry) {
                seen.push(entry);
            }
            let error = c["last_error"].as_str().unwrap();
            // From set_ready or from the failed authorization, whichever saw it.
            assert!(error.contains("connection refused"), "{s}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Failures counted one by one and attempts bounded: the doubling itself
    // is `policy::Backoff`'s unit test (timing belongs there, not here).
    let orders = pebble.orders();
    assert!(
        (2..10).contains(&orders),
        "backed off, not hammering: {orders} orders"
    );
    assert!(seen.windows(2).all(|w| w[1].0 == w[0].0 + 1), "{seen:?}");
}

/// Spawns hubgate with ACME over HTTP-01 against `pebble`, on `https`.
async fn acme_hubgate(pebble: &Pebble, https: u16, http: u16, storage: &Path) -> Hubgate {
    let (dir, ca) = (pebble.directory(), fixture("ca.pem").display().to_string());
    let http_port = http.to_string();
    let mut flags = acme_flags(&dir, storage, &ca);
    flags.extend(["--redirect-port", &http_port]);
    Hubgate::spawn_at(https, &flags, &[("CONFIGPROXY_AUTH_TOKEN", TOKEN)]).await
}

#[tokio::test]
async fn a_short_lived_certificate_is_renewed_live_with_no_failed_request() {
    let (https, http) = (free_port(), free_port());
    // 24 s certificates: renewal is due about 16 s after issuance.
    let pebble = Pebble::start(http, https, 24).await;
    let storage = tempfile::tempdir().unwrap();
    let backend = crate::harness::Backend::http("user").start().await;
    let hg = acme_hubgate(&pebble, https, http, storage.path()).await;
    let body = serde_json::json!({ "target": backend.url() }).to_string();
    api_call(
        hg.api_addr(),
        Method::POST,
        "/api/routes/",
        &body,
        Some(TOKEN),
    )
    .await;
    let first = first_valid_handshake(&hg, &pebble, Duration::from_secs(30)).await;
    let root = pebble.root().await;
    let mut kept = crate::harness::https_client(hg.addr(), NAME, &root)
        .await
        .unwrap();
    let (mut requests, mut errors) = (0, Vec::new());
    let deadline = Instant::now() + Duration::from_secs(40);
    let second = loop {
        assert!(
            Instant::now() < deadline,
            "not renewed in time: {}",
            certs(&hg).await
        );
        // Over the connection opened before the renewal, and over new ones.
        for result in [
            crate::harness::https_get(&mut kept, NAME, "/").await,
            match crate::harness::https_client(hg.addr(), NAME, &root).await {
                Ok(mut fresh) => crate::harness::https_get(&mut fresh, NAME, "/").await,
                Err(e) => Err(e),
            },
        ] {
            requests += 1;
            match result {
                Ok(StatusCode::OK) => {}
                other => errors.push(format!("{other:?}")),
            }
        }
        let leaf = tls_handshake(hg.addr(), NAME, &root).await.unwrap();
        if leaf != first {
            break leaf;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(errors.is_empty(), "{requests} requests: {errors:?}");
    assert_ne!(second, first);
    assert_eq!(pebble.orders(), 2, "one order, one renewal");
    assert_eq!(
        https_status(&mut kept).await,
        StatusCode::OK,
        "the old connection still works"
    );
}

async fn https_status(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<bytes::Bytes>>,
) -> StatusCode {
    crate::harness::https_get(sender, NAME, "/").await.unwrap()
}

#[tokio::test]
async fn the_current_certificate_serves_through_a_ca_outage_and_renewal_resumes() {
    let (https, http) = (free_port(), free_port());
    let mut pebble = Pebble::start(http, https, 30).await;
    let storage = tempfile::tempdir().unwrap();
    let hg = acme_hubgate(&pebble, https, http, storage.path()).await;
    let first = first_valid_handshake(&hg, &pebble, Duration::from_secs(30)).await;
    let old_root = pebble.root().await;
    pebble.stop();
    // Renewal falls due about 20 s in and fails: the status says so.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let s = certs(&hg).await;
        if s["acme"][0]["state"] == "failing" {
            break s;
        }
        assert!(Instant::now() < deadline, "no failure reported: {s}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let c = &status["acme"][0];
    assert!(
        c["last_error"].as_str().unwrap().contains("ACME"),
        "{status}"
    );
    assert!(c["next_retry_ms"].as_u64().is_some(), "{status}");
    assert_eq!(
        tls_handshake(hg.addr(), NAME, &old_root).await.unwrap(),
        first,
        "the current certificate keeps serving"
    );
    // Back: the renewal goes through (Pebble forgot the account and has a new root).
    pebble.restart().await;
    let new_root = pebble.root().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(leaf) = tls_handshake(hg.addr(), NAME, &new_root).await {
            assert_ne!(leaf, first);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not renewed after the outage: {}",
            certs(&hg).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(certs(&hg).await["acme"][0]["state"], "valid");
}

/// Pebble 2.4.0 offers no ARI: the window comes from a small renewalInfo
/// responder in front of it (`AriDirectory`).
#[tokio::test]
async fn ari_renewal_window_from_a_responder_beside_pebble_moves_the_renewal_forward() {
    let (https, http) = (free_port(), free_port());
    // An hour-long certificate: without ARI renewal would wait 40 minutes.
    let pebble = Pebble::start(http, https, 3600).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let ari = crate::harness::AriDirectory::start(&pebble, (now + 3, now + 4)).await;
    let storage = tempfile::tempdir().unwrap();
    let ca = fixture("ca.pem").display().to_string();
    let http_port = http.to_string();
    let mut flags = acme_flags(&ari.url, storage.path(), &ca);
    flags.extend(["--redirect-port", &http_port]);
    let hg = Hubgate::spawn_at(https, &flags, &[("CONFIGPROXY_AUTH_TOKEN", TOKEN)]).await;
    let first = first_valid_handshake(&hg, &pebble, Duration::from_secs(30)).await;
    let root = pebble.root().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    let queries = || ari.queries.load(std::sync::atomic::Ordering::SeqCst);
    loop {
        let leaf = tls_handshake(hg.addr(), NAME, &root).await.unwrap();
        if leaf != first {
            break;
        }
        let status = certs(&hg).await;
        let (q, o) = (queries(), pebble.orders());
        assert!(
            Instant::now() < deadline,
            "ARI window ignored: {status} ({q} ARI queries, {o} orders)"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(queries() >= 1);
    // Pebble ignores `replaces` (no echo), so the renewal orders again plainly.
    let orders = pebble.orders();
    assert!((2..=3).contains(&orders), "{orders} orders");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        pebble.orders(),
        orders,
        "the new certificate's window is a day away"
    );
}

#[tokio::test]
async fn a_discovered_service_gets_a_certificate_for_its_tls_domains() {
    let (https, http) = (free_port(), free_port());
    let pebble = Pebble::start(http, https, 3600).await;
    let storage = tempfile::tempdir().unwrap();
    let backend = crate::harness::Backend::http("grafana").start().await;
    let layer = serde_json::json!({"routes": [{
        "service": "grafana", "hosts": ["svc.test"], "port": 3000,
        "endpoints": [backend.addr.to_string()], "tls_domains": ["svc.test"]
    }]});
    let file = storage.path().join("discovery.json");
    std::fs::write(&file, layer.to_string()).unwrap();
    let (dir, ca) = (pebble.directory(), fixture("ca.pem").display().to_string());
    let http_port = http.to_string();
    let mut flags = acme_flags(&dir, storage.path(), &ca);
    let discovery = file.display().to_string();
    flags.extend([
        "--redirect-port",
        &http_port,
        "--discovery-file",
        &discovery,
    ]);
    let hg = Hubgate::spawn_at(https, &flags, &[("CONFIGPROXY_AUTH_TOKEN", TOKEN)]).await;
    first_valid_handshake(&hg, &pebble, Duration::from_secs(30)).await;
    let root = pebble.root().await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while tls_handshake(hg.addr(), "svc.test", &root).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "no certificate for svc.test: {}",
            certs(&hg).await
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut client = crate::harness::https_client(hg.addr(), "svc.test", &root)
        .await
        .unwrap();
    assert_eq!(
        crate::harness::https_get(&mut client, "svc.test", "/")
            .await
            .unwrap(),
        StatusCode::OK
    );
    assert_eq!(certs(&hg).await["acme"].as_array().unwrap().len(), 2);
}
