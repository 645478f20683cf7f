//! The `hubgate.` label schema on swarm services (`docs/labels.md`).
//!
//! Parsing is pure and total: every label under `hubgate.` is either
//! understood or reported, by name, as a [`LabelError`]; labels of other
//! tools are ignored. One bad label rejects the service's labels as a whole
//! (the source then keeps the service's last good routes), never another
//! service's.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::model::{Health, Lb, Scheme};

/// The prefix of every label hubgate reads.
pub const PREFIX: &str = "hubgate.";

/// A label hubgate could not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize)]
#[error("label {label}: {message}")]
pub struct LabelError {
    /// The full label name, e.g. `hubgate.routers.web.priority`.
    pub label: String,
    /// What is wrong with it.
    pub message: String,
}

/// What a service's labels ask for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ServiceLabels {
    /// `hubgate.enable`: `Some(true)` routes by labels, `Some(false)` opts
    /// out of everything (JupyterHub server detection included).
    pub enable: Option<bool>,
    /// `hubgate.port`: the port routers use unless they set their own.
    pub port: Option<u16>,
    /// `hubgate.scheme`.
    pub scheme: Scheme,
    /// `hubgate.network`: reach the tasks on this network.
    pub network: Option<String>,
    /// `hubgate.lb`.
    pub lb: Lb,
    /// `hubgate.sticky.cookie`.
    pub sticky_cookie: Option<String>,
    /// `hubgate.health.path`, `.interval`, `.timeout`.
    pub health: Option<Health>,
    /// `hubgate.vip`: go through the service's virtual IP, not its tasks.
    pub vip: bool,
    /// The routers by name (`hubgate.routers.<name>.*`, and `default` for
    /// the shorthand `hubgate.host` / `hubgate.path` / ...).
    pub routers: BTreeMap<String, RouterLabels>,
}

/// One router: which requests go to the service.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RouterLabels {
    /// Host names (lower case) the request's `Host` must be one of; empty:
    /// any host.
    pub hosts: Vec<String>,
    /// Path prefix, `/` when unset.
    pub path: Option<String>,
    /// Higher wins among routers with the same host and path.
    pub priority: i64,
    /// Remove the matched prefix before forwarding.
    pub strip_prefix: bool,
    /// Target port for this router.
    pub port: Option<u16>,
    /// Names the certificate for this router must cover (default: the
    /// service's `hubgate.tls.domains`, else the router's hosts).
    pub tls_domains: Vec<String>,
}

/// Parses a service's labels. `Ok(None)`: no `hubgate.` label at all.
pub fn parse(labels: &HashMap<String, String>) -> Result<Option<ServiceLabels>, Vec<LabelError>> {
    let mut p = Parsing::default();
    let mut errors = Vec::new();
    let mut any = false;
    // Sorted, so errors come out in a stable order.
    let sorted: BTreeMap<&String, &String> = labels.iter().collect();
    for (label, value) in sorted {
        let Some(key) = label.strip_prefix(PREFIX) else {
            continue;
        };
        any = true;
        if let Err(message) = p.field(key, value.trim()) {
            errors.push(LabelError {
                label: label.clone(),
                message,
            });
        }
    }
    let out = p.finish(&mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(any.then_some(out))
}

/// The labels read so far, and the parts that combine only at the end.
#[derive(Default)]
struct Parsing {
    out: ServiceLabels,
    health_path: Option<String>,
    health_interval: Option<Duration>,
    health_timeout: Option<Duration>,
    service_tls: Vec<String>,
}

impl Parsing {
    /// One label, `key` without the prefix.
    fn field(&mut self, key: &str, value: &str) -> Result<(), String> {
        let out = &mut self.out;
        match key {
            "enable" => out.enable = Some(boolean(value)?),
            "port" => out.port = Some(port(value)?),
            "scheme" => out.scheme = scheme(value)?,
            "network" => out.network = Some(non_empty(value)?.to_owned()),
            "lb" => out.lb = lb(value)?,
            "sticky.cookie" => out.sticky_cookie = Some(cookie_name(value)?),
            "health.path" => self.health_path = Some(path(value)?),
            "health.interval" => self.health_interval = Some(duration(value)?),
            "health.timeout" => self.health_timeout = Some(duration(value)?),
            "vip" => out.vip = boolean(value)?,
            "tls.domains" => self.service_tls = hosts(value)?,
            // `hubgate deploy`'s own labels (which deployment, which part).
            k if k == "deploy" || k.starts_with("deploy.") => {}
            _ => {
                let (router, field) = match key.strip_prefix("routers.") {
                    Some(rest) => {
                        let (name, field) = rest
                            .split_once('.')
                            .ok_or_else(|| "expected hubgate.routers.<name>.<field>".to_owned())?;
                        (router_name(name)?, field)
                    }
                    None => ("default".to_owned(), key),
                };
                router_field(out.routers.entry(router).or_default(), field, value)?;
            }
        }
        Ok(())
    }

    /// The health check and TLS names, which combine several labels.
    fn finish(self, errors: &mut Vec<LabelError>) -> ServiceLabels {
        let mut out = self.out;
        match (self.health_path, self.health_interval, self.health_timeout) {
            (Some(path), interval, timeout) => {
                out.health = Some(Health {
                    path,
                    interval: interval.unwrap_or(Duration::from_secs(10)),
                    timeout: timeout.unwrap_or(Duration::from_secs(2)),
                });
            }
            (None, Some(_), _) | (None, _, Some(_)) => errors.push(LabelError {
                label: format!("{PREFIX}health.path"),
                message: "missing: health.interval and health.timeout need a path".into(),
            }),
            (None, None, None) => {}
        }
        for r in out.routers.values_mut() {
            if r.tls_domains.is_empty() {
                r.tls_domains = if self.service_tls.is_empty() {
                    r.hosts.clone()
                } else {
                    self.service_tls.clone()
                };
            }
        }
        out
    }
}

fn router_field(r: &mut RouterLabels, field: &str, value: &str) -> Result<(), String> {
    match field {
        "host" => r.hosts = hosts(value)?,
        "path" => r.path = Some(path(value)?),
        "priority" => {
            r.priority = value
                .parse()
                .map_err(|_| format!("{value:?} is not an integer"))?;
        }
        "strip-prefix" => r.strip_prefix = boolean(value)?,
        "port" => r.port = Some(port(value)?),
        "tls.domains" => r.tls_domains = hosts(value)?,
        _ => return Err(format!("unknown field {field:?}")),
    }
    Ok(())
}

fn boolean(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(format!("{v:?} is not true or false")),
    }
}

