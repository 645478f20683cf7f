//! `auth.kind = "oauth"` on this machine's swarm: a real JupyterHub signs
//! users in through an OpenID Connect provider the test runs
//! (`tests/jupyterhub/oidc_provider.py`, the authorization code flow with
//! PKCE) on the host's end of the swarm's gateway bridge, where the hub's
//! container reaches it: the redirect, the provider's sign-in, the
//! callback through hubgate (the hub exchanges the code and reads the
//! user's claims), groups from the claim deciding who may log in and who is
//! an admin, then a server. The client secret is only in its Docker secret.

use std::process::{Child, Command};

use crate::cluster::workspace_root;
use crate::cluster::{docker, free_port, unique};
use crate::deploy::{decode_base64, service_spec};
use crate::deployment::{Deployment, User, inspect, local_file};

/// The provider process, stopped by its PID when dropped.
struct Provider(Child);

impl Drop for Provider {
    fn drop(&mut self) {
        let _ = Command::new("kill").arg(self.0.id().to_string()).status();
        let _ = self.0.wait();
    }
}

#[test]
fn users_sign_in_through_an_openid_connect_provider_by_their_groups() {
    let name = unique("oidc").replace('-', "");
    let port = free_port();
    let storage = tempfile::tempdir().unwrap();
    // The host's address on the bridge every swarm container leaves by.
    let gateway = docker(&[
        "network",
        "inspect",
        "docker_gwbridge",
        "--format",
        "{{(index .IPAM.Config 0).Gateway}}",
    ]);
    let provider_port = free_port();
    let issuer = format!("http://{gateway}:{provider_port}");
    let callback = format!("http://localhost:{port}/hub/oauth_callback");
    let secret = format!("secret-{}", unique("s"));
    let python = workspace_root().join(".venv/bin/python");
    let child = Command::new(&python)
        .arg(workspace_root().join("tests/jupyterhub/oidc_provider.py"))
        .args([&gateway, &provider_port.to_string(), "hub-client", &secret])
        .arg(&callback)
        .args([
            "alice=researchers,hub-admins",
            "bob=researchers",
            "eve=visitors",
        ])
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e} (run scripts/setup-venv)", python.display()));
    let _provider = Provider(child);

    let auth = format!(
        "kind = \"oauth\"\nclient_id = \"hub-client\"\nclient_secret_file = \"oidc-secret\"\n\
         authorize_url = \"{issuer}/authorize\"\ntoken_url = \"{issuer}/token\"\n\
         userdata_url = \"{issuer}/userinfo\"\nusername_claim = \"preferred_username\"\n\
         groups_claim = \"groups\"\nallowed_groups = [\"researchers\"]\n\
         admin_groups = [\"hub-admins\"]\nlogin_service = \"the test's provider\""
    );
    let text = local_file(&name, port, storage.path(), "").replace("kind = \"dummy\"", &auth);
    let d = Deployment::new(&name, &text);
    std::fs::write(d.dir.path().join("oidc-secret"), format!("{secret}\n")).unwrap();
    let out = d.apply();
    assert!(out.contains("Ready in"), "{out}");

    let public = vec![format!("http://localhost:{port}")];
    let alice = User::new("alice", public.clone());
    let said = alice.step("oidc", &[]);
    assert!(
        said.contains("admin True") && said.contains("'hub-admins', 'researchers'"),
        "{said}"
    );
    let bob = User::new("bob", public.clone());
    assert!(bob.step("oidc", &[]).contains("admin False"));
    User::new("eve", public).step("oidc", &["--expect-refused"]);
    alice.step("spawn", &[]);
    alice.step("kernel", &[]);
    alice.step("stop", &[]);

    // The secret reached the hub as a Docker secret: in no spec or config.
    let hub = service_spec(&format!("{name}-hub")).to_string();
    assert!(
        !hub.contains(&secret),
        "the client secret is in the hub's spec"
    );
    let label = format!("label=hubgate.deploy={name}");
    for id in docker(&["config", "ls", "-q", "--filter", &label]).lines() {
        let data = inspect("config", id)["Spec"]["Data"]
            .as_str()
            .unwrap()
            .to_owned();
        let text = String::from_utf8_lossy(&decode_base64(&data)).into_owned();
        assert!(!text.contains(&secret), "the client secret is in a config");
    }
    eprintln!(
        "oidc: alice (admin by group) and bob signed in, eve refused by group, a kernel ran; the secret only in its Docker secret"
    );
}
