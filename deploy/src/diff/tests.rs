use super::*;
use crate::desired::desired;
use crate::desired::tests::{PRODUCTION, inputs, production};
use crate::file::DeployFile;
use std::collections::{BTreeMap, HashMap};

use crate::model::ROLE_LABEL;
use crate::observed::VolumeSeen;

/// What the engine reports right after `want` was applied.
fn observed(want: &Desired) -> Observed {
    Observed {
        network: Some(NetworkSeen {
            name: want.network.name.clone(),
            driver: "overlay".into(),
            attachable: true,
            subnet: Some("10.0.5.0/24".into()),
            encrypted: want.network.encrypted,
            managed: true,
            foreign_services: vec![],
        }),
        old_networks: vec![],
        configs: want.configs.iter().map(|c| c.name.clone()).collect(),
        server_configs: Default::default(),
        secrets: want.secrets.iter().map(|s| s.name.clone()).collect(),
        all_secrets: want.secrets.iter().map(|s| s.name.clone()).collect(),
        services: want.services.clone(),
        volumes: vec![],
        foreign_ports: vec![],
        hub_config: None,
        hub_data: None,
    }
}

fn edited(from: &str, to: &str) -> Desired {
    let text = PRODUCTION.replace(from, to);
    assert_ne!(text, PRODUCTION, "{from:?} is not in the example");
    desired(&DeployFile::parse(&text).unwrap(), &inputs()).unwrap()
}

/// Each step as "verb name", and the changed fields of updates.
fn summary(plan: &Plan) -> Vec<String> {
    plan.steps
        .iter()
        .map(|s| match s {
            Step::CreateNetwork(n) => format!("create network {}", n.name),
            Step::ReplaceNetwork { want, .. } => format!("replace network {}", want.name),
            Step::CreateConfig(c) => format!("create config {}", c.role),
            Step::CreateSecret(s) => format!("create secret {}", s.role),
            Step::CreateService(s) => format!("create service {}", s.name),
            Step::UpdateService { want, changes } => {
                let fields: Vec<&str> = changes.iter().map(|c| c.field).collect();
                format!("update service {} ({})", want.name, fields.join(", "))
            }
            Step::ReplaceService { want, .. } => format!("replace service {}", want.name),
            Step::RemoveService(n) => format!("remove service {n}"),
            Step::RemoveConfig(_) => "remove config".to_owned(),
            Step::RemoveSecret(n) => format!("remove secret {n}"),
            Step::PruneVolumes { .. } => "prune volumes".to_owned(),
            Step::MigrateHubData(m) => format!("move hub data from {} on {}", m.volume, m.node),
            Step::RemoveNetwork(n) => format!("remove network {n}"),
        })
        .collect()
}

#[test]
fn a_fresh_swarm_gets_everything() {
    let want = production();
    let plan = diff(&want, &Observed::default());
    assert_eq!(
        summary(&plan),
        [
            "create network jhub",
            "create config hub-config",
            "create config hub-module",
            "create config hub-spawner",
            "create config hub-lease",
            "create config singleuser-config",
            "create config guard-config",
            "create secret proxy-token",
            "create secret oauth-client-secret",
            "create secret hub-cookie-secret",
            "create secret hub-crypt-key",
            "create service jhub-hub",
            "create service jhub-hubgate",
            "create service jhub-docker-guard",
            "create service jhub-metadata-block",
            "create service jhub-network-anchor",
        ]
    );
    assert!(plan.problems.is_empty());
    assert!(
        plan.to_string()
            .ends_with("16 to create, 0 to change, 0 to remove.\n")
    );
}

#[test]
fn an_applied_file_plans_nothing() {
    let want = production();
    let plan = diff(&want, &observed(&want));
    assert!(plan.is_empty(), "{plan}");
    let text = plan.to_string();
    assert!(
        text.starts_with("No changes: the swarm matches the deployment file.\n"),
        "{text}"
    );
    // apply looks for the servers' images on the nodes all the same.
    assert!(
        text.contains("then: look for the user servers' images")
            && text.contains("jupyterhub-singleuser-gpu:6.1.1"),
        "{text}"
    );
}

