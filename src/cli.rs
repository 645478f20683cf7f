//! Command-line interface: `hubgate <subcommand>`, and configurable-http-proxy's
//! flags for `hubgate serve` (also accepted when the binary runs under the
//! name `configurable-http-proxy`, so JupyterHub can launch it unchanged).

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// hubgate: the proxy for JupyterHub on Docker Swarm.
#[derive(Debug, Parser)]
#[command(name = "hubgate", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the proxy (a drop-in replacement for configurable-http-proxy).
    Serve(Box<ServeArgs>),
    /// Exit 0 when the proxy on this machine answers its health check (the
    /// image's HEALTHCHECK: the final image has no shell or curl).
    Healthcheck(HealthcheckArgs),
    /// Deploy JupyterHub on Docker Swarm behind hubgate from one file.
    Deploy(DeployArgs),
    /// GET a path of the proxy's REST API on this machine, with the token
    /// from CONFIGPROXY_AUTH_TOKEN(_FILE); prints the answer (used by
    /// `hubgate deploy status` inside the hubgate containers).
    Api(ApiArgs),
    /// Serve guarded Docker API sockets: forward to the engine only what
    /// each socket's policy allows (`hubgate deploy` runs it on every
    /// manager, the only task that holds the engine's socket).
    DockerGuard(DockerGuardArgs),
}

/// `hubgate docker-guard`.
#[derive(Debug, Args)]
pub(crate) struct DockerGuardArgs {
    /// The engine's socket, which only the guard holds.
    #[arg(long, default_value = "/var/run/docker.sock")]
    pub(crate) upstream: PathBuf,
    /// The guard's configuration: JSON naming each socket's path, owner
    /// uid and policy.
    #[arg(long, required_unless_present = "print_policy")]
    pub(crate) config: Option<PathBuf>,
    /// Print the configuration (sockets and policies) `hubgate deploy
    /// apply` gives the guard for this deployment file, and exit: what
    /// the hub and hubgate may do, to audit.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["config", "check"])]
    pub(crate) print_policy: Option<PathBuf>,
    /// Exit 0 when every configured socket answers `GET /_ping` with 200
    /// (the guard's health check), else 1.
    #[arg(long)]
    pub(crate) check: bool,
}

/// `hubgate api`.
#[derive(Debug, Args)]
pub(crate) struct ApiArgs {
    /// The API path, e.g. /api/routes.
    pub(crate) path: String,
    /// Address of the REST API.
    #[arg(long, default_value = "127.0.0.1:8001")]
    pub(crate) addr: std::net::SocketAddr,
    #[arg(
        long,
        env = "CONFIGPROXY_AUTH_TOKEN",
        hide_env_values = true,
        hide = true
    )]
    pub(crate) token: Option<String>,
    #[arg(long, env = "CONFIGPROXY_AUTH_TOKEN_FILE", hide = true)]
    pub(crate) token_file: Option<PathBuf>,
}

