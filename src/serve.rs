//! `hubgate serve`: turns flags, files and the environment into the proxy's
//! plain values, binds the listeners and runs until SIGTERM/SIGINT.
//!
//! Threads: one control thread (REST API, metrics, redirects, routes file,
//! signals) and N proxy workers, each a single-threaded runtime with its own
//! `SO_REUSEPORT` socket and upstream pool; they share only the route table
//! snapshot and atomics.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bytes::Bytes;
use http::{HeaderName, HeaderValue};
use hubgate_proxy::server::{
    self, Limits, Listener, MetricsEndpoint, Redirect, ServeConfig, Shutdown,
};
use hubgate_proxy::{Api, ErrorPages, Proxy, ProxyConfig, RouteStore, Target};

use crate::cli::{ServeArgs, parse_ip};
use crate::input::{UsageError, read};
use crate::tls_flags::{api_tls, public_tls, upstream_tls};
use crate::{acme, discover, logging, routes_file};

/// Checks what clap cannot: unsupported flags and values that must parse.
pub(crate) fn validate(args: &ServeArgs) -> Result<(), UsageError> {
    let unsupported = [
        (
            args.storage_backend.is_some(),
            "--storage-backend is not supported; use --routes-file to persist routes",
        ),
        (args.auto_rewrite, "--auto-rewrite is not supported"),
        (
            args.protocol_rewrite.is_some(),
            "--protocol-rewrite is not supported",
        ),
        (
            args.ssl_allow_rc4,
            "--ssl-allow-rc4 is not supported: RC4 is broken and rustls does not implement it",
        ),
    ];
    if let Some((_, msg)) = unsupported.iter().find(|(set, _)| *set) {
        return Err(UsageError((*msg).to_owned()));
    }
    for (flag, url) in [
        ("--default-target", &args.default_target),
        ("--error-target", &args.error_target),
    ] {
        if let Some(url) = url {
            Target::parse(url).map_err(|e| UsageError(format!("invalid value for {flag}: {e}")))?;
        }
    }
    custom_headers(&args.custom_header)?;
    acme::validate(args)?;
    if args.max_header_size < 8192 {
        return Err(UsageError(
            "--max-header-size must be at least 8k (the read buffer's minimum)".into(),
        ));
    }
    if args.max_connections == 0 || args.max_connections_per_client == Some(0) {
        return Err(UsageError(
            "--max-connections and --max-connections-per-client must be above 0".into(),
        ));
    }
    if args.header_timeout == 0 || args.keep_alive_timeout == 0 {
        return Err(UsageError(
            "--header-timeout and --keep-alive-timeout must be above 0".into(),
        ));
    }
    for (flag, ip) in [
        ("--ip", &args.ip),
        ("--api-ip", &args.api_ip),
        ("--metrics-ip", &args.metrics_ip),
    ] {
        if parse_ip(ip).is_none() {
            return Err(UsageError(format!(
                "invalid value '{ip}' for {flag}: not an IP address or a host name that resolves"
            )));
        }
    }
    Ok(())
}

fn custom_headers(raw: &[String]) -> Result<Vec<(HeaderName, HeaderValue)>, UsageError> {
    raw.iter()
        .map(|h| {
            let bad = || {
                UsageError(format!(
                    "invalid value '{h}' for --custom-header: expected NAME:VALUE"
                ))
            };
            let (name, value) = h.split_once(':').ok_or_else(bad)?;
            let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| bad())?;
            let value = HeaderValue::from_str(value.trim()).map_err(|_| bad())?;
            Ok((name, value))
        })
        .collect()
}

/// The auth token: `CONFIGPROXY_AUTH_TOKEN`, else the contents of the file
/// named by `CONFIGPROXY_AUTH_TOKEN_FILE` (a docker secret).
pub(crate) fn auth_token(
    env_token: Option<String>,
    token_file: Option<PathBuf>,
) -> anyhow::Result<Option<String>> {
    if let Some(token) = env_token.filter(|t| !t.is_empty()) {
        return Ok(Some(token));
    }
    let Some(path) = token_file else {
        return Ok(None);
    };
    let token = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read CONFIGPROXY_AUTH_TOKEN_FILE {}", path.display()))?;
    let token = token.trim().to_owned();
    anyhow::ensure!(
        !token.is_empty(),
        "CONFIGPROXY_AUTH_TOKEN_FILE {} is empty",
        path.display()
    );
    Ok(Some(token))
}