#[test]
fn a_new_host_name_touches_the_hub_config_and_hubgate_only() {
    let old = production();
    let new = edited(
        "hosts = [\"hub.example.org\"]",
        "hosts = [\"jupyter.example.org\"]",
    );
    let plan = diff(&new, &observed(&old));
    assert_eq!(
        summary(&plan),
        [
            "create config hub-config",
            "update service jhub-hub (configs)",
            "update service jhub-hubgate (args)",
            "remove config",
        ]
    );
    let text = plan.to_string();
    assert!(text.contains("--acme-domain=hub.example.org"), "{text}");
    assert!(text.contains("--acme-domain=jupyter.example.org"), "{text}");
}

#[test]
fn a_new_nfs_server_moves_every_mount_and_prunes_volumes_on_every_node() {
    let old = production();
    let new = edited("server = \"10.0.0.10\"", "server = \"10.0.0.20\"");
    assert_ne!(old.user_volume, new.user_volume, "new user volumes' names");
    let mut seen = observed(&old);
    let labels = |role: &str, storage: Option<&str>| {
        let mut l = HashMap::from([(ROLE_LABEL.to_owned(), role.to_owned())]);
        if let Some(s) = storage {
            l.insert(crate::model::STORAGE_LABEL.to_owned(), s.to_owned());
        }
        l
    };
    let volume = |name: String, labels| VolumeSeen {
        name,
        labels,
        options: BTreeMap::new(),
    };
    let old_storage = old.keep.user_storage.clone().unwrap();
    seen.volumes = vec![
        volume(
            old.user_volume.replace("{username}", "alice"),
            labels("user", Some(&old_storage)),
        ),
        volume("jupyterhub-user-carol".into(), labels("user", None)),
        volume(
            old.services[0].mounts[1].source.clone(),
            labels("storage", None),
        ),
        volume("jhub-hub-data".into(), labels("hub-data", None)),
    ];
    let plan = diff(&new, &seen);
    assert_eq!(
        summary(&plan),
        [
            "create config hub-config",
            // The spawner policy names the user volumes' options.
            "create config guard-config",
            "update service jhub-hub (mounts, configs)",
            "update service jhub-hubgate (mounts)",
            "update service jhub-docker-guard (configs)",
            "remove config",
            "remove config",
            "prune volumes",
        ]
    );
    let text = plan.to_string();
    assert!(
        text.contains("the storage moved from :/srv/jupyterhub (addr=10.0.0.10,")
            && text.contains("to :/srv/jupyterhub (addr=10.0.0.20,"),
        "{text}"
    );
    assert!(text.contains("on any node"), "{text}");
    let stale = text
        .lines()
        .find(|l| l.contains("stale and unused on this node"))
        .unwrap();
    assert!(
        stale.contains("jupyterhub-user-carol")
            && stale.contains(&old.user_volume.replace("{username}", "alice"))
            && stale.contains(&old.services[0].mounts[1].source)
            && !stale.contains("hub-data"),
        "{stale}"
    );
    // Applied: only volumes of the new storage here, nothing to prune.
    let mut after = observed(&new);
    after.volumes = vec![volume(
        new.user_volume.replace("{username}", "bob"),
        labels("user", new.keep.user_storage.as_deref()),
    )];
    assert!(diff(&new, &after).is_empty(), "{}", diff(&new, &after));
}

#[test]
fn a_resource_limit_changes_one_field_of_one_service() {
    let old = production();
    let new = edited(
        "cpu_limit = 2.0, memory_limit = \"2G\"",
        "cpu_limit = 1.5, memory_limit = \"2G\"",
    );
    let plan = diff(&new, &observed(&old));
    assert_eq!(summary(&plan), ["update service jhub-hub (cpu limit)"]);
    assert!(plan.to_string().contains("cpu limit: 2 -> 1.5"), "{plan}");
}