/// `hubgate deploy`: the Docker engine is `DOCKER_HOST` (default: the
/// local socket).
#[derive(Debug, Args)]
pub(crate) struct DeployArgs {
    #[command(subcommand)]
    pub(crate) command: DeployCommand,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeployCommand {
    /// Make this engine a swarm manager (when it is not one) and print the
    /// commands that join other nodes.
    Init {
        /// The address other nodes reach this one at (default: chosen
        /// from this machine's addresses, private first, and explained).
        #[arg(long)]
        advertise_addr: Option<IpAddr>,
        /// A swarm of this one machine (a trial): no join commands, no
        /// firewall advice; `hubgate deploy join-token` prints them later.
        #[arg(long)]
        single: bool,
    },
    /// Print the commands that join a worker and a manager.
    JoinToken,
    /// Show what `apply` would create, change (field by field) and remove.
    Plan(DeployFileArgs),
    /// Make the swarm match the file, then wait for the services.
    Apply(ApplyArgs),
    /// Nodes, services, tasks, routes and certificates.
    Status(DeployFileArgs),
    /// Remove what `apply` made; users' volumes stay unless --purge.
    Destroy(DestroyArgs),
    /// Remove a deployment's volumes on this engine that the rule does not
    /// keep (what `apply` and `destroy` run on every node as a job).
    #[command(hide = true)]
    PruneVolumes(PruneArgs),
    /// Move the hub's database of an earlier hubgate from its node-local
    /// volume onto the storage (what `apply` runs as a job on that node).
    #[command(hide = true)]
    MigrateHubData(MigrateArgs),
    /// Keep this node's swarm containers from the cloud's metadata
    /// service: an nftables table refusing what they send to the
    /// addresses, removed on SIGTERM (what the deployment's
    /// `<name>-metadata-block` service runs on every node).
    #[command(hide = true)]
    BlockMetadata(BlockArgs),
    /// Hold a task on the servers' network on this node until SIGTERM
    /// (what the deployment's `<name>-network-anchor` service runs: see
    /// docs/deploy.md, GPUs).
    #[command(hide = true)]
    Anchor,
}

#[derive(Debug, Args)]
pub(crate) struct BlockArgs {
    /// The nftables table (inet family) the rules live in.
    #[arg(long)]
    pub(crate) table: String,
    /// The interface containers' traffic enters forwarding through.
    #[arg(long, default_value = hubgate_deploy::metadata::GATEWAY_BRIDGE)]
    pub(crate) interface: String,
    /// An address or IPv4 network to refuse (repeatable).
    #[arg(long, required = true)]
    pub(crate) address: Vec<String>,
    /// Only check that the table is in place (the service's health check).
    #[arg(long)]
    pub(crate) check: bool,
}

#[derive(Debug, Args)]
pub(crate) struct MigrateArgs {
    /// The deployment's name.
    #[arg(long)]
    pub(crate) deployment: String,
    /// The old hub's service, whose container must have ended here.
    #[arg(long)]
    pub(crate) hub_service: String,
    /// The old volume, mounted.
    #[arg(long)]
    pub(crate) from: PathBuf,
    /// The hub's state directory on the storage.
    #[arg(long)]
    pub(crate) to: PathBuf,
    /// The secret the old cookie secret becomes.
    #[arg(long)]
    pub(crate) cookie_secret: String,
}

#[derive(Debug, Args)]
pub(crate) struct PruneArgs {
    /// The deployment's name.
    #[arg(long)]
    pub(crate) deployment: String,
    /// A volume to keep (repeatable).
    #[arg(long)]
    pub(crate) keep: Vec<String>,
    /// Keep user volumes of this storage (its hash).
    #[arg(long)]
    pub(crate) keep_storage: Option<String>,
    /// Keep volumes of this role (repeatable).
    #[arg(long)]
    pub(crate) keep_role: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DeployFileArgs {
    /// The deployment file (deploy.toml).
    pub(crate) file: PathBuf,
}

#[derive(Debug, Args)]
pub(crate) struct ApplyArgs {
    /// The deployment file (deploy.toml).
    pub(crate) file: PathBuf,
    /// Seconds to wait for the services to run and the hub to answer.
    #[arg(long, default_value_t = 300)]
    pub(crate) timeout: u64,
    /// Do not check that the NFS server answers on 2049/tcp (when this
    /// machine cannot reach the storage network).
    #[arg(long)]
    pub(crate) skip_nfs_check: bool,
    /// Where to check that hubgate answers once the services run (default:
    /// 127.0.0.1 and the file's proxy.http_port).
    #[arg(long, value_name = "IP:PORT")]
    pub(crate) probe: Option<std::net::SocketAddr>,
    /// Return once the engine has the objects, without waiting for the
    /// services to run.
    #[arg(long)]
    pub(crate) no_wait: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DestroyArgs {
    /// The deployment file (deploy.toml).
    pub(crate) file: PathBuf,
    /// Also remove the volumes that hold users' files and the hub's
    /// database (the files on NFS or a local directory stay).
    #[arg(long)]
    pub(crate) purge: bool,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub(crate) yes: bool,
}

/// `hubgate healthcheck`.
#[derive(Debug, Args)]
pub(crate) struct HealthcheckArgs {
    /// Address of the proxy's public listener.
    #[arg(long, default_value = "127.0.0.1:8000")]
    pub(crate) addr: std::net::SocketAddr,
    /// Seconds to wait for the answer.
    #[arg(long, default_value_t = 3)]
    pub(crate) timeout: u64,
}

/// The same flags, parsed when invoked as `configurable-http-proxy`.
#[derive(Debug, Parser)]
#[command(
    name = "configurable-http-proxy",
    version,
    about = "hubgate, running as configurable-http-proxy"
)]
pub(crate) struct ChpCli {
    #[command(flatten)]
    pub(crate) serve: ServeArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// `hubgate serve`: configurable-http-proxy's flags plus hubgate's own.
#[derive(Debug, Clone, Args)]
pub(crate) struct ServeArgs {
    /// Public-facing IP of the proxy ("" for all interfaces).
    #[arg(long, default_value = "", value_name = "IP")]
    pub(crate) ip: String,
    /// Public-facing port of the proxy.
    #[arg(long, default_value_t = 8000)]
    pub(crate) port: u16,
    /// Unix socket path for the proxy (instead of --ip/--port).
    #[arg(long, value_name = "PATH")]
    pub(crate) socket: Option<PathBuf>,
    /// Inward-facing IP for the REST API.
    #[arg(long, default_value = "localhost", value_name = "IP")]
    pub(crate) api_ip: String,
    /// Inward-facing port for the REST API (default: --port + 1).
    #[arg(long)]
    pub(crate) api_port: Option<u16>,
    /// Unix socket path for the REST API (instead of --api-ip/--api-port).
    #[arg(long, value_name = "PATH")]
    pub(crate) api_socket: Option<PathBuf>,
    /// IP for the Prometheus metrics endpoint (default loopback, as the
    /// REST API; "" for all interfaces).
    #[arg(long, default_value = "localhost", value_name = "IP")]
    pub(crate) metrics_ip: String,
    /// Port for the Prometheus metrics endpoint (off unless given).
    #[arg(long)]
    pub(crate) metrics_port: Option<u16>,
    /// Unix socket path for the metrics endpoint.
    #[arg(long, value_name = "PATH")]
    pub(crate) metrics_socket: Option<PathBuf>,