fn port(v: &str) -> Result<u16, String> {
    match v.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("{v:?} is not a port (1-65535)")),
    }
}

fn scheme(v: &str) -> Result<Scheme, String> {
    match v.to_ascii_lowercase().as_str() {
        "http" => Ok(Scheme::Http),
        "https" => Ok(Scheme::Https),
        _ => Err(format!("{v:?} is not http or https")),
    }
}

fn lb(v: &str) -> Result<Lb, String> {
    match v.to_ascii_lowercase().replace('-', "_").as_str() {
        "round_robin" | "rr" => Ok(Lb::RoundRobin),
        "least_conn" | "least_connections" => Ok(Lb::LeastConnections),
        _ => Err(format!("{v:?} is not round_robin or least_conn")),
    }
}

fn non_empty(v: &str) -> Result<&str, String> {
    if v.is_empty() {
        Err("empty".into())
    } else {
        Ok(v)
    }
}

fn path(v: &str) -> Result<String, String> {
    if !v.starts_with('/') {
        return Err(format!("{v:?} does not start with /"));
    }
    if v.bytes()
        .any(|b| b.is_ascii_control() || b == b' ' || b == b'?' || b == b'#')
    {
        return Err(format!("{v:?} holds a space, control character, ? or #"));
    }
    if v.split('/').any(|s| s == ".." || s == ".") {
        return Err(format!("{v:?} holds a dot-segment"));
    }
    Ok(v.to_owned())
}

/// Comma-separated host names, lower-cased.
fn hosts(v: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = v
        .split(',')
        .map(|h| h.trim().to_ascii_lowercase())
        .filter(|h| !h.is_empty())
        .collect();
    if list.is_empty() {
        return Err("no host name".into());
    }
    for h in &list {
        let ok = h.len() <= 253
            && h.split('.').all(|part| {
                !part.is_empty()
                    && part.len() <= 63
                    && !part.starts_with('-')
                    && !part.ends_with('-')
                    && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !ok {
            return Err(format!("{h:?} is not a host name"));
        }
    }
    Ok(list)
}

fn router_name(v: &str) -> Result<String, String> {
    if !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        Ok(v.to_owned())
    } else {
        Err(format!(
            "{v:?} is not a router name (letters, digits, - and _)"
        ))
    }
}

/// RFC 6265 token characters.
fn cookie_name(v: &str) -> Result<String, String> {
    let ok = !v.is_empty()
        && v.bytes()
            .all(|b| b.is_ascii_graphic() && !b"()<>@,;:\\\"/[]?={}".contains(&b));
    if ok {
        Ok(v.to_owned())
    } else {
        Err(format!("{v:?} is not a cookie name"))
    }
}

/// `500ms`, `10s`, `2m`, or plain seconds.
pub(crate) fn duration(v: &str) -> Result<Duration, String> {
    let bad = || format!("{v:?} is not a duration such as 500ms, 10s or 2m");
    let (num, unit) = match v.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: u64 = num.parse().map_err(|_| bad())?;
    let d = match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n.checked_mul(60).ok_or_else(bad)?),
        _ => return Err(bad()),
    };
    if d.is_zero() {
        return Err(bad());
    }
    Ok(d)
}

