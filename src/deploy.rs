//! `hubgate deploy`: reads the deployment file and the files it names,
//! talks to `DOCKER_HOST` (default: the local socket) through the deploy
//! library, and prints plans, progress, status and join commands.
#![allow(clippy::print_stdout)] // plans, status and join commands are the command's output

use std::io::{BufRead as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream, UdpSocket};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use hubgate_deploy::DeployError;
use hubgate_deploy::desired::{Desired, Inputs, desired};
use hubgate_deploy::engine::{Engine, Initialised, choose_advertise};
use hubgate_deploy::file::DeployFile;
use hubgate_deploy::model::Role;

use crate::cli::{ApplyArgs, DeployCommand, DestroyArgs, MigrateArgs, PruneArgs};
use crate::docker_host::DockerHost;
use crate::http_get;

pub(crate) fn run(command: DeployCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Read once: every engine call and the probe use the same host.
    let result = DockerHost::from_env().and_then(|host| runtime.block_on(dispatch(command, &host)));
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn dispatch(command: DeployCommand, host: &DockerHost) -> anyhow::Result<ExitCode> {
    match command {
        DeployCommand::Init {
            advertise_addr,
            single,
        } => init(host, advertise_addr, single).await,
        DeployCommand::JoinToken => {
            let tokens = connect(host).await?.join_tokens().await?;
            println!("To add a worker:  {}", tokens.command(false));
            println!("To add a manager: {}", tokens.command(true));
            Ok(ExitCode::SUCCESS)
        }
        DeployCommand::Plan(a) => {
            let (_, want) = load(&a.file)?;
            let engine = manager(host).await?;
            let plan = engine.plan(&want).await?;
            print!("{plan}");
            Ok(if plan.problems.is_empty() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        DeployCommand::Apply(a) => apply(&a, host).await,
        DeployCommand::Status(a) => {
            let (file, _) = load(&a.file)?;
            print!("{}", manager(host).await?.status(&file.name).await?);
            Ok(ExitCode::SUCCESS)
        }
        DeployCommand::Destroy(a) => destroy(&a, host).await,
        DeployCommand::PruneVolumes(a) => prune_volumes(a, host).await,
        DeployCommand::MigrateHubData(a) => migrate_hub_data(a, host).await,
        DeployCommand::BlockMetadata(a) => crate::block_metadata::run(&a).await,
        DeployCommand::Anchor => crate::block_metadata::hold().await,
    }
}

/// The engine `host` (`DOCKER_HOST`) names (default: the local socket).
async fn connect(host: &DockerHost) -> anyhow::Result<Engine> {
    let docker = host.connect().map_err(|source| DeployError::Unreachable {
        host: host.name().to_owned(),
        source,
    })?;
    Ok(Engine::connect(docker, host.name()).await?)
}

async fn manager(host: &DockerHost) -> anyhow::Result<Engine> {
    let engine = connect(host).await?;
    engine.require_manager().await?;
    Ok(engine)
}

/// Reads, checks and expands a deployment file (errors name the file, the
/// line and the field).
pub(crate) fn load(path: &Path) -> anyhow::Result<(DeployFile, Desired)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the deployment file {}", path.display()))?;
    let file =
        DeployFile::parse(&text).with_context(|| format!("{} is invalid", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    let read = |field: &str, name: &Option<String>| -> anyhow::Result<Option<Vec<u8>>> {
        let Some(name) = name else { return Ok(None) };
        let p = base.join(name);
        let bytes = std::fs::read(&p).with_context(|| {
            format!(
                "{field}: cannot read {} (named in {})",
                p.display(),
                path.display()
            )
        })?;
        anyhow::ensure!(!bytes.is_empty(), "{field}: {} is empty", p.display());
        Ok(Some(bytes))
    };
    let tls = file
        .tls
        .clone()
        .unwrap_or_else(|| hubgate_deploy::file::Tls {
            acme_email: None,
            acme_directory: String::new(),
            challenge: String::new(),
            acme_ca_file: None,
            cert_file: None,
            key_file: None,
        });
    let inputs = Inputs {
        oauth_client_secret: read("auth.client_secret_file", &file.auth.client_secret_file)?,
        password: secret_text(
            "auth.password_file",
            read("auth.password_file", &file.auth.password_file)?,
        )?,
        db_password: secret_text(
            "hub.database.password_file",
            read(
                "hub.database.password_file",
                &file
                    .hub
                    .database
                    .as_ref()
                    .and_then(|d| d.password_file.clone()),
            )?,
        )?,
        tls_cert: read("tls.cert_file", &tls.cert_file)?,
        tls_key: read("tls.key_file", &tls.key_file)?,
        acme_ca: read("tls.acme_ca_file", &tls.acme_ca_file)?,
        logo: read("hub.logo_file", &file.hub.logo_file)?,
        templates: match &file.hub.templates {
            Some(dir) => read_templates(&base.join(dir))?,
            None => vec![],
        },
    };
    let want = desired(&file, &inputs)?;
    Ok((file, want))
}

/// The files of the templates directory `dir` (not its subdirectories),
/// by name.
fn read_templates(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("hub.templates: cannot read the directory {}", dir.display()))?;
    let mut files = vec![];
    for entry in entries {
        let entry = entry.with_context(|| format!("hub.templates: {}", dir.display()))?;
        let kind = entry
            .file_type()
            .with_context(|| format!("hub.templates: {}", entry.path().display()))?;
        // Subdirectories are not templates JupyterHub looks in.
        if !kind.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let bytes = std::fs::read(entry.path())
            .with_context(|| format!("hub.templates: cannot read {}", entry.path().display()))?;
        files.push((name, bytes));
    }
    anyhow::ensure!(
        !files.is_empty(),
        "hub.templates: {} holds no file",
        dir.display()
    );
    files.sort();
    Ok(files)
}

/// A password file's text without surrounding white space (an editor's
/// final newline is not part of it); an empty one is refused.
fn secret_text(field: &str, bytes: Option<Vec<u8>>) -> anyhow::Result<Option<Vec<u8>>> {
    let Some(bytes) = bytes else { return Ok(None) };
    let text = String::from_utf8_lossy(&bytes).trim().to_owned();
    anyhow::ensure!(!text.is_empty(), "{field}: the password is empty");
    Ok(Some(text.into_bytes()))
}

/// Where `apply` checks hubgate answers by default: the machine the engine
/// runs on (`DOCKER_HOST`'s host for `tcp://`; loopback for a local
/// socket) at `port`. None when that host cannot be resolved.
fn default_probe(host: &DockerHost, port: u16) -> Option<SocketAddr> {
    use std::net::ToSocketAddrs as _;
    match host.machine() {
        None => Some(SocketAddr::from(([127, 0, 0, 1], port))),
        Some(name) => (name, port).to_socket_addrs().ok()?.next(),
    }
}

async fn init(
    host: &DockerHost,
    advertise: Option<IpAddr>,
    single: bool,
) -> anyhow::Result<ExitCode> {
    let engine = connect(host).await?;
    let (addr, why) = match advertise {
        Some(ip) => (ip, format!("{ip} was given with --advertise-addr")),
        None => choose_advertise(&primary_address().into_iter().collect::<Vec<_>>()),
    };
    match engine.init_swarm(addr).await? {
        Initialised::Already => println!("This engine is a swarm manager already."),
        Initialised::New { addr } if single => {
            println!(
                "This machine is now a one-node swarm (advertising {addr}); `docker swarm leave --force` undoes it."
            );
        }
        Initialised::New { addr } => {
            println!("Initialised a swarm advertising {addr}: {why}.");
        }
    }
    if single {
        println!("Other nodes can join later: `hubgate deploy join-token` prints the commands.");
        return Ok(ExitCode::SUCCESS);
    }
    let tokens = engine.join_tokens().await?;
    println!("To add a worker:  {}", tokens.command(false));
    println!("To add a manager: {}", tokens.command(true));
    Ok(ExitCode::SUCCESS)
}

/// The address this machine's default route leaves from (no packet is
/// sent: connecting a UDP socket only picks the route).
fn primary_address() -> Option<IpAddr> {
    let s = UdpSocket::bind("0.0.0.0:0").ok()?;
    s.connect("192.0.2.1:9").ok()?;
    s.local_addr().ok().map(|a| a.ip())
}

async fn apply(a: &ApplyArgs, host: &DockerHost) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let (file, want) = load(&a.file)?;
    let engine = manager(host).await?;
    let plan = engine.plan(&want).await?;
    print!("{plan}");
    std::io::stdout().flush()?;
    if !plan.problems.is_empty() {
        anyhow::bail!("the plan has problems (above); nothing was changed");
    }
    let mut progress = |line: String| println!("  {line}");
    if !plan.is_empty() {
        if let (Some(nfs), false) = (&file.storage.nfs, a.skip_nfs_check) {
            check_nfs(&nfs.server)?;
        }
        engine.check_images(&want, &mut progress).await?;
        for dir in &want.local_dirs {
            std::fs::create_dir_all(&dir.path)
                .with_context(|| format!("storage.local: cannot make {}", dir.path))?;
            std::os::unix::fs::chown(&dir.path, Some(dir.uid), Some(dir.uid)).with_context(
                || format!("storage.local: cannot give {} to uid {}", dir.path, dir.uid),
            )?;
        }
        engine.apply(&want, &plan, &mut progress).await?;
    }
    if a.no_wait {
        println!("Applied (not waiting for the services: --no-wait).");
        return Ok(ExitCode::SUCCESS);
    }
    let limit = Duration::from_secs(a.timeout);
    engine.converge(&want, limit, &mut progress).await?;
    // Every time: a node may have joined, or lost an image, since.
    engine.check_server_images(&want, &mut progress).await?;
    let Some(probe) = a
        .probe
        .or_else(|| default_probe(host, file.proxy.http_port))
    else {
        println!(
            "The services run; not probing hubgate: the engine's host in DOCKER_HOST does not resolve here (--probe IP:PORT names where to check)."
        );
        return Ok(ExitCode::SUCCESS);
    };
    let path = if file.tls.is_some() {
        "/_chp_healthz"
    } else {
        "/hub/health"
    };
    wait_http(probe, path, started + limit).with_context(|| {
        format!("the services run, but http://{probe}{path} does not answer 200")
    })?;
    println!(
        "Ready in {:.1} s: log in at {}hub/login",
        started.elapsed().as_secs_f64(),
        file.public_url()
    );
    Ok(ExitCode::SUCCESS)
}

/// Fails unless the NFS server accepts a connection on 2049/tcp.
fn check_nfs(server: &str) -> anyhow::Result<()> {
    use std::net::ToSocketAddrs as _;
    let addrs: Vec<SocketAddr> = (server, 2049)
        .to_socket_addrs()
        .with_context(|| format!("storage.nfs.server: cannot resolve {server}"))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(format!("{addr}: {e}")),
        }
    }
    anyhow::bail!(
        "storage.nfs.server: the NFS server does not answer on 2049/tcp ({}); fix the address, or pass --skip-nfs-check if this machine cannot reach it",
        last.unwrap_or_default()
    )
}

