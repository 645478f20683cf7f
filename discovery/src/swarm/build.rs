//! From what the engine reports to a [`Snapshot`]: pure, so every rule
//! (labels, JupyterHub detection, network choice, last good labels) is
//! unit-tested without an engine.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};

use crate::labels::{self, RouterLabels, ServiceLabels};
use crate::model::{Lb, Problem, Route, Scheme, Snapshot};

/// A swarm service as discovery needs it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ObservedService {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) labels: HashMap<String, String>,
    /// The container spec's environment (`KEY=value`).
    pub(crate) env: Vec<String>,
    /// Networks in the task template, by ID or name as the spec has them.
    pub(crate) networks: Vec<String>,
    /// Virtual IPs by network ID.
    pub(crate) vips: Vec<(String, IpAddr)>,
}

/// A network hubgate is attached to, with the task addresses on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ObservedNetwork {
    pub(crate) id: String,
    pub(crate) name: String,
    /// Service name → addresses of its tasks with an endpoint on it.
    pub(crate) tasks: HashMap<String, Vec<IpAddr>>,
}

/// One task endpoint as a verbose network inspect lists it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TaskEndpoint {
    /// The task's ID (the last part of `<service>.<slot>.<id>`).
    pub(crate) task: String,
    pub(crate) ip: IpAddr,
}

/// Service name → its task endpoints on one network, as listed.
pub(crate) type Listed = HashMap<String, Vec<TaskEndpoint>>;

/// The network's addresses of tasks swarm still wants running. A killed
/// task's endpoint can stay listed for seconds after its replacement's
/// appears; dialing it then waits for the connect timeout. `live` holds the
/// running tasks of the services checked (others are taken as listed).
pub(crate) fn running_only(
    listed: &Listed,
    live: &HashMap<String, std::collections::HashSet<String>>,
) -> HashMap<String, Vec<IpAddr>> {
    listed
        .iter()
        .map(|(service, endpoints)| {
            let ips = endpoints
                .iter()
                .filter(|e| live.get(service).is_none_or(|l| l.contains(&e.task)))
                .map(|e| e.ip)
                .collect();
            (service.clone(), ips)
        })
        .collect()
}

/// The environment SwarmSpawner gives a single-user server.
const PREFIX_ENV: &str = "JUPYTERHUB_SERVICE_PREFIX";
const URL_ENV: &str = "JUPYTERHUB_SERVICE_URL";
/// jupyterhub-singleuser's port when the URL names none.
const SINGLEUSER_PORT: u16 = 8888;

/// Builds the layer. `last_good` keeps each service's last labels that
/// parsed (by service ID): a service whose labels turn bad keeps its routes.
pub(crate) fn build(
    services: &[ObservedService],
    networks: &[ObservedNetwork],
    last_good: &mut HashMap<String, ServiceLabels>,
) -> (Snapshot, Vec<Problem>) {
    let mut snapshot = Snapshot {
        services: known_services(services, networks),
        ..Snapshot::default()
    };
    let mut problems = Vec::new();
    last_good.retain(|id, _| services.iter().any(|s| &s.id == id));
    for s in services {
        let labels = current_labels(s, last_good, &mut problems);
        if labels.enable == Some(false) {
            continue;
        }
        let (routers, jupyter_port) = routers_of(s, &labels, &mut problems);
        if routers.is_empty() {
            continue;
        }
        let Some(addresses) = addresses_of(s, &labels, networks, &mut problems) else {
            continue;
        };
        let found = Found {
            service: s,
            labels: &labels,
            jupyter_port,
            addresses,
        };
        found.push_routes(routers, &mut snapshot, &mut problems);
    }
    snapshot
        .routes
        .sort_by(|a, b| (&a.service, &a.router).cmp(&(&b.service, &b.router)));
    (snapshot, problems)
}

