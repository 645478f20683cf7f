//! Real JupyterHub, jupyter_server and ipykernel (from the venv that
//! `scripts/test` builds) in front of hubgate, both ways JupyterHub uses a
//! proxy: (a) an external `hubgate serve` (`should_start = False`), and
//! (b) JupyterHub launching hubgate itself as `configurable-http-proxy`.
//! `tests/jupyterhub/drive.py` plays the user.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::{Child, Command};

use crate::harness::{Hubgate, TOKEN, free_port};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The venv with JupyterHub; fails with the setup command when missing.
fn venv() -> PathBuf {
    let venv = std::env::var_os("HUBGATE_VENV").map_or_else(|| repo().join(".venv"), PathBuf::from);
    assert!(
        venv.join("bin/jupyterhub").exists() && venv.join("bin/jupyterhub-singleuser").exists(),
        "JupyterHub is not installed in {}: run `scripts/test` (which runs `scripts/setup-venv`) first",
        venv.display()
    );
    venv
}

struct Ports {
    public: u16,
    api: u16,
    hub: u16,
}

fn config(dir: &Path, venv: &Path, ports: &Ports, should_start: bool) -> String {
    let (dir, venv) = (dir.display(), venv.display());
    let should_start = if should_start { "True" } else { "False" };
    format!(
        r#"
import signal
# Children must not inherit an ignored SIGINT (spawners stop servers with it).
signal.signal(signal.SIGINT, signal.default_int_handler)
c = get_config()
c.JupyterHub.bind_url = "http://127.0.0.1:{public}"
c.JupyterHub.hub_bind_url = "http://127.0.0.1:{hub}"
c.JupyterHub.db_url = "sqlite:///{dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/cookie_secret"
c.JupyterHub.pid_file = "{dir}/jupyterhub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = "{dir}/home/{{username}}"
c.Spawner.cmd = ["{venv}/bin/jupyterhub-singleuser"]
c.Spawner.args = ["--allow-root"]
c.Spawner.start_timeout = 90
c.Spawner.http_timeout = 90
c.ConfigurableHTTPProxy.should_start = {should_start}
c.ConfigurableHTTPProxy.api_url = "http://127.0.0.1:{api}"
c.ConfigurableHTTPProxy.auth_token = "{TOKEN}"
c.ConfigurableHTTPProxy.pid_file = "{dir}/proxy.pid"
"#,
        public = ports.public,
        hub = ports.hub,
        api = ports.api,
    )
}

