//! `hubgate serve`: turns flags, files and the environment into the proxy's
//! plain values, binds the listeners and runs until SIGTERM/SIGINT.
//!
//! Threads: one control thread (REST API, metrics, redirects, routes file,
//! signals) and N proxy workers, each a single-threaded runtime with its own
//! `SO_REUSEPORT` socket and upstream pool; they share only the route table
//! snapshot and atomics.

mod config;
mod listen;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use hubgate_certs::Manager;
use hubgate_proxy::server::{self, MetricsEndpoint, Redirect, ServeConfig, Shutdown};
use hubgate_proxy::{Api, Proxy, RouteStore};
use tokio_util::sync::CancellationToken;

pub(crate) use config::{auth_token, validate};
use config::{limits, open_api_refused, proxy_config, proxy_config_keepalive};
use listen::{Bind, Listen, address, bind, bind_reuseport, bind_std_unix, raise_fd_limit};

use crate::cli::ServeArgs;
use crate::tls_flags::{PublicTls, api_tls, public_tls};
use crate::{acme, discover, logging, routes_file};

/// Where the listeners go, the public ones bound already.
struct Binds {
    public: Vec<Listen>,
    api: Bind,
    metrics: Option<Bind>,
}

/// What the control thread's tasks share.
struct Control {
    args: ServeArgs,
    token: Option<String>,
    routes: Arc<RouteStore>,
    proxy: Arc<Proxy>,
    certs: Option<Arc<Manager>>,
    tls: PublicTls,
    shutdown: Shutdown,
    /// Stops discovery, health checks and renewals.
    background: CancellationToken,
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
    // Bind everything before serving, so a taken port fails the start.
    let binds = binds(&args)?;
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    control.block_on(async move {
        let routes = Arc::new(RouteStore::new(args.host_routing));
        restore_routes(&args, &routes).await?;
        // With discovery on, a request no route matches before its first
        // answer gets a 503 to retry (a replica that just restarted).
        if args.swarm || args.discovery_file.is_some() {
            routes.await_discovery().await;
        }
        let proxy = Arc::new(Proxy::new(config, routes.clone())?);
        let c = Control {
            args,
            token,
            routes,
            proxy,
            certs,
            tls,
            shutdown: Shutdown::new(),
            background: CancellationToken::new(),
        };
        serve(c, binds).await
    })
}

/// The public sockets bound (one per worker), the others' addresses.
fn binds(args: &ServeArgs) -> anyhow::Result<Binds> {
    let workers = args
        .workers
        .map(usize::from)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let public = match &args.socket {
        Some(path) => vec![Listen::Unix(bind_std_unix(path)?)],
        None => bind_reuseport(address(&args.ip, args.port), workers)?
            .into_iter()
            .map(Listen::Tcp)
            .collect(),
    };
    let api = match &args.api_socket {
        Some(p) => Bind::Unix(p.clone()),
        None => Bind::Tcp(address(
            &args.api_ip,
            args.api_port.unwrap_or(args.port.saturating_add(1)),
        )),
    };
    let metrics = match (&args.metrics_socket, args.metrics_port) {
        (Some(p), _) => Some(Bind::Unix(p.clone())),
        (None, Some(port)) => Some(Bind::Tcp(address(&args.metrics_ip, port))),
        (None, None) => None,
    };
    Ok(Binds {
        public,
        api,
        metrics,
    })
}

/// The routes file's routes, then `--default-target`.
async fn restore_routes(args: &ServeArgs, routes: &RouteStore) -> anyhow::Result<()> {
    if let Some(path) = &args.routes_file {
        routes_file::restore(path, routes).await?;
    }
    if let Some(target) = &args.default_target {
        let body = serde_json::json!({ "target": target }).to_string();
        routes.add_api_route("/", body.as_bytes()).await?;
    }
    Ok(())
}