/// A problem of service `s`.
fn problem(s: &ObservedService, label: Option<String>, message: String) -> Problem {
    Problem {
        service: Some(s.name.clone()),
        label,
        message,
    }
}

/// Every service on a network shared with hubgate, with its task
/// addresses there (sorted; none for a service with no task).
fn known_services(
    services: &[ObservedService],
    networks: &[ObservedNetwork],
) -> BTreeMap<String, Vec<IpAddr>> {
    let mut known: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for net in networks {
        for (service, addrs) in &net.tasks {
            let entry = known.entry(service.clone()).or_default();
            entry.extend(
                addrs
                    .iter()
                    .filter(|a| !entry.contains(a))
                    .collect::<Vec<_>>(),
            );
        }
    }
    // A service on a shared network with no task there is known, not
    // unknown: a target naming it answers 503 at once, never after a DNS
    // lookup of a name with no task (which the swarm forwards upstream).
    for s in services {
        let shared = networks
            .iter()
            .any(|n| s.networks.iter().any(|a| *a == n.id || *a == n.name));
        if shared {
            known.entry(s.name.clone()).or_default();
        }
    }
    for list in known.values_mut() {
        list.sort();
    }
    known
}

/// The service's labels: as they parse now, else (bad labels, each a
/// problem) the last that parsed, else none.
fn current_labels(
    s: &ObservedService,
    last_good: &mut HashMap<String, ServiceLabels>,
    problems: &mut Vec<Problem>,
) -> ServiceLabels {
    let labels = match labels::parse(&s.labels) {
        Ok(Some(l)) => {
            last_good.insert(s.id.clone(), l.clone());
            Some(l)
        }
        Ok(None) => {
            last_good.remove(&s.id);
            None
        }
        Err(errors) => {
            let kept = last_good.get(&s.id).cloned();
            let what = if kept.is_some() {
                "the service keeps its last good routes"
            } else {
                "the service gets no routes from its labels"
            };
            for e in errors {
                problems.push(problem(s, Some(e.label), format!("{}; {what}", e.message)));
            }
            kept
        }
    };
    labels.unwrap_or_default()
}

/// The service's routers: its labelled ones, and one for a JupyterHub
/// single-user server (with that server's port).
fn routers_of(
    s: &ObservedService,
    labels: &ServiceLabels,
    problems: &mut Vec<Problem>,
) -> (BTreeMap<String, RouterLabels>, Option<u16>) {
    let mut routers: BTreeMap<String, RouterLabels> = BTreeMap::new();
    let mut jupyter_port = None;
    if let Some(prefix) = env(&s.env, PREFIX_ENV) {
        jupyter_port = Some(
            env(&s.env, URL_ENV)
                .and_then(url_port)
                .unwrap_or(SINGLEUSER_PORT),
        );
        let router = RouterLabels {
            path: Some(prefix.to_owned()),
            ..RouterLabels::default()
        };
        routers.insert("jupyterhub".into(), router);
    }
    if labels.enable == Some(true) {
        if labels.routers.is_empty() {
            problems.push(problem(
                s,
                None,
                "hubgate.enable is set but no router: add hubgate.path or hubgate.host".into(),
            ));
        }
        routers.extend(labels.routers.clone());
    } else if !labels.routers.is_empty() {
        problems.push(problem(
            s,
            Some("hubgate.enable".into()),
            "routers are labelled but hubgate.enable=true is missing; they are ignored".into(),
        ));
    }
    (routers, jupyter_port)
}