/// Starts JupyterHub in `dir` with `path` as its PATH.
fn start_hub(dir: &Path, venv: &Path, path: &str) -> Child {
    let log = std::fs::File::create(dir.join("jupyterhub.log")).unwrap();
    Command::new(venv.join("bin/jupyterhub"))
        .args(["-f", "jupyterhub_config.py"])
        .current_dir(dir)
        .env("PATH", path)
        .env_remove("CONFIGPROXY_AUTH_TOKEN")
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

async fn drive(venv: &Path, dir: &Path, ports: &Ports) {
    let out = Command::new(venv.join("bin/python"))
        .arg(repo().join("tests/jupyterhub/drive.py"))
        .args(["--public", &format!("http://127.0.0.1:{}", ports.public)])
        .args(["--proxy-api", &format!("http://127.0.0.1:{}", ports.api)])
        .args(["--proxy-token", TOKEN])
        .output();
    let out = tokio::time::timeout(Duration::from_secs(300), out)
        .await
        .expect("drive.py hung")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!("{stdout}");
    if !out.status.success() {
        let log = std::fs::read_to_string(dir.join("jupyterhub.log")).unwrap_or_default();
        let tail: Vec<&str> = log
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        panic!(
            "drive.py failed:\n{stdout}\n{}\n--- jupyterhub.log (tail) ---\n{}",
            String::from_utf8_lossy(&out.stderr),
            tail.join("\n")
        );
    }
    assert!(stdout.contains("[drive] OK"));
}

/// Stops the hub with SIGTERM (so it stops what it started) and waits.
async fn stop_hub(mut hub: Child) {
    if let Some(pid) = hub.id() {
        let _ = std::process::Command::new("kill")
            .args(["-s", "TERM", &pid.to_string()])
            .status();
    }
    if tokio::time::timeout(Duration::from_secs(30), hub.wait())
        .await
        .is_err()
    {
        let _ = hub.kill().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyterhub_with_external_hubgate() {
    let venv = venv();
    let dir = tempfile::tempdir().unwrap();
    let hg = Hubgate::spawn(&[]).await;
    let ports = Ports {
        public: hg.port,
        api: hg.api_port,
        hub: free_port(),
    };
    std::fs::write(
        dir.path().join("jupyterhub_config.py"),
        config(dir.path(), &venv, &ports, false),
    )
    .unwrap();
    let path = format!("{}/bin:/usr/bin:/bin", venv.display());
    let hub = start_hub(dir.path(), &venv, &path);
    drive(&venv, dir.path(), &ports).await;
    stop_hub(hub).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jupyterhub_launches_hubgate_as_configurable_http_proxy() {
    let venv = venv();
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    std::os::unix::fs::symlink(
        env!("CARGO_BIN_EXE_hubgate"),
        bin.join("configurable-http-proxy"),
    )
    .unwrap();
    let ports = Ports {
        public: free_port(),
        api: free_port(),
        hub: free_port(),
    };
    std::fs::write(
        dir.path().join("jupyterhub_config.py"),
        config(dir.path(), &venv, &ports, true),
    )
    .unwrap();
    let path = format!("{}:{}/bin:/usr/bin:/bin", bin.display(), venv.display());
    let hub = start_hub(dir.path(), &venv, &path);
    drive(&venv, dir.path(), &ports).await;
    let proxy_pid = std::fs::read_to_string(dir.path().join("proxy.pid")).unwrap_or_default();
    let proxy_cmdline =
        std::fs::read(format!("/proc/{}/cmdline", proxy_pid.trim())).unwrap_or_default();
    stop_hub(hub).await;
    // The proxy JupyterHub started is hubgate, and the hub stopped it.
    assert!(
        String::from_utf8_lossy(&proxy_cmdline).contains("configurable-http-proxy"),
        "{proxy_pid}"
    );
    let gone = !Path::new(&format!("/proc/{}", proxy_pid.trim())).exists();
    if !gone {
        let _ = std::process::Command::new("kill")
            .args(["-9", proxy_pid.trim()])
            .status();
    }
    assert!(gone, "JupyterHub's stop should have ended hubgate");
}

/// The deployment's spawner (hubgate's JupyterHub module,
/// `deploy/src/desired/hubgate_hub.py`, imported as the hub imports it) with the real dockerspawner
/// and Docker client, against scripted engine answers: a server the swarm
/// is moving off a lost node is running, a manager's 5xx is asked again,
/// a stop scales to zero without waiting on a down node, a leftover
/// service is removed.
#[test]
fn the_deployment_spawner_keeps_the_hub_and_the_swarm_in_step() {
    let text = check_script("spawner_check.py", &[repo().join("deploy/src/desired")]);
    assert!(text.contains(" passed, 0 failed"), "{text}");
}

/// The hub's lease entrypoint (`deploy/src/desired/hubgate_lease.py`) as
/// real processes sharing one lease, a sqlite file and then a table of a
/// real PostgreSQL server (Debian's, started by the check), each with a
/// stand-in engine
/// and a stand-in JupyterHub (`tests/jupyterhub/lease_check.py`): a standby
/// waits while the holder renews; a holder whose engine freezes, or whose
/// store locks, stops its server before another takes over; a stop hands
/// over to a task of the new spec at once; a killed holder's lease is taken
/// after its time; a standby that reaches only one of two hubgate tasks
/// (its node's overlay links down) never takes it; a peer list with an
/// entry that is not `HOST:PORT` is refused at the start. A prober every
/// 20 ms never sees two servers at once.
#[test]
fn the_hub_lease_never_lets_two_hubs_serve() {
    let text = check_script(
        "lease_check.py",
        &[repo().join("deploy/src/desired"), "--postgres".into()],
    );
    assert!(text.contains("14 passed, 0 failed"), "{text}");
}

/// The hub's configuration as each example deployment file renders it (the
/// production one also with its PostgreSQL database, and with Keycloak
/// through the generic OAuth authenticator), compiled and loaded by JupyterHub's own config loader through hubgate's
/// module (`tests/jupyterhub/config_check.py`): every setting must be a
/// configurable trait of the class it names.
#[test]
fn every_example_renders_a_hub_configuration_that_loads() {
    use hubgate_deploy::desired::{Inputs, desired};
    use hubgate_deploy::file::DeployFile;
    use hubgate_deploy::model::{Role, SecretData};

    let dir = tempfile::tempdir().unwrap();
    let inputs = Inputs {
        oauth_client_secret: Some(b"s".to_vec()),
        password: Some(b"p".to_vec()),
        tls_cert: Some(b"c".to_vec()),
        tls_key: Some(b"k".to_vec()),
        acme_ca: Some(b"a".to_vec()),
        db_password: Some(b"d".to_vec()),
        logo: Some(b"l".to_vec()),
        templates: vec![("page.html".into(), b"t".to_vec())],
    };
    let mut configs = vec![];
    for example in [
        "local",
        "production",
        "production-postgresql",
        "production-oauth",
        "production-extras",
    ] {
        let source = example.split('-').next().unwrap();
        let path = repo().join(format!("examples/{source}.toml"));
        let mut text = std::fs::read_to_string(&path).unwrap();
        if example.ends_with("-postgresql") {
            text = text.replace("# database = {", "database = {");
        }
        if example.ends_with("-oauth") {
            text = text
                .replace(
                    "kind = \"github\"",
                    "kind = \"oauth\"\npreset = \"keycloak\"",
                )
                .replace(
                    "allowed_organizations = [\"example-org\"]",
                    "issuer = \"https://id.example.org/realms/research\"\n\
                     allowed_groups = [\"researchers\"]\nadmin_groups = [\"hub-admins\"]",
                );
        }
        if example.ends_with("-extras") {
            // The logo, the templates and the service the example shows.
            for line in [
                "logo_file",
                "templates",
                "[[hub.services]]",
                "name = \"dashboard\"",
            ] {
                text = text.replace(&format!("# {line}"), line);
            }
            for key in [
                "image = \"registry.example.org/hub-dashboard",
                "command",
                "port",
                "scopes",
            ] {
                text = text.replace(&format!("# {key}"), key);
            }
        }
        let file = DeployFile::parse(&text).unwrap();
        let want = desired(&file, &inputs).unwrap();
        let config = want.configs.iter().find(|c| c.role == Role::HubConfig);
        let Some(SecretData::Bytes(text)) = config.map(|c| &c.data) else {
            panic!("{example}: no hub configuration")
        };
        let out = dir.path().join(format!("{example}_jupyterhub_config.py"));
        std::fs::write(&out, text).unwrap();
        configs.push(out);
    }
    let mut args = vec![repo().join("deploy/src/desired")];
    args.extend(configs);
    let text = check_script("config_check.py", &args);
    assert!(text.contains("5 passed, 0 failed"), "{text}");
}

/// The configuration every user server loads
/// (`deploy/src/desired/singleuser_config.py`), loaded as jupyter_server
/// loads it, and the session it then calls the hub with
/// (`tests/jupyterhub/singleuser_check.py`): getaddrinfo on each
/// connection, and connection attempts of a few seconds. With aiohttp's
/// 30 s a server whose first attempt went to a hub's old address missed
/// its activity reports for half a minute after a failover (the multi-node
/// test saw it).
#[test]
fn user_servers_resolve_the_hub_anew_and_give_up_stalled_connections() {
    let config = repo().join("deploy/src/desired/singleuser_config.py");
    let text = check_script("singleuser_check.py", &[config]);
    assert!(text.contains("1 passed, 0 failed"), "{text}");
}

/// Runs `tests/jupyterhub/<script>` with the test venv's Python; its
/// output, which must end in success.
fn check_script(script: &str, args: &[PathBuf]) -> String {
    let out = std::process::Command::new(venv().join("bin/python"))
        .arg(repo().join("tests/jupyterhub").join(script))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{text}\n(dockerspawner or oauthenticator missing? run scripts/setup-venv)"
    );
    text
}
