//! Pebble, Let's Encrypt's test CA, from Debian's `pebble` package, with
//! pebble-challtestsrv as its DNS server (every name is 127.0.0.1): one
//! instance per test on free ports, validating against the ports the test's
//! hubgate listens on.

use super::*;

/// A running Pebble (and its DNS server), stopped on drop.
pub struct Pebble {
    pebble: Child,
    dns: Child,
    pub dir: tempfile::TempDir,
    pub acme_port: u16,
    pub management_port: u16,
    dns_port: u16,
    log: PathBuf,
}

const SETUP: &str = "run `scripts/test`, which installs Debian's `pebble` package";

impl Pebble {
    /// Pebble validating HTTP-01 on `http_port` and TLS-ALPN-01 on
    /// `tls_port`, issuing certificates valid for `validity_secs`.
    pub async fn start(http_port: u16, tls_port: u16, validity_secs: u64) -> Self {
        for tool in ["pebble", "pebble-challtestsrv"] {
            assert!(
                Command::new(tool).arg("-h").output().is_ok(),
                "{tool} is not installed: {SETUP}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let (acme_port, management_port, dns_port, dns_mgmt) =
            (free_port(), free_port(), free_port(), free_port());
        let config = serde_json::json!({"pebble": {
            "listenAddress": format!("127.0.0.1:{acme_port}"),
            "managementListenAddress": format!("127.0.0.1:{management_port}"),
            "certificate": fixture("localhost.pem"),
            "privateKey": fixture("localhost.key"),
            "httpPort": http_port,
            "tlsPort": tls_port,
            "ocspResponderURL": "",
            "externalAccountBindingRequired": false,
            "certificateValidityPeriod": validity_secs,
        }});
        let config_file = dir.path().join("pebble.json");
        std::fs::write(&config_file, config.to_string()).unwrap();
        let dns = Command::new("pebble-challtestsrv")
            .args(["-dns01", &format!("127.0.0.1:{dns_port}")])
            .args(["-management", &format!("127.0.0.1:{dns_mgmt}")])
            .args(["-http01", "", "-https01", "", "-tlsalpn01", ""])
            .args(["-defaultIPv4", "127.0.0.1", "-defaultIPv6", ""])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let log = dir.path().join("pebble.log");
        let pebble = Self::spawn_pebble(&config_file, dns_port, &log);
        let me = Self {
            pebble,
            dns,
            dir,
            acme_port,
            management_port,
            dns_port,
            log,
        };
        me.wait_listening().await;
        me
    }

    fn spawn_pebble(config: &Path, dns_port: u16, log: &Path) -> Child {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        Command::new("pebble")
            .arg("-config")
            .arg(config)
            .args(["-dnsserver", &format!("127.0.0.1:{dns_port}")])
            .env("PEBBLE_VA_NOSLEEP", "1")
            .env("PEBBLE_WFE_NONCEREJECT", "0")
            .env("PEBBLE_AUTHZREUSE", "0")
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap()
    }

    async fn wait_listening(&self) {
        let addr: SocketAddr = ([127, 0, 0, 1], self.acme_port).into();
        wait_for(Duration::from_secs(10), "Pebble to listen", || async {
            TcpStream::connect(addr).await.is_ok()
        })
        .await;
    }

    /// The ACME directory URL.
    pub fn directory(&self) -> String {
        format!("https://127.0.0.1:{}/dir", self.acme_port)
    }

    /// Stops Pebble (the DNS server stays), as an ACME outage.
    pub fn stop(&mut self) {
        let _ = self.pebble.kill();
        let _ = self.pebble.wait();
    }

    /// Starts Pebble again on the same ports, with the same config. Its
    /// issuing root is new: Pebble makes one at every start.
    pub async fn restart(&mut self) {
        let config = self.dir.path().join("pebble.json");
        self.pebble = Self::spawn_pebble(&config, self.dns_port, &self.log);
        self.wait_listening().await;
    }

    /// Pebble's current issuing root (PEM), for a client to trust.
    pub async fn root(&self) -> String {
        let out = Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(fixture("ca.pem"))
            .arg(format!(
                "https://127.0.0.1:{}/roots/0",
                self.management_port
            ))
            .output()
            .unwrap();
        assert!(out.status.success(), "cannot fetch Pebble's root");
        String::from_utf8(out.stdout).unwrap()
    }

    /// How many orders Pebble has received (from its request log).
    pub fn orders(&self) -> usize {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        log.lines()
            .filter(|l| l.contains("POST /order-plz"))
            .count()
    }
}

impl Drop for Pebble {
    fn drop(&mut self) {
        let _ = self.pebble.kill();
        let _ = self.pebble.wait();
        let _ = self.dns.kill();
        let _ = self.dns.wait();
    }
}

/// A client configuration trusting only `root_pem`, offering `alpn`.
fn trusting(root_pem: &str, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, String> {
    use rustls_pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots
            .add(cert.map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(config)
}

/// Connects with TLS to `addr` for `name`, trusting only `root_pem`;
/// returns the served leaf's DER once the chain verifies.
pub async fn tls_handshake(
    addr: SocketAddr,
    name: &str,
    root_pem: &str,
) -> Result<Vec<u8>, String> {
    let config = trusting(root_pem, &[])?;
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name =
        rustls_pki_types::ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let tls = connector
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .ok_or("no certificate")?;
    Ok(leaf.to_vec())
}

/// An HTTPS/1.1 connection for `name` trusting only `root_pem`, kept open
/// for several requests.
pub async fn https_client(
    addr: SocketAddr,
    name: &str,
    root_pem: &str,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, String> {
    let config = trusting(root_pem, &[b"http/1.1"])?;
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    let server_name =
        rustls_pki_types::ServerName::try_from(name.to_owned()).map_err(|e| e.to_string())?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    Ok(sender)
}

/// `GET path` over `sender`: the status.
pub async fn https_get(
    sender: &mut hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    name: &str,
    path: &str,
) -> Result<StatusCode, String> {
    let req = Request::get(path)
        .header("host", name)
        .body(Full::default())
        .map_err(|e| e.to_string())?;
    let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    resp.into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    Ok(status)
}

/// An ACME directory in front of Pebble that offers ACME Renewal
/// Information (RFC 9773), which Pebble 2.4.0 lacks: `/dir` is Pebble's
/// directory plus `renewalInfo`; the first certificate asked about gets
/// `window` (Unix seconds), later ones a window a day away, as a CA gives
/// a fresh certificate. The rest of the directory still points at Pebble.
/// Counts the renewal-information requests.
pub struct AriDirectory {
    pub url: String,
    pub queries: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl AriDirectory {
    pub async fn start(pebble: &Pebble, window: (u64, u64)) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let out = Command::new("curl")
            .args(["-sf", "--cacert"])
            .arg(fixture("ca.pem"))
            .arg(pebble.directory())
            .output()
            .unwrap();
        let mut dir: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        dir["renewalInfo"] = format!("https://{addr}/renewal-info").into();
        let dir = Bytes::from(dir.to_string());
        let rfc3339 = |secs: u64| {
            let out = Command::new("date")
                .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
                .output()
                .unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_owned()
        };
        let info = move |w: (u64, u64)| {
            Bytes::from(serde_json::json!({"suggestedWindow": {"start": rfc3339(w.0), "end": rfc3339(w.1)}}).to_string())
        };
        let (first, later) = (info(window), info((window.0 + 86_400, window.1 + 86_400)));
        let first_serial: Arc<std::sync::OnceLock<String>> = Arc::default();
        let cert = std::fs::read(fixture("localhost.pem")).unwrap();
        let key = std::fs::read(fixture("localhost.key")).unwrap();
        let certified = hubgate_proxy::tls::certified_key(&cert, &key).unwrap();
        let resolver = Arc::new(hubgate_proxy::tls::CertResolver::new(
            hubgate_proxy::tls::CertSet::single(Arc::new(certified)),
        ));
        let mut config = (*hubgate_proxy::tls::server_config(resolver, None).unwrap()).clone();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let queries = Arc::new(AtomicUsize::new(0));
        let q = queries.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (acceptor, dir, q) = (acceptor.clone(), dir.clone(), q.clone());
                let (first, later, first_serial) =
                    (first.clone(), later.clone(), first_serial.clone());
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (dir, q) = (dir.clone(), q.clone());
                        let id = req
                            .uri()
                            .path()
                            .strip_prefix("/renewal-info/")
                            .map(str::to_owned);
                        let info = match id {
                            Some(id) if *first_serial.get_or_init(|| id.clone()) == id => {
                                first.clone()
                            }
                            _ => later.clone(),
                        };
                        async move {
                            let resp = if req.uri().path() == "/dir" {
                                Response::new(Full::new(dir))
                            } else if req.uri().path().starts_with("/renewal-info/") {
                                q.fetch_add(1, Ordering::SeqCst);
                                let mut r = Response::new(Full::new(info));
                                r.headers_mut()
                                    .insert("retry-after", http::HeaderValue::from_static("60"));
                                r
                            } else {
                                let mut r = Response::new(Full::new(Bytes::new()));
                                *r.status_mut() = StatusCode::NOT_FOUND;
                                r
                            };
                            Ok::<_, Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Self {
            url: format!("https://{addr}/dir"),
            queries,
            task,
        }
    }
}

impl Drop for AriDirectory {
    fn drop(&mut self) {
        self.task.abort();
    }
}