fn error_pages(dir: Option<&Path>) -> anyhow::Result<ErrorPages> {
    let Some(dir) = dir else {
        return Ok(ErrorPages::default());
    };
    let mut by_code = HashMap::new();
    let mut fallback = None;
    for entry in std::fs::read_dir(dir)
        .with_context(|| format!("cannot read --error-path {}", dir.display()))?
    {
        let path = entry?.path();
        let Some(stem) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".html"))
        else {
            continue;
        };
        let page = Bytes::from(read(&path, "error page")?);
        match stem.parse::<u16>() {
            Ok(code) => {
                by_code.insert(code, page);
            }
            Err(_) if stem == "error" => fallback = Some(page),
            Err(_) => {}
        }
    }
    Ok(ErrorPages::new(by_code, fallback))
}

fn proxy_config(args: &ServeArgs) -> anyhow::Result<ProxyConfig> {
    Ok(ProxyConfig {
        include_prefix: !args.no_include_prefix,
        prepend_path: !args.no_prepend_path,
        x_forward: !args.no_x_forward,
        change_origin: args.change_origin,
        custom_headers: custom_headers(&args.custom_header).map_err(|e| anyhow::anyhow!(e.0))?,
        proxy_timeout: args.proxy_timeout.map(Duration::from_millis),
        max_body_size: args.max_body_size,
        error_target: args.error_target.clone(),
        error_pages: error_pages(args.error_path.as_deref())?,
        upstream_tls: upstream_tls(args)?,
        tcp_keepalive: proxy_config_keepalive(args),
        hsts: args
            .hsts
            .and_then(|s| HeaderValue::try_from(format!("max-age={s}")).ok()),
        ..ProxyConfig::default()
    })
}

fn proxy_config_keepalive(args: &ServeArgs) -> Option<Duration> {
    (args.tcp_keepalive > 0).then(|| Duration::from_secs(args.tcp_keepalive))
}

/// Where a listener goes.
enum Bind {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

fn bind_std_unix(path: &Path) -> anyhow::Result<std::os::unix::net::UnixListener> {
    if std::fs::symlink_metadata(path)
        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
    {
        std::fs::remove_file(path)?;
    }
    std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind {}", path.display()))
}

/// `n` sockets on one address with `SO_REUSEPORT`, so the kernel spreads
/// connections over the workers (port 0 picks a port for all of them).
///
/// `SO_REUSEPORT` would also let a second hubgate join a port another one
/// serves, the kernel then splitting clients between two route tables; so
/// the port is first bound once without it, which fails if anyone listens.
fn bind_reuseport(addr: SocketAddr, n: usize) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let socket = |reuse_port: bool| -> std::io::Result<socket2::Socket> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(reuse_port)?;
        Ok(socket)
    };
    if addr.port() != 0 {
        socket(false)?.bind(&addr.into()).with_context(|| {
            format!("cannot bind {addr}: another process (another hubgate?) listens on it")
        })?;
    }
    let mut addr = addr;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = socket(true)?;
        socket
            .bind(&addr.into())
            .with_context(|| format!("cannot bind {addr}"))?;
        socket.listen(4096)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        out.push(listener);
    }
    Ok(out)
}

async fn bind(bind: &Bind) -> anyhow::Result<Listener> {
    match bind {
        Bind::Tcp(addr) => Listener::bind_tcp(*addr)
            .await
            .with_context(|| format!("cannot bind {addr}")),
        Bind::Unix(path) => Listener::from_std_unix(bind_std_unix(path)?).map_err(Into::into),
    }
}

fn address(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(parse_ip(ip).unwrap_or(IpAddr::from([0, 0, 0, 0])), port)
}

/// The REST API changes every route: without a token it may listen on
/// loopback only (where configurable-http-proxy merely warns, hubgate
/// refuses to start).
fn open_api_refused(args: &ServeArgs, has_token: bool) -> anyhow::Result<()> {
    let api = address(&args.api_ip, 0).ip();
    if has_token || args.api_socket.is_some() || api.is_loopback() {
        return Ok(());
    }
    anyhow::bail!(
        "the REST API on {} would be open to anyone: set CONFIGPROXY_AUTH_TOKEN (or CONFIGPROXY_AUTH_TOKEN_FILE), or keep --api-ip on loopback",
        args.api_ip
    )
}