    /// Default proxy target (stored as the route "/").
    #[arg(long, value_name = "URL")]
    pub(crate) default_target: Option<String>,
    /// Fetch error pages from <URL>/<code>?url=<original url>.
    #[arg(long, value_name = "URL", conflicts_with = "error_path")]
    pub(crate) error_target: Option<String>,
    /// Serve <DIR>/<code>.html (or <DIR>/error.html) as error pages.
    #[arg(long, value_name = "DIR")]
    pub(crate) error_path: Option<PathBuf>,
    /// Route by host: route keys start with the host name.
    #[arg(long)]
    pub(crate) host_routing: bool,

    /// Log level.
    #[arg(long, default_value = "info", ignore_case = true)]
    pub(crate) log_level: LogLevel,
    /// Log format.
    #[arg(long, default_value = "text")]
    pub(crate) log_format: LogFormat,
    /// Do not log one line per proxied request.
    #[arg(long)]
    pub(crate) no_access_log: bool,

    /// Public TLS key (PEM).
    #[arg(long, value_name = "FILE", requires = "ssl_cert")]
    pub(crate) ssl_key: Option<PathBuf>,
    /// Public TLS certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "ssl_key")]
    pub(crate) ssl_cert: Option<PathBuf>,
    /// CA bundle (PEM) for client certificates on the public listener.
    #[arg(long, value_name = "FILE")]
    pub(crate) ssl_ca: Option<PathBuf>,
    /// Ask public clients for a certificate (verified against --ssl-ca).
    #[arg(long, requires = "ssl_ca")]
    pub(crate) ssl_request_cert: bool,
    /// Refuse public clients without a valid certificate.
    #[arg(long)]
    pub(crate) ssl_reject_unauthorized: bool,
    /// Accepted for compatibility; rustls negotiates TLS 1.2 or 1.3.
    #[arg(long, value_name = "PROTOCOL")]
    pub(crate) ssl_protocol: Option<String>,
    /// Accepted for compatibility; rustls uses its safe cipher suites.
    #[arg(long, value_name = "CIPHERS")]
    pub(crate) ssl_ciphers: Option<String>,
    /// Not supported: RC4 is broken and rustls does not implement it.
    #[arg(long)]
    pub(crate) ssl_allow_rc4: bool,
    /// Accepted for compatibility; rustls uses ECDHE only.
    #[arg(long, value_name = "FILE")]
    pub(crate) ssl_dhparam: Option<PathBuf>,