#[test]
fn a_missing_external_secret_is_a_problem() {
    let want = edited(
        "client_secret_file = \"github-client-secret\"",
        "client_secret_secret = \"github-secret\"",
    );
    let mut seen = observed(&want);
    seen.all_secrets.remove("github-secret");
    let plan = diff(&want, &seen);
    assert_eq!(plan.problems.len(), 1);
    assert!(
        plan.problems[0].contains("docker secret create github-secret"),
        "{plan}"
    );
    seen.all_secrets.insert("github-secret".into());
    assert!(diff(&want, &seen).problems.is_empty());
}

#[test]
fn a_network_with_other_options_is_made_anew_when_nothing_else_uses_it() {
    let old = production();
    let new = edited("encrypted = false", "encrypted = true");
    let mut seen = observed(&old);
    let plan = diff(&new, &seen);
    assert_eq!(
        summary(&plan),
        [
            "replace network jhub",
            "create service jhub-hub",
            "create service jhub-hubgate",
            "create service jhub-docker-guard",
            "create service jhub-metadata-block",
            "create service jhub-network-anchor"
        ]
    );
    seen.network.as_mut().unwrap().foreign_services = vec!["jupyter-alice".into()];
    let plan = diff(&new, &seen);
    assert!(plan.problems[0].contains("jupyter-alice"), "{plan}");
    seen.network.as_mut().unwrap().managed = false;
    let plan = diff(&new, &seen);
    assert!(
        plan.problems[0].contains("not made by hubgate deploy"),
        "{plan}"
    );
}

#[test]
fn objects_the_file_no_longer_names_are_removed() {
    let want = production();
    let mut seen = observed(&want);
    seen.services.push(ServiceWant {
        name: "jhub-old".into(),
        ..want.services[0].clone()
    });
    seen.secrets
        .push("jhub-oauth-client-secret-000000000000".into());
    seen.old_networks.push("jhub-old-net".into());
    assert_eq!(
        summary(&diff(&want, &seen)),
        [
            "remove service jhub-old",
            "remove secret jhub-oauth-client-secret-000000000000",
            "remove network jhub-old-net",
        ]
    );
}

/// The servers' configuration of an earlier apply stays while a running
/// server mounts it (its removal would fail, and every plan would show
/// it): the upgrade test saw a second apply that was never "No changes".
#[test]
fn a_config_running_servers_mount_is_kept_until_they_stop() {
    let want = production();
    let mut seen = observed(&want);
    let old = "jhub-singleuser-config-000000000000".to_owned();
    seen.configs.push(old.clone());
    assert_eq!(summary(&diff(&want, &seen)), ["remove config"]);
    seen.server_configs.insert(old);
    assert!(diff(&want, &seen).steps.is_empty());
}

#[test]
fn a_port_another_service_publishes_is_a_problem() {
    let want = production();
    let mut seen = observed(&want);
    seen.foreign_ports = vec![(443, "web".into()), (8080, "other".into())];
    let plan = diff(&want, &seen);
    assert_eq!(plan.problems.len(), 1, "{plan}");
    assert!(
        plan.problems[0].contains("port 443 is published by the service web")
            && plan.problems[0].contains("proxy.http_port/https_port"),
        "{plan}"
    );
}