/// Runs `hubgate serve` to completion.
pub(crate) fn run(args: ServeArgs) -> anyhow::Result<()> {
    let filter = logging::filter(
        args.log_level,
        !args.no_access_log,
        std::env::var("RUST_LOG").ok().as_deref(),
    )?;
    logging::init(args.log_format, filter);
    let token = auth_token(
        std::env::var("CONFIGPROXY_AUTH_TOKEN").ok(),
        std::env::var_os("CONFIGPROXY_AUTH_TOKEN_FILE").map(PathBuf::from),
    )?;
    open_api_refused(&args, token.is_some())?;
    raise_fd_limit();
    let config = proxy_config(&args)?;
    let certs = acme::manager(&args)?;
    let tls = public_tls(&args, certs.as_ref())?;
    let workers = args
        .workers
        .map(usize::from)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

    // Bind everything before serving, so a taken port fails the start.
    let public: Vec<Listen> = match &args.socket {
        Some(path) => vec![Listen::Unix(bind_std_unix(path)?)],
        None => bind_reuseport(address(&args.ip, args.port), workers)?
            .into_iter()
            .map(Listen::Tcp)
            .collect(),
    };
    let api_bind = match &args.api_socket {
        Some(p) => Bind::Unix(p.clone()),
        None => Bind::Tcp(address(
            &args.api_ip,
            args.api_port.unwrap_or(args.port.saturating_add(1)),
        )),
    };
    let metrics_bind = match (&args.metrics_socket, args.metrics_port) {
        (Some(p), _) => Some(Bind::Unix(p.clone())),
        (None, Some(port)) => Some(Bind::Tcp(address(&args.metrics_ip, port))),
        (None, None) => None,
    };

    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    control.block_on(async move {
        let routes = Arc::new(RouteStore::new(args.host_routing));
        if let Some(path) = &args.routes_file {
            routes_file::restore(path, &routes).await?;
        }
        if let Some(target) = &args.default_target {
            let body = serde_json::json!({ "target": target }).to_string();
            routes.add_api_route("/", body.as_bytes()).await?;
        }
        let proxy = Arc::new(Proxy::new(config, routes.clone())?);
        let shutdown = Shutdown::new();

        let background = tokio_util::sync::CancellationToken::new();
        let wanted = discover::wanted(&args)?;
        if !wanted.is_empty() {
            let (checker, health) = (proxy.clone(), background.clone());
            tokio::spawn(async move { checker.run_health_checks(health).await });
        }
        let discovery = discover::start(wanted, routes.clone(), certs.clone(), &background)?;
        let api = Api::new(routes.clone(), token.clone(), proxy.metrics().clone())
            .with_page("/api/discovery", discovery.page(routes.clone()))
            .with_page(
                "/api/certs",
                acme::page(certs.clone(), tls.static_cert.clone()),
            );
        if let (Some(manager), Some(resolver)) = (&certs, &tls.resolver) {
            let static_set = tls.static_set.clone();
            acme::start(manager.clone(), resolver.clone(), static_set, &background);
        }
        let api = Arc::new(api);
        let api_listener = bind(&api_bind).await?;
        let api_config = ServeConfig {
            tls: api_tls(&args)?,
            ..ServeConfig::default()
        };
        tokio::spawn(server::serve(
            api_listener,
            api_config,
            api,
            shutdown.clone(),
        ));
        if let Some(b) = &metrics_bind {
            let extra = Some(acme::metrics(certs.clone(), tls.static_cert.clone()));
            let endpoint = Arc::new(MetricsEndpoint {
                metrics: proxy.metrics().clone(),
                routes: routes.clone(),
                extra,
            });
            let listener = bind(b).await?;
            let config = ServeConfig::default();
            tokio::spawn(server::serve(listener, config, endpoint, shutdown.clone()));
        }
        if let Some(port) = args.redirect_port {
            let http01 = certs.as_ref().map(acme::http01);
            let redirect = Arc::new(Redirect {
                https_port: args.redirect_to.unwrap_or(args.port),
                http01,
            });
            let listener = bind(&Bind::Tcp(address(&args.ip, port))).await?;
            let config = ServeConfig {
                limits: limits(&args),
                ..ServeConfig::default()
            };
            tokio::spawn(server::serve(listener, config, redirect, shutdown.clone()));
        }
        let saver = args
            .routes_file
            .clone()
            .map(|p| tokio::spawn(routes_file::keep_saved(p, routes.clone())));
        if let Some(pid_file) = &args.pid_file {
            std::fs::write(pid_file, format!("{}\n", std::process::id()))
                .with_context(|| format!("cannot write --pid-file {}", pid_file.display()))?;
        }

        let tcp_keepalive = proxy_config_keepalive(&args);
        let serve_config = ServeConfig {
            tls: tls.config.clone(),
            limits: limits(&args),
            tcp_keepalive,
        };
        let threads = spawn_workers(public, &serve_config, &proxy, &shutdown)?;
        if token.is_none() {
            tracing::warn!("REST API is not authenticated.");
        }
        let where_ = args.socket.as_ref().map_or_else(
            || address(&args.ip, args.port).to_string(),
            |p| p.display().to_string(),
        );
        let (workers, routes_now) = (threads.len(), routes.load().len());
        tracing::info!(listen = %where_, workers, routes = routes_now, "hubgate proxying");

        wait_for_signal().await?;
        tracing::info!(grace_secs = args.shutdown_grace, "shutting down");
        background.cancel();
        shutdown
            .drain(Duration::from_secs(args.shutdown_grace))
            .await;
        for t in threads {
            if t.join().is_err() {
                tracing::error!("a worker thread panicked");
            }
        }
        if let (Some(saver), Some(path)) = (saver, &args.routes_file) {
            saver.abort();
            routes_file::save(path, &routes).await;
        }
        let files = [
            &args.pid_file,
            &args.socket,
            &args.api_socket,
            &args.metrics_socket,
        ];
        for path in files.into_iter().flatten() {
            let _ = std::fs::remove_file(path);
        }
        tracing::info!("stopped");
        Ok(())
    })
}