/// Starts every task and listener, serves until a signal, then stops.
async fn serve(c: Control, binds: Binds) -> anyhow::Result<()> {
    let api = start_background(&c)?;
    start_listeners(&c, api, &binds).await?;
    let saver = c
        .args
        .routes_file
        .clone()
        .map(|p| tokio::spawn(routes_file::keep_saved(p, c.routes.clone())));
    if let Some(pid_file) = &c.args.pid_file {
        std::fs::write(pid_file, format!("{}\n", std::process::id()))
            .with_context(|| format!("cannot write --pid-file {}", pid_file.display()))?;
    }
    let serve_config = ServeConfig {
        tls: c.tls.config.clone(),
        limits: limits(&c.args),
        tcp_keepalive: proxy_config_keepalive(&c.args),
    };
    let threads = listen::spawn_workers(binds.public, &serve_config, &c.proxy, &c.shutdown)?;
    announce(&c, threads.len());

    wait_for_signal().await?;
    tracing::info!(grace_secs = c.args.shutdown_grace, "shutting down");
    c.background.cancel();
    c.shutdown
        .drain(Duration::from_secs(c.args.shutdown_grace))
        .await;
    for t in threads {
        if t.join().is_err() {
            tracing::error!("a worker thread panicked");
        }
    }
    if let (Some(saver), Some(path)) = (saver, &c.args.routes_file) {
        saver.abort();
        routes_file::save(path, &c.routes).await;
    }
    remove_files(&c.args);
    tracing::info!("stopped");
    Ok(())
}

/// Discovery with its health checks, certificate renewals; the REST API
/// with their status pages.
fn start_background(c: &Control) -> anyhow::Result<Api> {
    let wanted = discover::wanted(&c.args)?;
    if !wanted.is_empty() {
        let (checker, health) = (c.proxy.clone(), c.background.clone());
        tokio::spawn(async move { checker.run_health_checks(health).await });
    }
    let discovery = discover::start(wanted, c.routes.clone(), c.certs.clone(), &c.background)?;
    if let (Some(manager), Some(resolver)) = (&c.certs, &c.tls.resolver) {
        let static_set = c.tls.static_set.clone();
        acme::start(manager.clone(), resolver.clone(), static_set, &c.background);
    }
    let certs_page = acme::page(c.certs.clone(), c.tls.static_cert.clone());
    Ok(
        Api::new(c.routes.clone(), c.token.clone(), c.proxy.metrics().clone())
            .with_page("/api/discovery", discovery.page(c.routes.clone()))
            .with_page("/api/certs", certs_page),
    )
}

/// The REST API, metrics and HTTP→HTTPS redirect listeners.
async fn start_listeners(c: &Control, api: Api, binds: &Binds) -> anyhow::Result<()> {
    let api_config = ServeConfig {
        tls: api_tls(&c.args)?,
        ..ServeConfig::default()
    };
    let listener = bind(&binds.api).await?;
    tokio::spawn(server::serve(
        listener,
        api_config,
        Arc::new(api),
        c.shutdown.clone(),
    ));
    if let Some(b) = &binds.metrics {
        let endpoint = Arc::new(MetricsEndpoint {
            metrics: c.proxy.metrics().clone(),
            routes: c.routes.clone(),
            extra: Some(acme::metrics(c.certs.clone(), c.tls.static_cert.clone())),
        });
        let listener = bind(b).await?;
        let config = ServeConfig::default();
        tokio::spawn(server::serve(
            listener,
            config,
            endpoint,
            c.shutdown.clone(),
        ));
    }
    if let Some(port) = c.args.redirect_port {
        let redirect = Arc::new(Redirect {
            https_port: c.args.redirect_to.unwrap_or(c.args.port),
            http01: c.certs.as_ref().map(acme::http01),
        });
        let listener = bind(&Bind::Tcp(address(&c.args.ip, port))).await?;
        let config = ServeConfig {
            limits: limits(&c.args),
            ..ServeConfig::default()
        };
        tokio::spawn(server::serve(
            listener,
            config,
            redirect,
            c.shutdown.clone(),
        ));
    }
    Ok(())
}

/// One line saying hubgate serves, where, with how many workers.
fn announce(c: &Control, workers: usize) {
    if c.token.is_none() {
        tracing::warn!("REST API is not authenticated.");
    }
    let listen = c.args.socket.as_ref().map_or_else(
        || address(&c.args.ip, c.args.port).to_string(),
        |p| p.display().to_string(),
    );
    let routes = c.routes.load().len();
    tracing::info!(%listen, workers, routes, "hubgate proxying");
}

/// The pid file and the unix sockets, gone at exit.
fn remove_files(args: &ServeArgs) {
    let files = [
        &args.pid_file,
        &args.socket,
        &args.api_socket,
        &args.metrics_socket,
    ];
    for path in files.into_iter().flatten() {
        let _ = std::fs::remove_file(path);
    }
}

pub(crate) async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = term.recv() => {}
        r = tokio::signal::ctrl_c() => r?,
    }
    Ok(())
}
