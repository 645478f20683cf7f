//! The hub's extras on the day-two deployment: a service of the
//! deployment's (`tests/jupyterhub/dashboard_service.py`, a dashboard that
//! asks the hub's API with its own token), and the hub's logo and a
//! template of the deployment's, all from the file.

use std::net::SocketAddr;
use std::time::Duration;

use crate::cluster::{docker, http_get, wait_for, workspace_root};
use crate::deploy::service_spec;
use crate::deployment::{Deployment, deploy_images};

/// The logo the file names (SVG: text, compared as served).
const LOGO: &str = "<svg xmlns=\"http://www.w3.org/2000/svg\"><title>day two</title></svg>";
/// What the deployment's login template adds to JupyterHub's.
const MARK: &str = "hubgate-day-two-template";

/// Writes the logo and the template beside the deployment file and adds
/// them and the `dash` service to it (after `[hub]`'s keys, `after`).
pub(crate) fn add_extras(d: &Deployment, after: &str) {
    std::fs::write(d.dir.path().join("logo.svg"), LOGO).unwrap();
    let templates = d.dir.path().join("templates");
    std::fs::create_dir_all(&templates).unwrap();
    std::fs::write(
        templates.join("login.html"),
        format!(
            "{{% extends \"templates/login.html\" %}}\n{{% block login_container %}}\
             <p id=\"{MARK}\">Day two</p>{{{{ super() }}}}{{% endblock %}}\n"
        ),
    )
    .unwrap();
    let script =
        std::fs::read_to_string(workspace_root().join("tests/jupyterhub/dashboard_service.py"))
            .unwrap();
    assert!(!script.contains("'''"));
    d.edit(
        after,
        &format!("{after}\nlogo_file = \"logo.svg\"\ntemplates = \"templates\""),
    );
    d.edit(
        "[singleuser]\n",
        &format!(
            "[[hub.services]]\nname = \"dash\"\nimage = \"{}\"\nport = 9000\n\
             scopes = [\"list:users\"]\ncommand = [\"python3\", \"-c\", '''\n{script}''']\n\n\
             [singleuser]\n",
            deploy_images().hub
        ),
    );
}

/// Through hubgate: the dashboard at `/services/dash/` lists `user` (its
/// token may list users) and is refused the proxy's routes (it may not);
/// its token is in no spec; the login page carries the template, the logo
/// is the file's.
pub(crate) fn check_extras(name: &str, hubgate: SocketAddr, user: &str) {
    let answer = wait_for(
        "the dashboard through hubgate",
        Duration::from_secs(90),
        || {
            let a = http_get(hubgate, "/services/dash/", &[]).ok()?;
            (a.status == 200 && a.body.contains(user)).then_some(a)
        },
    );
    let said: serde_json::Value = serde_json::from_str(&answer.body).unwrap();
    eprintln!("the dashboard service through hubgate: {said}");
    assert_eq!(said["users_status"], 200);
    assert_eq!(said["proxy_status"], 403);
    let spec = service_spec(&format!("{name}-service-dash")).to_string();
    let token = docker(&[
        "exec",
        &crate::day_two::running_container(&format!("{name}-service-dash")),
        "cat",
        "/run/secrets/hub-service-token",
    ]);
    assert!(token.len() >= 32 && !spec.contains(&token), "{spec}");
    let login = http_get(hubgate, "/hub/login", &[]).unwrap();
    assert!(login.body.contains(MARK), "{}", login.body);
    let logo = http_get(hubgate, "/hub/logo", &[]).unwrap();
    assert_eq!(logo.body, LOGO);
    eprintln!("the login page from the file's template, the logo from its file");
}

/// The objects a plan names, without the content hashes of configs and
/// the images of services: `+ config NAME-hub-config`, `~ service NAME-hub`.
fn objects(plan: &str) -> std::collections::BTreeSet<String> {
    plan.lines()
        .filter(|l| l.starts_with(['+', '~', '-']) && !l.starts_with("- volumes"))
        .map(|l| {
            let l = l.split(" (").next().unwrap_or(l);
            let parts: Vec<&str> = l.splitn(3, ' ').collect();
            let name = parts.get(2).copied().unwrap_or_default();
            // A config's name ends in its content's hash.
            let name = match name.rsplit_once('-') {
                Some((stem, hash)) if parts[1] == "config" && hash.len() == 12 => stem,
                _ => name,
            };
            format!("{} {} {name}", parts[0], parts[1])
        })
        .collect()
}

/// With every field of the day-two file applied, each edit of one field
/// plans exactly the objects it touches; undone, nothing.
pub(crate) fn plan_names_each_field(d: &Deployment, name: &str) {
    let n = name;
    let hub_config = |more: &[String]| {
        let mut set: Vec<String> = vec![
            format!("+ config {n}-hub-config"),
            format!("- config {n}-hub-config"),
            format!("~ service {n}-hub"),
        ];
        set.extend(more.iter().cloned());
        set
    };
    let guard = [
        format!("+ config {n}-guard-config"),
        format!("- config {n}-guard-config"),
        format!("~ service {n}-docker-guard"),
    ];
    let cases: Vec<(&str, &str, Vec<String>)> = vec![
        ("every = \"10s\"", "every = \"20s\"", hub_config(&[])),
        (
            "concurrent_spawns = 1",
            "concurrent_spawns = 2",
            hub_config(&[]),
        ),
        ("day-two</b> hub", "day-three</b> hub", hub_config(&[])),
        (
            "idle_timeout = \"40s\"",
            "idle_timeout = \"50s\"",
            hub_config(&[]),
        ),
        ("cpu_limit = 1.5", "cpu_limit = 1.25", hub_config(&guard)),
        (
            "path = \"shared\"\nread_only = false",
            "path = \"shared\"\nread_only = true",
            hub_config(&guard),
        ),
        (
            "port = 9000",
            "port = 9001",
            hub_config(&[format!("~ service {n}-service-dash")]),
        ),
        (
            "scopes = [\"list:users\"]",
            "scopes = [\"list:users\", \"read:users:activity\"]",
            hub_config(&[]),
        ),
        (
            "[singleuser]\n",
            "[singleuser]\ncloud_metadata = { addresses = [\"169.254.169.254\", \"100.100.100.200\"] }\n",
            vec![format!("~ service {n}-metadata-block")],
        ),
    ];
    for (from, to, want) in cases {
        d.edit(from, to);
        let plan = d.plan();
        let got = objects(&plan);
        let want: std::collections::BTreeSet<String> = want.into_iter().collect();
        assert_eq!(got, want, "{to:?} planned:\n{plan}");
        d.edit(to, from);
    }
    // The logo's file changes: a new config for it, the hub's mount moved.
    let logo = d.dir.path().join("logo.svg");
    std::fs::write(&logo, LOGO.replace("day two", "day three")).unwrap();
    let plan = d.plan();
    let want: std::collections::BTreeSet<String> = [
        format!("+ config {n}-hub-branding"),
        format!("- config {n}-hub-branding"),
        format!("~ service {n}-hub"),
    ]
    .into_iter()
    .collect();
    assert_eq!(objects(&plan), want, "{plan}");
    std::fs::write(&logo, LOGO).unwrap();
    assert!(d.plan().contains("No changes"), "{}", d.plan());
    eprintln!("each of 10 edits planned exactly the objects it touches; undone, no changes");
}