/// Waits until `GET path` at `addr` answers 200.
fn wait_http(addr: SocketAddr, path: &str, deadline: Instant) -> anyhow::Result<()> {
    loop {
        let last = match http_status(addr, path) {
            Ok(200) => return Ok(()),
            Ok(code) => format!("answered {code}"),
            Err(e) => e.to_string(),
        };
        if Instant::now() > deadline {
            anyhow::bail!("last: {last}");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn http_status(addr: SocketAddr, path: &str) -> std::io::Result<u16> {
    Ok(http_get::get(addr, path, None, Duration::from_secs(5))?.status)
}

async fn destroy(a: &DestroyArgs, host: &DockerHost) -> anyhow::Result<ExitCode> {
    let (file, _) = load(&a.file)?;
    let engine = manager(host).await?;
    if !a.yes {
        print!(
            "Remove the deployment {:?}: its services, user servers, configs, secrets and network{}? Type its name to go on: ",
            file.name,
            if a.purge {
                ", AND the volumes of users' files and the hub's database"
            } else {
                ""
            }
        );
        std::io::stdout().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if answer.trim() != file.name {
            println!("Nothing removed.");
            return Ok(ExitCode::from(1));
        }
    }
    let mut progress = |line: String| println!("  {line}");
    let removed = engine
        .destroy(&file.name, &file.proxy.image, a.purge, &mut progress)
        .await?;
    if removed == hubgate_deploy::engine::Removed::default() {
        println!(
            "Nothing to remove: this swarm has no object of the deployment {:?}.",
            file.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    if !removed.kept_volumes.is_empty() {
        println!(
            "Kept {} data volume(s) ({}); `destroy --purge` removes them.",
            removed.kept_volumes.len(),
            removed.kept_volumes.join(", ")
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The job `apply` and `destroy` run on every node: this engine's volumes
/// of the deployment that the rule does not keep go; those a running
/// container still uses stay (and are named). Exits 0 then too: the swarm
/// runs a failed job task again, and a volume in use is no failure.
async fn prune_volumes(a: PruneArgs, host: &DockerHost) -> anyhow::Result<ExitCode> {
    let keep = hubgate_deploy::volumes::Keep {
        names: a.keep,
        user_storage: a.keep_storage,
        roles: a
            .keep_role
            .iter()
            .map(|r| Role::from_label(r).with_context(|| format!("--keep-role: no role {r}")))
            .collect::<anyhow::Result<_>>()?,
    };
    let pruned = connect(host)
        .await?
        .prune_local(&a.deployment, &keep)
        .await?;
    for v in &pruned.removed {
        println!("removed volume {v}");
    }
    if !pruned.in_use.is_empty() {
        println!("in use, kept: {}", pruned.in_use.join(", "));
    }
    Ok(ExitCode::SUCCESS)
}

/// The job `apply` runs on the node of an earlier hubgate's hub: its
/// database onto the storage, its cookie secret into a Docker secret.
async fn migrate_hub_data(a: MigrateArgs, host: &DockerHost) -> anyhow::Result<ExitCode> {
    let said = connect(host)
        .await?
        .migrate_hub_data_here(
            &a.deployment,
            &a.hub_service,
            &a.from,
            &a.to,
            &a.cookie_secret,
        )
        .await?;
    for line in said {
        println!("{line}");
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_probe_goes_to_the_engines_machine() {
        for (host, probe) in [
            (None, "127.0.0.1:8000"),
            (Some("unix:///run/x.sock"), "127.0.0.1:8000"),
            (Some("tcp://10.1.2.3:2375"), "10.1.2.3:8000"),
            (Some("tcp://[fd00::5]:2376"), "[fd00::5]:8000"),
        ] {
            let engine = DockerHost::parse(host).unwrap();
            let at = default_probe(&engine, 8000).map(|a| a.to_string());
            assert_eq!(at.as_deref(), Some(probe), "{host:?}");
        }
    }
}