    /// REST API TLS key (PEM).
    #[arg(long, value_name = "FILE", requires = "api_ssl_cert")]
    pub(crate) api_ssl_key: Option<PathBuf>,
    /// REST API TLS certificate (PEM).
    #[arg(long, value_name = "FILE", requires = "api_ssl_key")]
    pub(crate) api_ssl_cert: Option<PathBuf>,
    /// CA bundle (PEM) for REST API client certificates.
    #[arg(long, value_name = "FILE")]
    pub(crate) api_ssl_ca: Option<PathBuf>,
    /// Ask REST API clients for a certificate.
    #[arg(long, requires = "api_ssl_ca")]
    pub(crate) api_ssl_request_cert: bool,
    /// Refuse REST API clients without a valid certificate.
    #[arg(long)]
    pub(crate) api_ssl_reject_unauthorized: bool,

    /// Client key (PEM) presented to https targets.
    #[arg(long, value_name = "FILE", requires = "client_ssl_cert")]
    pub(crate) client_ssl_key: Option<PathBuf>,
    /// Client certificate (PEM) presented to https targets.
    #[arg(long, value_name = "FILE", requires = "client_ssl_key")]
    pub(crate) client_ssl_cert: Option<PathBuf>,
    /// CA bundle (PEM) trusted for https targets, instead of the web roots.
    #[arg(long, value_name = "FILE")]
    pub(crate) client_ssl_ca: Option<PathBuf>,
    /// No effect, as in configurable-http-proxy (a server option that node
    /// ignores on client connections).
    #[arg(long)]
    pub(crate) client_ssl_request_cert: bool,
    /// Verify https targets' certificates: always on unless --insecure
    /// (the two together are refused).
    #[arg(long, conflicts_with = "insecure")]
    pub(crate) client_ssl_reject_unauthorized: bool,
    /// Do not verify the certificates of https targets.
    #[arg(long)]
    pub(crate) insecure: bool,

    /// Port of a plain-HTTP listener that redirects to HTTPS (and answers
    /// ACME HTTP-01 challenges); needs `--ssl-cert` or `--acme-domain`.
    #[arg(long)]
    pub(crate) redirect_port: Option<u16>,
    /// HTTPS port the redirects point at (default: --port).
    #[arg(long, requires = "redirect_port")]
    pub(crate) redirect_to: Option<u16>,

    /// Do not add X-Forwarded-* and X-Real-IP headers.
    #[arg(long)]
    pub(crate) no_x_forward: bool,
    /// Strip the matched route prefix before forwarding.
    #[arg(long)]
    pub(crate) no_include_prefix: bool,
    /// Do not put the target's path in front of the request path.
    #[arg(long)]
    pub(crate) no_prepend_path: bool,
    /// Send the target's host as the Host header.
    #[arg(long)]
    pub(crate) change_origin: bool,
    /// Not supported: rewriting Location headers.
    #[arg(long)]
    pub(crate) auto_rewrite: bool,
    /// Not supported: rewriting Location header protocols.
    #[arg(long, value_name = "PROTOCOL")]
    pub(crate) protocol_rewrite: Option<String>,
    /// Header sent upstream, overriding the client's ("name: value"); repeatable.
    #[arg(long, value_name = "NAME:VALUE")]
    pub(crate) custom_header: Vec<String>,

    /// Close a client connection whose socket carries no bytes either way
    /// for this many milliseconds, requests in flight included.
    #[arg(long, value_name = "MS")]
    pub(crate) timeout: Option<u64>,
    /// Upstream inactivity timeout in milliseconds: no response head, or no
    /// body bytes, for this long gives a 504 (or cuts the body).
    #[arg(long, value_name = "MS")]
    pub(crate) proxy_timeout: Option<u64>,
    /// Close client connections with no request in progress after this many
    /// milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    pub(crate) keep_alive_timeout: u64,
    /// hubgate: close a connection that has not sent a whole request head
    /// this many milliseconds after it opened or its last request ended.
    #[arg(long, value_name = "MS", default_value_t = 60_000)]
    pub(crate) header_timeout: u64,
    /// hubgate: largest request head (431 beyond), e.g. 64k.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "64k")]
    pub(crate) max_header_size: u64,
    /// hubgate: most header fields in a request (431 beyond).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub(crate) max_headers: usize,
    /// hubgate: longest request target (414 beyond), e.g. 8k.
    #[arg(long, value_name = "SIZE", value_parser = parse_size, default_value = "8k")]
    pub(crate) max_request_line: u64,
    /// hubgate: open client connections per worker; more wait in the
    /// listen backlog.
    #[arg(long, value_name = "N", default_value_t = 16_384)]
    pub(crate) max_connections: usize,
    /// hubgate: open connections per client address per worker; more get a
    /// 503 (default: no limit, as clients behind one NAT share an address).
    #[arg(long, value_name = "N")]
    pub(crate) max_connections_per_client: Option<usize>,
    /// Largest accepted request body, e.g. 512k, 100m, 2g (default: no limit).
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub(crate) max_body_size: Option<u64>,