/// Raises the soft limit on open files to the hard limit, as nginx's
/// `worker_rlimit_nofile` would: every connection and upstream socket is a
/// file descriptor, and the usual soft default (1024) is far below
/// `--max-connections`.
fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}

/// The client-side limits from the flags (see `server::Limits`).
fn limits(args: &ServeArgs) -> Limits {
    let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    Limits {
        header_timeout: Duration::from_millis(args.header_timeout),
        keep_alive: Duration::from_millis(args.keep_alive_timeout),
        socket_timeout: args.timeout.map(Duration::from_millis),
        max_head: size(args.max_header_size),
        max_fields: args.max_headers,
        max_request_line: size(args.max_request_line),
        max_connections: args.max_connections,
        max_per_client: args.max_connections_per_client,
    }
}

enum Listen {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

fn spawn_workers(
    listeners: Vec<Listen>,
    config: &ServeConfig,
    proxy: &Arc<Proxy>,
    shutdown: &Shutdown,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    listeners
        .into_iter()
        .enumerate()
        .map(|(i, listen)| {
            // Each worker its own handle: see `Proxy`'s docs.
            let proxy = Arc::new(Proxy::clone(proxy));
            let (config, shutdown) = (config.clone(), shutdown.clone());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("hubgate-worker-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let listener = match listen {
                            Listen::Tcp(l) => Listener::from_std(l),
                            Listen::Unix(l) => Listener::from_std_unix(l),
                        };
                        match listener {
                            Ok(l) => server::serve(l, config, proxy, shutdown.clone()).await,
                            Err(e) => tracing::error!(error = %e, "worker cannot use its listener"),
                        }
                        shutdown.all_closed().await;
                    });
                })
                .context("cannot start a worker thread")
        })
        .collect()
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_from_env_or_file() {
        assert_eq!(
            auth_token(Some("t".into()), None).unwrap().as_deref(),
            Some("t")
        );
        assert_eq!(auth_token(None, None).unwrap(), None);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "secret\n").unwrap();
        assert_eq!(
            auth_token(None, Some(file.clone())).unwrap().as_deref(),
            Some("secret")
        );
        assert_eq!(
            auth_token(Some(String::new()), Some(file))
                .unwrap()
                .as_deref(),
            Some("secret")
        );
        assert!(auth_token(None, Some(dir.path().join("missing"))).is_err());
    }

    #[test]
    fn custom_headers_parse() {
        let h = custom_headers(&["x-a: 1".into(), "x-b:two".into()]).unwrap();
        assert_eq!(h[1].1, "two");
        assert!(custom_headers(&["nocolon".into()]).is_err());
        assert!(custom_headers(&["bad name:1".into()]).is_err());
    }

    #[test]
    fn reuseport_sockets_share_one_port() {
        let l = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = l[0].local_addr().unwrap().port();
        assert!(l.iter().all(|s| s.local_addr().unwrap().port() == port));
    }

    #[test]
    fn a_port_another_process_serves_with_reuseport_is_refused() {
        let first = bind_reuseport("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let taken = first[0].local_addr().unwrap();
        let err = bind_reuseport(taken, 2).unwrap_err();
        assert!(format!("{err:#}").contains("another process"), "{err:#}");
        // Once it is gone the port is free again.
        drop(first);
        assert_eq!(bind_reuseport(taken, 2).unwrap().len(), 2);
    }
}
