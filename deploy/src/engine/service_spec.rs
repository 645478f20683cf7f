//! `ServiceWant` to bollard's `ServiceSpec` and back: the same fields in
//! both directions, so a service `apply` made reads back unchanged.

use std::collections::{BTreeMap, HashMap};

use bollard::models::{
    EndpointPortConfig, EndpointPortConfigProtocolEnum, EndpointPortConfigPublishModeEnum,
    EndpointSpec, EndpointSpecModeEnum, HealthConfig, Limit, Mount, MountType, MountVolumeOptions,
    MountVolumeOptionsDriverConfig, NetworkAttachmentConfig, ResourceObject, ServiceSpec,
    ServiceSpecMode, ServiceSpecModeReplicated, ServiceSpecRollbackConfig,
    ServiceSpecRollbackConfigFailureActionEnum, ServiceSpecUpdateConfig,
    ServiceSpecUpdateConfigFailureActionEnum, ServiceSpecUpdateConfigOrderEnum, TaskSpec,
    TaskSpecContainerSpec, TaskSpecContainerSpecConfigs, TaskSpecContainerSpecFile,
    TaskSpecContainerSpecFile1, TaskSpecContainerSpecSecrets, TaskSpecPlacement, TaskSpecResources,
    TaskSpecRestartPolicy, TaskSpecRestartPolicyConditionEnum,
};

use crate::desired::short_hash;
use crate::model::{
    FileRef, Mode, MountWant, NO_HEALTHCHECK, ResourcesWant, SPEC_HASH_ENV, ServiceWant,
    UPDATE_MONITOR_SECS,
};

const SECOND_NS: i64 = 1_000_000_000;