    /// Write the process id to this file (removed on exit).
    #[arg(long, value_name = "FILE")]
    pub(crate) pid_file: Option<PathBuf>,
    /// Not supported: configurable-http-proxy's pluggable stores. Use
    /// --routes-file to keep routes across restarts.
    #[arg(long, value_name = "MODULE")]
    pub(crate) storage_backend: Option<String>,
    /// Keep the API's routes in this JSON file (atomic writes) and restore
    /// them at start, so a restart loses no route.
    #[arg(long, value_name = "FILE")]
    pub(crate) routes_file: Option<PathBuf>,
    /// Proxy worker threads, each with its own listener socket and upstream
    /// connection pool (default: one per core).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub(crate) workers: Option<u16>,
    /// Seconds in-flight requests get to finish on SIGTERM/SIGINT before
    /// remaining connections and websockets are closed.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    pub(crate) shutdown_grace: u64,
    /// hubgate: discover routes from Docker Swarm (run on a manager, with
    /// the Docker socket; `DOCKER_HOST` is honoured).
    #[arg(long)]
    pub(crate) swarm: bool,
    /// hubgate: swarm network to reach services on (repeatable; default:
    /// the networks of hubgate's own container).
    #[arg(long, value_name = "NAME")]
    pub(crate) swarm_network: Vec<String>,
    /// hubgate: task refresh period of swarm discovery, in milliseconds.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub(crate) swarm_refresh: u64,
    /// hubgate: routes from a JSON file (a fixed discovery layer).
    #[arg(long, value_name = "FILE")]
    pub(crate) discovery_file: Option<PathBuf>,
    /// hubgate: obtain and renew a certificate for these names by ACME
    /// (repeatable; comma-separated names share one certificate). `--port`
    /// then serves HTTPS.
    #[arg(long, value_name = "NAMES")]
    pub(crate) acme_domain: Vec<String>,
    /// hubgate: contact e-mail for the ACME account.
    #[arg(long, value_name = "EMAIL")]
    pub(crate) acme_email: Option<String>,
    /// hubgate: ACME directory: `letsencrypt`, `letsencrypt-staging` or a URL.
    #[arg(long, value_name = "URL", default_value = "letsencrypt")]
    pub(crate) acme_directory: String,
    /// hubgate: where the account, certificates and locks live (share it
    /// between replicas).
    #[arg(long, value_name = "DIR")]
    pub(crate) acme_storage: Option<PathBuf>,
    /// hubgate: CA certificate(s) to trust for the ACME server's own HTTPS
    /// (a private ACME server).
    #[arg(long, value_name = "PATH")]
    pub(crate) acme_ca_file: Option<PathBuf>,
    /// hubgate: how to prove control of the names: `http-01` (on
    /// `--redirect-port`) or `tls-alpn-01` (on `--port`).
    #[arg(long, value_name = "TYPE", default_value = "http-01")]
    pub(crate) acme_challenge: String,
    /// hubgate: send `Strict-Transport-Security: max-age=SECONDS` on HTTPS
    /// responses (browsers then refuse plain HTTP for the host).
    #[arg(long, value_name = "SECONDS")]
    pub(crate) hsts: Option<u64>,
    /// Internal (tests with minutes-long certificates): how often, in ms, the
    /// ACME storage is looked at, and the first retry delay.
    #[arg(long, value_name = "MS", hide = true)]
    pub(crate) acme_check_ms: Option<u64>,
    /// hubgate: TCP keepalive idle time on upstream connections and
    /// websocket tunnels, in seconds (0: off). Below IPVS's 900 s.
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub(crate) tcp_keepalive: u64,
}

/// `512`, `512k`, `100m`, `2g` (binary multiples) to bytes.
pub(crate) fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (digits, unit) = match s.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("'{s}' is not a size like 512k, 100m or 2g"))?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return Err(format!("unknown size unit '{unit}' (use k, m or g)")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// CHP's address words: "" is every interface, `localhost` the IPv4
/// loopback, and a host name (JupyterHub passes its `bind_url`'s) its first
/// address, as node's `listen(port, host)` takes it.
pub(crate) fn parse_ip(word: &str) -> Option<IpAddr> {
    match word {
        "" | "*" => Some(IpAddr::from([0, 0, 0, 0])),
        "localhost" => Some(IpAddr::from([127, 0, 0, 1])),
        other => {
            let literal = other.trim_start_matches('[').trim_end_matches(']');
            literal.parse().ok().or_else(|| {
                use std::net::ToSocketAddrs as _;
                (other, 0).to_socket_addrs().ok()?.next().map(|a| a.ip())
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512"), Ok(512));
        assert_eq!(parse_size("512k"), Ok(512 << 10));
        assert_eq!(parse_size("100M"), Ok(100 << 20));
        assert_eq!(parse_size("2g"), Ok(2 << 30));
        assert!(parse_size("2x").is_err());
        assert!(parse_size("m").is_err());
    }

    #[test]
    fn ips() {
        assert_eq!(parse_ip(""), Some(IpAddr::from([0, 0, 0, 0])));
        assert_eq!(parse_ip("localhost"), Some(IpAddr::from([127, 0, 0, 1])));
        assert_eq!(parse_ip("::1"), Some("::1".parse().unwrap()));
        assert_eq!(parse_ip("no-such-host.invalid"), None);
        // A name goes to the resolver ("localhost" in another case is not
        // the literal word).
        assert!(parse_ip("LocalHost").is_some_and(|ip| ip.is_loopback()));
    }

    #[test]
    fn chp_command_lines_parse() {
        let cli = ChpCli::try_parse_from([
            "configurable-http-proxy",
            "--ip",
            "",
            "--port",
            "8000",
            "--api-ip",
            "127.0.0.1",
            "--api-port",
            "8001",
            "--error-target",
            "http://127.0.0.1:8081/hub/error",
            "--log-level",
            "INFO",
            "--custom-header=x-a:1",
            "--custom-header",
            "x-b: 2",
        ])
        .unwrap();
        assert_eq!(cli.serve.port, 8000);
        assert_eq!(cli.serve.log_level, LogLevel::Info);
        assert_eq!(cli.serve.custom_header.len(), 2);
        assert!(ChpCli::try_parse_from(["x", "--port", "http"]).is_err());
        assert!(ChpCli::try_parse_from(["x", "--bogus"]).is_err());
        assert!(
            ChpCli::try_parse_from(["x", "--error-target", "http://a", "--error-path", "/x"])
                .is_err()
        );
        // Parses, but has no HTTPS to redirect to: a usage error.
        let lone = ChpCli::try_parse_from(["x", "--redirect-port", "80"]).unwrap();
        assert!(crate::serve::validate(&lone.serve).is_err());
        let acme = ChpCli::try_parse_from([
            "x",
            "--redirect-port",
            "80",
            "--acme-domain",
            "hub.example.org",
            "--acme-storage",
            "/data/acme",
        ])
        .unwrap();
        assert!(crate::serve::validate(&acme.serve).is_ok());
        let bad = |args: &[&str]| {
            let cli = ChpCli::try_parse_from(args).unwrap();
            crate::serve::validate(&cli.serve).unwrap_err().0
        };
        assert!(bad(&["x", "--acme-domain", "hub.example.org"]).contains("--acme-storage"));
        let no_redirect = ["x", "--acme-domain", "a.org", "--acme-storage", "/d"];
        assert!(bad(&no_redirect).contains("--redirect-port"));
        let bad_name = ["x", "--acme-domain", "bad name", "--acme-storage", "/d"];
        assert!(bad(&bad_name).contains("DNS host name"));
        let wildcard = [
            "x",
            "--acme-domain",
            "*.a.org",
            "--acme-storage",
            "/d",
            "--redirect-port",
            "80",
        ];
        assert!(bad(&wildcard).contains("DNS-01"));
        let bad_dir = [
            "x",
            "--acme-domain",
            "a.org",
            "--acme-storage",
            "/d",
            "--acme-challenge",
            "tls-alpn-01",
            "--acme-directory",
            "http://x",
        ];
        assert!(bad(&bad_dir).contains("--acme-directory"));
    }
}