#[test]
fn a_hub_config_change_names_the_settings() {
    let want = edited("idle_timeout = \"2h\"", "idle_timeout = \"3h\"");
    let mut seen = observed(&production());
    let SecretData::Bytes(old) = &production().configs[0].data else {
        panic!("the hub config has bytes")
    };
    seen.hub_config = Some(String::from_utf8(old.clone()).unwrap());
    let plan = diff(&want, &seen);
    let text = plan.to_string();
    assert!(text.contains("hub settings that change:"), "{text}");
    assert_eq!(
        plan.hub_settings,
        [
            ('-', "idle_timeout: 7200".to_owned()),
            ('+', "idle_timeout: 10800".to_owned())
        ],
        "{text}"
    );
    // A value under a section is named by its path.
    let want = edited(
        "notebook_dir = \"/home/jovyan/work\"",
        "notebook_dir = \"/srv/work\"",
    );
    let plan = diff(&want, &seen);
    assert!(
        plan.hub_settings
            .contains(&('+', "spawner.notebook_dir: \"/srv/work\"".to_owned())),
        "{plan}"
    );
    // A limit: the hub's configuration and service, nothing else.
    let want = edited("named_servers = 3", "named_servers = 4");
    let plan = diff(&want, &seen);
    assert_eq!(
        plan.hub_settings,
        [
            ('-', "limits.named_servers: 3".to_owned()),
            ('+', "limits.named_servers: 4".to_owned())
        ],
        "{plan}"
    );
    let text = plan.to_string();
    assert!(text.contains("~ service jhub-hub"), "{text}");
    assert!(!text.contains("service jhub-hubgate"), "{text}");
    // A profile's limit: named by its place in the list.
    let want = edited(
        "resources = { cpu_limit = 8.0, memory_limit = \"32G\" }",
        "resources = { cpu_limit = 8.0, memory_limit = \"64G\" }",
    );
    let plan = diff(&want, &seen);
    assert_eq!(
        plan.hub_settings,
        [
            (
                '-',
                "spawner.profiles[1].resources.memory_limit: 34359738368".to_owned()
            ),
            (
                '+',
                "spawner.profiles[1].resources.memory_limit: 68719476736".to_owned()
            )
        ],
        "{plan}"
    );
}

#[test]
fn new_ports_start_beside_the_old_and_say_so() {
    let seen = observed(&production());
    let moved = edited("https_port = 443", "https_port = 8443");
    let plan = diff(&moved, &seen);
    // 80 stays published: the new task could not bind it beside the old.
    let update = |plan: &Plan| {
        plan.steps.iter().find_map(|s| match s {
            Step::UpdateService { want, .. } if want.name.ends_with("-hubgate") => {
                Some(want.start_first)
            }
            _ => None,
        })
    };
    assert_eq!(update(&plan), Some(false), "{plan}");
    let moved = edited(
        "http_port = 80\nhttps_port = 443",
        "http_port = 8080\nhttps_port = 8443",
    );
    let plan = diff(&moved, &seen);
    assert_eq!(update(&plan), Some(true), "{plan}");
    let text = plan.to_string();
    assert!(
        text.contains("new tasks start before the old ones stop"),
        "{text}"
    );
    assert!(text.contains("rolled back by the swarm"), "{text}");
}

#[test]
fn a_hub_of_an_earlier_hubgate_moves_its_database_then_is_made_anew() {
    let want = production();
    let mut seen = observed(&want);
    // Today's hub as an earlier hubgate made it: one replica, its database
    // on a volume of its node, no cookie secret of its own.
    let hub = seen
        .services
        .iter_mut()
        .find(|s| s.name == "jhub-hub")
        .unwrap();
    hub.mode = crate::model::Mode::Replicated(1);
    seen.secrets.retain(|s| !s.contains("cookie"));
    seen.hub_data = Some(crate::observed::HubDataSeen {
        volume: "jhub-hub-data".into(),
        node_id: "n1".into(),
        node: "manager-1".into(),
        node_ready: true,
    });
    let plan = diff(&want, &seen);
    assert_eq!(
        summary(&plan),
        [
            "move hub data from jhub-hub-data on manager-1",
            "replace service jhub-hub",
        ]
    );
    let text = plan.to_string();
    assert!(
        text.contains("move the hub's database from the volume jhub-hub-data on manager-1")
            && text.contains("into the secret jhub-hub-cookie-secret")
            && text.contains("the swarm cannot change a service's mode in place"),
        "{text}"
    );
    // Its node down: the database cannot move, and apply is refused.
    seen.hub_data.as_mut().unwrap().node_ready = false;
    let plan = diff(&want, &seen);
    assert!(plan.problems[0].contains("which is down"), "{plan}");
}