/// Where the service's routes go: its task addresses (or virtual IP) on
/// the network it shares with hubgate; `None` (a problem) when it shares
/// none.
fn addresses_of(
    s: &ObservedService,
    labels: &ServiceLabels,
    networks: &[ObservedNetwork],
    problems: &mut Vec<Problem>,
) -> Option<Vec<IpAddr>> {
    let Some(net) = choose_network(s, labels, networks) else {
        let on: Vec<&str> = networks.iter().map(|n| n.name.as_str()).collect();
        let on = on.join(", ");
        let (label, message) = match &labels.network {
            Some(n) => (
                Some("hubgate.network".to_owned()),
                format!("hubgate.network {n:?} is not a network hubgate is on ({on})"),
            ),
            None => (None, format!("not on a network shared with hubgate ({on})")),
        };
        // Not routed: on a swarm shared by several deployments, another
        // hubgate may be the one that reaches it, and a route here would
        // claim its paths (a hub's `/` above all).
        let message = format!("{message}; unreachable from here, so not routed");
        problems.push(problem(s, label, message));
        return None;
    };
    if !labels.vip {
        let mut a = net.tasks.get(&s.name).cloned().unwrap_or_default();
        a.sort();
        return Some(a);
    }
    let vip: Vec<IpAddr> = s
        .vips
        .iter()
        .filter(|(id, _)| *id == net.id)
        .map(|(_, ip)| *ip)
        .collect();
    if vip.is_empty() {
        let message = format!(
            "no virtual IP on {} (endpoint mode dnsrr?); routes answer 503",
            net.name
        );
        problems.push(problem(s, Some("hubgate.vip".into()), message));
    }
    Some(vip)
}

/// One service's routing facts, once its labels and addresses are known.
struct Found<'a> {
    service: &'a ObservedService,
    labels: &'a ServiceLabels,
    /// The single-user server's port, for a detected JupyterHub server.
    jupyter_port: Option<u16>,
    addresses: Vec<IpAddr>,
}

impl Found<'_> {
    fn push_routes(
        &self,
        routers: BTreeMap<String, RouterLabels>,
        snapshot: &mut Snapshot,
        problems: &mut Vec<Problem>,
    ) {
        let (s, labels) = (self.service, self.labels);
        for (name, r) in routers {
            let detected = name == "jupyterhub" && self.jupyter_port.is_some();
            let port = r
                .port
                .or(labels.port)
                .or(if detected { self.jupyter_port } else { None });
            let Some(port) = port else {
                problems.push(Problem {
                    service: Some(s.name.clone()),
                    label: Some(format!("hubgate.routers.{name}.port")),
                    message: "no port: set hubgate.port (swarm does not say which port a service listens on)".into(),
                });
                continue;
            };
            snapshot.routes.push(Route {
                service: s.name.clone(),
                router: name,
                hosts: r.hosts,
                path: r.path.unwrap_or_else(|| "/".into()),
                priority: r.priority,
                scheme: if detected {
                    Scheme::Http
                } else {
                    labels.scheme
                },
                port,
                endpoints: self
                    .addresses
                    .iter()
                    .map(|ip| SocketAddr::new(*ip, port))
                    .collect(),
                strip_prefix: r.strip_prefix,
                sticky_cookie: labels.sticky_cookie.clone(),
                lb: if detected { Lb::RoundRobin } else { labels.lb },
                health: labels.health.clone(),
                tls_domains: r.tls_domains,
            });
        }
    }
}

/// The labelled network, else the first shared one the service has tasks
/// on, else the first shared one its spec names.
fn choose_network<'n>(
    s: &ObservedService,
    labels: &ServiceLabels,
    networks: &'n [ObservedNetwork],
) -> Option<&'n ObservedNetwork> {
    if let Some(wanted) = &labels.network {
        return networks
            .iter()
            .find(|n| &n.name == wanted || &n.id == wanted);
    }
    networks
        .iter()
        .find(|n| n.tasks.contains_key(&s.name))
        .or_else(|| {
            networks
                .iter()
                .find(|n| s.networks.iter().any(|t| *t == n.id || *t == n.name))
        })
}

fn env<'a>(env: &'a [String], key: &str) -> Option<&'a str> {
    env.iter()
        .find_map(|kv| kv.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
}