fn hash_map(m: &BTreeMap<String, String>) -> HashMap<String, String> {
    m.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn tree(m: Option<&HashMap<String, String>>) -> BTreeMap<String, String> {
    m.map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

/// The tasks' environment, with the spec's hash when the service asks
/// for it.
fn env(want: &ServiceWant) -> Vec<String> {
    let mut env: Vec<String> = want.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if want.spec_hash {
        let fields = format!("{:?}", want.fields());
        env.push(format!("{SPEC_HASH_ENV}={}", short_hash(fields.as_bytes())));
    }
    env
}

/// The engine's spec for `want`; `ids` maps config and secret names to
/// their IDs (the API references them by both).
pub(super) fn to_spec(want: &ServiceWant, ids: &HashMap<String, String>) -> ServiceSpec {
    ServiceSpec {
        name: Some(want.name.clone()),
        labels: Some(hash_map(&want.labels)),
        task_template: Some(task(want, ids)),
        mode: Some(mode(want.mode)),
        update_config: Some(ServiceSpecUpdateConfig {
            parallelism: Some(1),
            delay: Some(want.update_delay_secs as i64 * SECOND_NS),
            failure_action: Some(ServiceSpecUpdateConfigFailureActionEnum::ROLLBACK),
            monitor: Some(UPDATE_MONITOR_SECS as i64 * SECOND_NS),
            max_failure_ratio: Some(0.0),
            order: Some(if want.start_first {
                ServiceSpecUpdateConfigOrderEnum::START_FIRST
            } else {
                ServiceSpecUpdateConfigOrderEnum::STOP_FIRST
            }),
        }),
        rollback_config: Some(ServiceSpecRollbackConfig {
            parallelism: Some(0),
            failure_action: Some(ServiceSpecRollbackConfigFailureActionEnum::PAUSE),
            monitor: Some(UPDATE_MONITOR_SECS as i64 * SECOND_NS),
            ..Default::default()
        }),
        endpoint_spec: Some(endpoint(want)),
        ..Default::default()
    }
}

/// The task template: container, resources, restarts, placement, networks.
fn task(want: &ServiceWant, ids: &HashMap<String, String>) -> TaskSpec {
    let id = |name: &str| ids.get(name).cloned();
    let file = |target: &str| TaskSpecContainerSpecFile {
        name: Some(target.to_owned()),
        uid: Some("0".to_owned()),
        gid: Some("0".to_owned()),
        mode: Some(0o444),
    };
    let secrets = want
        .secrets
        .iter()
        .map(|s| TaskSpecContainerSpecSecrets {
            file: Some(file(&s.target)),
            secret_id: id(&s.name),
            secret_name: Some(s.name.clone()),
        })
        .collect();
    let configs = want
        .configs
        .iter()
        .map(|c| TaskSpecContainerSpecConfigs {
            file: Some(TaskSpecContainerSpecFile1 {
                name: Some(c.target.clone()),
                uid: Some("0".to_owned()),
                gid: Some("0".to_owned()),
                mode: Some(0o444),
            }),
            config_id: id(&c.name),
            config_name: Some(c.name.clone()),
            ..Default::default()
        })
        .collect();
    TaskSpec {
        container_spec: Some(TaskSpecContainerSpec {
            image: Some(want.image.clone()),
            command: (!want.command.is_empty()).then(|| want.command.clone()),
            args: (!want.args.is_empty()).then(|| want.args.clone()),
            env: Some(env(want)),
            user: (!want.user.is_empty()).then(|| want.user.clone()),
            mounts: Some(want.mounts.iter().map(mount).collect()),
            secrets: Some(secrets),
            configs: Some(configs),
            stop_grace_period: Some(want.stop_grace_secs as i64 * SECOND_NS),
            capability_add: (!want.capabilities.is_empty()).then(|| want.capabilities.clone()),
            health_check: (!want.healthcheck.is_empty()).then(|| HealthConfig {
                test: Some(if want.healthcheck == [NO_HEALTHCHECK] {
                    want.healthcheck.clone()
                } else {
                    std::iter::once("CMD".to_owned())
                        .chain(want.healthcheck.iter().cloned())
                        .collect()
                }),
                interval: Some(5 * SECOND_NS),
                timeout: Some(3 * SECOND_NS),
                retries: Some(3),
                start_period: Some(2 * SECOND_NS),
                start_interval: None,
            }),
            ..Default::default()
        }),
        resources: Some(resources(want.resources)),
        restart_policy: Some(TaskSpecRestartPolicy {
            condition: Some(TaskSpecRestartPolicyConditionEnum::ANY),
            delay: Some(2 * SECOND_NS),
            max_attempts: Some(0),
            ..Default::default()
        }),
        placement: Some(TaskSpecPlacement {
            constraints: Some(want.constraints.clone()),
            max_replicas: (want.max_per_node > 0).then_some(want.max_per_node as i64),
            ..Default::default()
        }),
        networks: Some(
            want.networks
                .iter()
                .map(|n| NetworkAttachmentConfig {
                    target: Some(n.clone()),
                    ..Default::default()
                })
                .collect(),
        ),
        ..Default::default()
    }
}

fn mount(m: &MountWant) -> Mount {
    Mount {
        target: Some(m.target.clone()),
        source: Some(m.source.clone()),
        typ: Some(if m.bind {
            MountType::BIND
        } else {
            MountType::VOLUME
        }),
        read_only: Some(m.read_only),
        volume_options: (!m.bind).then(|| MountVolumeOptions {
            labels: Some(hash_map(&m.labels)),
            driver_config: (!m.driver_opts.is_empty()).then(|| MountVolumeOptionsDriverConfig {
                name: Some("local".to_owned()),
                options: Some(hash_map(&m.driver_opts)),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn resources(r: ResourcesWant) -> TaskSpecResources {
    TaskSpecResources {
        limits: Some(Limit {
            nano_cpus: r.cpu_limit,
            memory_bytes: r.memory_limit,
            ..Default::default()
        }),
        reservations: Some(ResourceObject {
            nano_cpus: r.cpu_reservation,
            memory_bytes: r.memory_reservation,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn mode(mode: Mode) -> ServiceSpecMode {
    match mode {
        Mode::Global => ServiceSpecMode {
            global: Some(HashMap::new()),
            ..Default::default()
        },
        Mode::Replicated(n) => ServiceSpecMode {
            replicated: Some(ServiceSpecModeReplicated {
                replicas: Some(n as i64),
            }),
            ..Default::default()
        },
    }
}

/// Task addresses (`dnsrr`) or a virtual IP; ports published on each
/// node (host mode: the ingress mesh needs IPVS).
fn endpoint(want: &ServiceWant) -> EndpointSpec {
    EndpointSpec {
        mode: Some(if want.dnsrr {
            EndpointSpecModeEnum::DNSRR
        } else {
            EndpointSpecModeEnum::VIP
        }),
        ports: Some(
            want.ports
                .iter()
                .map(|&(published, target)| EndpointPortConfig {
                    protocol: Some(EndpointPortConfigProtocolEnum::TCP),
                    target_port: Some(i64::from(target)),
                    published_port: Some(i64::from(published)),
                    publish_mode: Some(EndpointPortConfigPublishModeEnum::HOST),
                    ..Default::default()
                })
                .collect(),
        ),
    }
}

/// The service the engine runs, in the form `to_spec` took; `networks`
/// maps network IDs to names (the engine stores IDs).
///
/// The spec's hash variable ([`SPEC_HASH_ENV`]) is taken out of the
/// environment: it follows from the other fields.
pub(super) fn from_spec(spec: &ServiceSpec, networks: &HashMap<String, String>) -> ServiceWant {
    let task = spec.task_template.clone().unwrap_or_default();
    let c = task.container_spec.clone().unwrap_or_default();
    let file_ref = |name: Option<String>, target: Option<String>| FileRef {
        name: name.unwrap_or_default(),
        target: target.unwrap_or_default(),
    };
    let mut env: BTreeMap<String, String> = c
        .env
        .unwrap_or_default()
        .into_iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (kv, String::new()),
        })
        .collect();
    let spec_hash = env.remove(SPEC_HASH_ENV).is_some();
    let mounts = c
        .mounts
        .unwrap_or_default()
        .into_iter()
        .map(mount_want)
        .collect();
    let resources = task.resources.unwrap_or_default();
    let (limits, reservations) = (
        resources.limits.unwrap_or_default(),
        resources.reservations.unwrap_or_default(),
    );
    let placement = task.placement.unwrap_or_default();
    let endpoint = spec.endpoint_spec.clone().unwrap_or_default();
    let update = spec.update_config.clone().unwrap_or_default();
    let nets = task
        .networks
        .or_else(|| spec.networks.clone())
        .unwrap_or_default();
    ServiceWant {
        name: spec.name.clone().unwrap_or_default(),
        image: c.image.unwrap_or_default(),
        command: c.command.unwrap_or_default(),
        args: c.args.unwrap_or_default(),
        env,
        labels: tree(spec.labels.as_ref()),
        user: c.user.unwrap_or_default(),
        mode: mode_of(spec.mode.as_ref()),
        constraints: placement.constraints.unwrap_or_default(),
        max_per_node: placement.max_replicas.unwrap_or(0).max(0) as u64,
        mounts,
        secrets: c
            .secrets
            .unwrap_or_default()
            .into_iter()
            .map(|s| file_ref(s.secret_name, s.file.and_then(|f| f.name)))
            .collect(),
        configs: c
            .configs
            .unwrap_or_default()
            .into_iter()
            .map(|s| file_ref(s.config_name, s.file.and_then(|f| f.name)))
            .collect(),
        ports: endpoint
            .ports
            .unwrap_or_default()
            .into_iter()
            .map(|p| {
                let port = |n: Option<i64>| u16::try_from(n.unwrap_or(0)).unwrap_or(0);
                (port(p.published_port), port(p.target_port))
            })
            .collect(),
        dnsrr: endpoint.mode == Some(EndpointSpecModeEnum::DNSRR),
        networks: nets
            .into_iter()
            .filter_map(|n| n.target)
            .map(|t| networks.get(&t).cloned().unwrap_or(t))
            .collect(),
        resources: ResourcesWant {
            cpu_limit: limits.nano_cpus.filter(|&n| n > 0),
            memory_limit: limits.memory_bytes.filter(|&n| n > 0),
            cpu_reservation: reservations.nano_cpus.filter(|&n| n > 0),
            memory_reservation: reservations.memory_bytes.filter(|&n| n > 0),
        },
        start_first: update.order == Some(ServiceSpecUpdateConfigOrderEnum::START_FIRST),
        spec_hash,
        update_delay_secs: (update.delay.unwrap_or(0) / SECOND_NS).max(0) as u64,
        stop_grace_secs: (c.stop_grace_period.unwrap_or(10 * SECOND_NS) / SECOND_NS).max(0) as u64,
        capabilities: c.capability_add.unwrap_or_default(),
        // Not readable (see `ServiceWant::healthcheck`).
        healthcheck: vec![],
    }
}

fn mount_want(m: Mount) -> MountWant {
    let vo = m.volume_options.unwrap_or_default();
    MountWant {
        bind: m.typ == Some(MountType::BIND),
        source: m.source.unwrap_or_default(),
        target: m.target.unwrap_or_default(),
        read_only: m.read_only.unwrap_or(false),
        driver_opts: tree(vo.driver_config.and_then(|d| d.options).as_ref()),
        labels: tree(vo.labels.as_ref()),
    }
}

fn mode_of(mode: Option<&ServiceSpecMode>) -> Mode {
    match mode {
        Some(m) if m.global.is_some() => Mode::Global,
        Some(m) => Mode::Replicated(
            m.replicated
                .as_ref()
                .and_then(|r| r.replicas)
                .unwrap_or(1)
                .max(0) as u64,
        ),
        None => Mode::Replicated(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_reads_back_as_it_was_written() {
        let want = ServiceWant {
            name: "jhub-hub".into(),
            image: "local/hub:1".into(),
            command: vec!["run".into()],
            args: vec!["--x".into()],
            env: [("A".into(), "b=c".into())].into(),
            labels: [("hubgate.deploy".into(), "jhub".into())].into(),
            user: "10001:0".into(),
            mode: Mode::Global,
            constraints: vec!["node.role==manager".into()],
            max_per_node: 1,
            mounts: vec![MountWant {
                bind: false,
                source: "v".into(),
                target: "/data".into(),
                read_only: true,
                driver_opts: [("type".into(), "nfs".into())].into(),
                labels: [("l".into(), "1".into())].into(),
            }],
            secrets: vec![FileRef {
                name: "s".into(),
                target: "/run/secrets/s".into(),
            }],
            configs: vec![],
            ports: vec![(80, 8000)],
            dnsrr: true,
            networks: vec!["net".into()],
            resources: ResourcesWant {
                cpu_limit: Some(500_000_000),
                ..Default::default()
            },
            start_first: false,
            spec_hash: true,
            update_delay_secs: 5,
            stop_grace_secs: 3,
            capabilities: vec![],
            healthcheck: vec![],
        };
        let ids = [("s".to_owned(), "id-s".to_owned())].into();
        let spec = to_spec(&want, &ids);
        let secret = &spec
            .task_template
            .as_ref()
            .unwrap()
            .container_spec
            .as_ref()
            .unwrap()
            .secrets;
        assert_eq!(
            secret.as_ref().unwrap()[0].secret_id.as_deref(),
            Some("id-s")
        );
        // The engine stores the network's ID in place of its name.
        let mut stored = spec.clone();
        stored
            .task_template
            .as_mut()
            .unwrap()
            .networks
            .as_mut()
            .unwrap()[0]
            .target = Some("n-id".into());
        let back = from_spec(&stored, &[("n-id".to_owned(), "net".to_owned())].into());
        assert_eq!(back, want);
    }
}