/// The `labels` fuzz target (`fuzz/`): one `key=value` label per line of
/// `data`. The parser must never panic, and what it answers it answers
/// again. Compiled under `--cfg fuzzing` and in tests (corpus replay).
#[cfg(any(fuzzing, test))]
pub fn fuzz(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let labels: HashMap<String, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let first = format!("{:?}", parse(&labels));
    assert_eq!(first, format!("{:?}", parse(&labels)), "{labels:?}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn no_hubgate_labels_is_none() {
        assert_eq!(parse(&labels(&[("com.docker.stack", "x")])), Ok(None));
    }

    #[test]
    fn the_deploy_companions_labels_are_left_alone() {
        let only = parse(&labels(&[
            ("hubgate.deploy", "jhub"),
            ("hubgate.deploy.role", "hubgate"),
        ]));
        assert!(
            only.as_ref()
                .is_ok_and(|l| l.as_ref().is_none_or(|l| l.routers.is_empty())),
            "{only:?}"
        );
        let hub = parse(&labels(&[
            ("hubgate.deploy", "jhub"),
            ("hubgate.deploy.role", "hub"),
            ("hubgate.enable", "true"),
            ("hubgate.port", "8081"),
            ("hubgate.path", "/"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(hub.routers.len(), 1);
    }

    #[test]
    fn parses_the_full_schema() {
        let l = parse(&labels(&[
            ("hubgate.enable", "true"),
            ("hubgate.port", "3000"),
            ("hubgate.lb", "least_conn"),
            ("hubgate.sticky.cookie", "hg_sticky"),
            ("hubgate.health.path", "/healthz"),
            ("hubgate.health.interval", "5s"),
            ("hubgate.network", "jhub"),
            ("hubgate.tls.domains", "Grafana.example.org"),
            (
                "hubgate.routers.web.host",
                "grafana.example.org, www.grafana.example.org",
            ),
            ("hubgate.routers.web.priority", "10"),
            ("hubgate.routers.api.path", "/grafana/api"),
            ("hubgate.routers.api.strip-prefix", "true"),
            ("hubgate.routers.api.port", "3001"),
            ("traefik.enable", "true"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(l.enable, Some(true));
        assert_eq!(l.port, Some(3000));
        assert_eq!(l.lb, Lb::LeastConnections);
        assert_eq!(l.sticky_cookie.as_deref(), Some("hg_sticky"));
        let h = l.health.unwrap();
        assert_eq!(
            (h.path.as_str(), h.interval),
            ("/healthz", Duration::from_secs(5))
        );
        assert_eq!(l.network.as_deref(), Some("jhub"));
        let web = &l.routers["web"];
        assert_eq!(
            web.hosts,
            ["grafana.example.org", "www.grafana.example.org"]
        );
        assert_eq!(web.priority, 10);
        assert_eq!(web.tls_domains, ["grafana.example.org"]);
        let api = &l.routers["api"];
        assert_eq!(api.path.as_deref(), Some("/grafana/api"));
        assert!(api.strip_prefix);
        assert_eq!(api.port, Some(3001));
        assert_eq!(
            api.tls_domains,
            ["grafana.example.org"],
            "the service's names"
        );
    }

    #[test]
    fn tls_domains_default_to_the_router_hosts() {
        let l = parse(&labels(&[("hubgate.host", "a.example.org")]))
            .unwrap()
            .unwrap();
        assert_eq!(l.routers["default"].tls_domains, ["a.example.org"]);
    }

    #[test]
    fn shorthand_labels_make_the_default_router() {
        let l = parse(&labels(&[
            ("hubgate.enable", "1"),
            ("hubgate.port", "80"),
            ("hubgate.path", "/svc"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(l.routers["default"].path.as_deref(), Some("/svc"));
    }

    #[test]
    fn every_bad_label_is_named() {
        let errors = parse(&labels(&[
            ("hubgate.enable", "maybe"),
            ("hubgate.port", "70000"),
            ("hubgate.routers.web.priority", "high"),
            ("hubgate.routers.web.host", "bad host!"),
            ("hubgate.routers.we b.path", "/x"),
            ("hubgate.routers.web.colour", "red"),
            ("hubgate.path", "relative"),
            ("hubgate.health.interval", "0s"),
            ("hubgate.sticky.cookie", "a;b"),
        ]))
        .unwrap_err();
        let named: Vec<&str> = errors.iter().map(|e| e.label.as_str()).collect();
        assert_eq!(
            named,
            [
                "hubgate.enable",
                "hubgate.health.interval",
                "hubgate.path",
                "hubgate.port",
                "hubgate.routers.we b.path",
                "hubgate.routers.web.colour",
                "hubgate.routers.web.host",
                "hubgate.routers.web.priority",
                "hubgate.sticky.cookie",
            ]
        );
        assert!(errors[3].to_string().contains("70000"), "{}", errors[3]);
    }

    #[test]
    fn health_options_need_a_path() {
        let errors = parse(&labels(&[("hubgate.health.interval", "5s")])).unwrap_err();
        assert_eq!(errors[0].label, "hubgate.health.path");
    }

    #[test]
    fn durations() {
        assert_eq!(duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(duration("7"), Ok(Duration::from_secs(7)));
        assert!(duration("1h").is_err());
        assert!(duration("").is_err());
    }

    #[test]
    fn the_committed_fuzz_corpus_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/labels");
        let inputs: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert!(!inputs.is_empty(), "no corpus in {}", dir.display());
        for entry in inputs {
            fuzz(&std::fs::read(entry.unwrap().path()).unwrap());
        }
    }
}