/// The port of `http://0.0.0.0:8888/user/alice/`.
fn url_port(url: &str) -> Option<u16> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split('/').next()?;
    authority.rsplit_once(':')?.1.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn service(name: &str, labels: &[(&str, &str)], env: &[&str]) -> ObservedService {
        ObservedService {
            id: format!("id-{name}"),
            name: name.into(),
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            env: env.iter().map(|e| e.to_string()).collect(),
            networks: vec!["net-id".into()],
            vips: vec![("net-id".into(), ip("10.0.1.2"))],
        }
    }

    fn network(tasks: &[(&str, &[&str])]) -> ObservedNetwork {
        ObservedNetwork {
            id: "net-id".into(),
            name: "jhub".into(),
            tasks: tasks
                .iter()
                .map(|(s, ips)| (s.to_string(), ips.iter().map(|i| ip(i)).collect()))
                .collect(),
        }
    }

    #[test]
    fn a_labelled_service_routes_to_its_tasks() {
        let s = service(
            "web",
            &[
                ("hubgate.enable", "true"),
                ("hubgate.port", "8080"),
                ("hubgate.path", "/web"),
            ],
            &[],
        );
        let net = network(&[("web", &["10.0.1.7", "10.0.1.5"])]);
        let (snap, problems) = build(&[s], &[net], &mut HashMap::new());
        assert!(problems.is_empty(), "{problems:?}");
        let r = &snap.routes[0];
        assert_eq!((r.path.as_str(), r.port), ("/web", 8080));
        assert_eq!(
            r.endpoint_urls(),
            ["http://10.0.1.5:8080", "http://10.0.1.7:8080"]
        );
        assert_eq!(r.display_target(), "http://web:8080");
        assert_eq!(snap.services["web"], [ip("10.0.1.5"), ip("10.0.1.7")]);
    }

    #[test]
    fn a_swarmspawner_server_is_routed_from_its_environment() {
        let s = service(
            "jupyter-alice",
            &[],
            &[
                "JUPYTERHUB_API_TOKEN=secret",
                "JUPYTERHUB_SERVICE_PREFIX=/user/alice/",
                "JUPYTERHUB_SERVICE_URL=http://0.0.0.0:8888/user/alice/",
            ],
        );
        let net = network(&[("jupyter-alice", &["10.0.1.9"])]);
        let (snap, problems) = build(&[s], &[net], &mut HashMap::new());
        assert!(problems.is_empty());
        let r = &snap.routes[0];
        assert_eq!(
            (r.router.as_str(), r.path.as_str()),
            ("jupyterhub", "/user/alice/")
        );
        assert_eq!(r.endpoint_urls(), ["http://10.0.1.9:8888"]);
        assert!(
            !format!("{snap:?}").contains("secret"),
            "the API token never leaves"
        );
    }

    #[test]
    fn a_service_with_no_task_is_known_with_no_address() {
        let stopped = service(
            "jupyter-carol",
            &[],
            &["JUPYTERHUB_SERVICE_PREFIX=/user/carol/"],
        );
        let mut elsewhere = service("other", &[], &[]);
        elsewhere.networks = vec!["another-net".into()];
        let (snap, _) = build(&[stopped, elsewhere], &[network(&[])], &mut HashMap::new());
        assert_eq!(snap.services.get("jupyter-carol"), Some(&vec![]));
        assert!(!snap.services.contains_key("other"));
    }

    #[test]
    fn opting_out_removes_even_a_detected_server() {
        let s = service(
            "jupyter-bob",
            &[("hubgate.enable", "false")],
            &["JUPYTERHUB_SERVICE_PREFIX=/user/bob/"],
        );
        let (snap, _) = build(&[s], &[network(&[])], &mut HashMap::new());
        assert!(snap.routes.is_empty());
    }

    #[test]
    fn bad_labels_keep_the_last_good_routes_and_are_reported() {
        let good = service(
            "web",
            &[
                ("hubgate.enable", "true"),
                ("hubgate.port", "80"),
                ("hubgate.path", "/web"),
            ],
            &[],
        );
        let other = service(
            "other",
            &[
                ("hubgate.enable", "true"),
                ("hubgate.port", "80"),
                ("hubgate.path", "/other"),
            ],
            &[],
        );
        let mut last_good = HashMap::new();
        let net = network(&[]);
        build(
            &[good.clone(), other.clone()],
            std::slice::from_ref(&net),
            &mut last_good,
        );
        let mut bad = good.clone();
        bad.labels.insert("hubgate.port".into(), "eighty".into());
        let (snap, problems) = build(
            &[bad.clone(), other.clone()],
            std::slice::from_ref(&net),
            &mut last_good,
        );
        assert_eq!(snap.routes.len(), 2, "both still routed");
        assert_eq!(problems[0].label.as_deref(), Some("hubgate.port"));
        assert!(problems[0].message.contains("last good"));
        // A service seen bad first gets nothing, and others are unaffected.
        let mut fresh = bad;
        fresh.id = "new-id".into();
        let (snap, problems) = build(&[fresh, other], &[net], &mut HashMap::new());
        assert_eq!(snap.routes.len(), 1);
        assert!(problems[0].message.contains("no routes"));
    }

    #[test]
    fn a_service_on_no_shared_network_is_reported_not_routed() {
        let mut s = service(
            "lost",
            &[
                ("hubgate.enable", "true"),
                ("hubgate.port", "80"),
                ("hubgate.path", "/lost"),
            ],
            &[],
        );
        s.networks = vec!["elsewhere".into()];
        let (snap, problems) = build(&[s], &[network(&[])], &mut HashMap::new());
        assert!(snap.routes.is_empty(), "its paths are not claimed here");
        assert!(
            problems[0].message.contains("not on a network shared")
                && problems[0].message.contains("not routed"),
            "{problems:?}"
        );
    }

    #[test]
    fn endpoints_of_tasks_no_longer_running_are_dropped() {
        let e = |task: &str, addr: &str| TaskEndpoint {
            task: task.into(),
            ip: ip(addr),
        };
        let listed: Listed = [
            (
                "web".to_owned(),
                vec![e("old", "10.0.1.5"), e("new", "10.0.1.6")],
            ),
            ("unchecked".to_owned(), vec![e("t", "10.0.1.7")]),
        ]
        .into();
        let live = [("web".to_owned(), ["new".to_owned()].into())].into();
        let running = running_only(&listed, &live);
        assert_eq!(running["web"], [ip("10.0.1.6")]);
        assert_eq!(running["unchecked"], [ip("10.0.1.7")]);
    }

    #[test]
    fn vip_only_when_asked() {
        let s = service(
            "v",
            &[
                ("hubgate.enable", "true"),
                ("hubgate.port", "80"),
                ("hubgate.path", "/v"),
                ("hubgate.vip", "true"),
            ],
            &[],
        );
        let (snap, _) = build(
            &[s],
            &[network(&[("v", &["10.0.1.3"])])],
            &mut HashMap::new(),
        );
        assert_eq!(snap.routes[0].endpoint_urls(), ["http://10.0.1.2:80"]);
    }

    #[test]
    fn missing_port_and_enable_are_reported() {
        let no_port = service(
            "a",
            &[("hubgate.enable", "true"), ("hubgate.path", "/a")],
            &[],
        );
        let no_enable = service("b", &[("hubgate.port", "1"), ("hubgate.path", "/b")], &[]);
        let (snap, problems) = build(&[no_port, no_enable], &[network(&[])], &mut HashMap::new());
        assert!(snap.routes.is_empty());
        let labels: Vec<_> = problems
            .iter()
            .map(|p| p.label.clone().unwrap_or_default())
            .collect();
        assert_eq!(labels, ["hubgate.routers.default.port", "hubgate.enable"]);
    }
}
