//! The checks serde cannot make, each naming its field; and the line a
//! field sits on, for the message.

use toml::de::{DeTable, DeValue};

use super::common::Resources;
use super::fields::{Auth, AuthKind, DataMount, DeployFile, Profile};
use super::hub::Cull;

pub(super) type Failure = (String, String);

pub(super) fn fail<T>(field: &str, message: impl Into<String>) -> Result<T, Failure> {
    Err((field.to_owned(), message.into()))
}

/// Checks a parsed file; the first problem as (field path, message).
pub(super) fn check(f: &DeployFile) -> Result<(), Failure> {
    object_name("name", &f.name)?;
    if f.hosts.is_empty() {
        return fail("hosts", "name at least one public host name");
    }
    for h in &f.hosts {
        host_name("hosts", h)?;
    }
    image("hub.image", &f.hub.image)?;
    image("singleuser.image", &f.singleuser.image)?;
    image("proxy.image", &f.proxy.image)?;
    resources("hub.resources", &f.hub.resources)?;
    resources("singleuser.resources", &f.singleuser.resources)?;
    if let Some(node) = &f.hub.node {
        host_name("hub.node", node)?;
    }
    if let Some(db) = &f.hub.database {
        database_url("hub.database.url", &db.url)?;
    }
    hub_limits(f)?;
    absolute("singleuser.notebook_dir", &f.singleuser.notebook_dir)?;
    if f.singleuser.cmd.first().is_none_or(String::is_empty) {
        return fail("singleuser.cmd", "name the server's command");
    }
    constraints("singleuser.constraints", &f.singleuser.constraints)?;
    data_mounts("singleuser.mounts", &f.singleuser.mounts, &[])?;
    profiles(&f.singleuser.profiles)?;
    for (i, p) in f.singleuser.profiles.iter().enumerate() {
        let field = format!("singleuser.profiles[{i}].mounts");
        data_mounts(&field, &p.mounts, &f.singleuser.mounts)?;
    }
    object_name("network.name", &f.network.name)?;
    if let Some(subnet) = &f.network.subnet {
        cidr("network.subnet", subnet)?;
    }
    match (&f.storage.nfs, &f.storage.local) {
        (Some(_), Some(_)) | (None, None) => {
            return fail(
                "storage",
                "give exactly one of storage.nfs and storage.local",
            );
        }
        (Some(nfs), None) => {
            if nfs.server.is_empty() || nfs.server.contains([',', ' ', '/', '=']) {
                return fail(
                    "storage.nfs.server",
                    format!("{:?} is not an address or host name", nfs.server),
                );
            }
            absolute("storage.nfs.export", &nfs.export)?;
            if nfs
                .options
                .split(',')
                .any(|o| o.trim().starts_with("addr="))
            {
                return fail(
                    "storage.nfs.options",
                    "leave addr= out: it comes from storage.nfs.server",
                );
            }
        }
        (None, Some(dir)) => absolute("storage.local", dir)?,
    }
    auth(f)?;
    port("proxy.http_port", f.proxy.http_port)?;
    if f.tls.is_some() {
        port("proxy.https_port", f.proxy.https_port)?;
    }
    if f.proxy.http_port == f.proxy.https_port {
        return fail("proxy.https_port", "must differ from proxy.http_port");
    }
    if let Some(tls) = &f.tls {
        match (&tls.acme_email, &tls.cert_file, &tls.key_file) {
            (Some(email), None, None) => {
                if !email.contains('@') {
                    return fail(
                        "tls.acme_email",
                        format!("{email:?} is not an e-mail address"),
                    );
                }
            }
            (None, Some(_), Some(_)) => {}
            _ => {
                return fail(
                    "tls",
                    "give either acme_email (certificates from ACME) or both cert_file and key_file",
                );
            }
        }
        if !matches!(tls.challenge.as_str(), "http-01" | "tls-alpn-01") {
            return fail(
                "tls.challenge",
                format!("{:?}: http-01 or tls-alpn-01", tls.challenge),
            );
        }
    }
    Ok(())
}

fn constraints(field: &str, list: &[String]) -> Result<(), Failure> {
    for c in list {
        if !(c.contains("==") || c.contains("!=")) {
            return fail(
                field,
                format!("{c:?} is not a placement constraint like node.role==worker"),
            );
        }
    }
    Ok(())
}

/// Each mount: an absolute target no other mount of the server has (those
/// of `also` mount beside them), and one source.
fn data_mounts(field: &str, list: &[DataMount], also: &[DataMount]) -> Result<(), Failure> {
    for (i, m) in list.iter().enumerate() {
        let at = |key: &str| format!("{field}[{i}].{key}");
        absolute(&at("target"), &m.target)?;
        let earlier = also.iter().chain(&list[..i]);
        if earlier.clone().any(|o| o.target == m.target) {
            return fail(&at("target"), format!("{} is mounted twice", m.target));
        }
        match (&m.path, &m.nfs) {
            (Some(path), None) => {
                let plain = !path.is_empty()
                    && !path.starts_with('/')
                    && path
                        .split('/')
                        .all(|s| !s.is_empty() && s != "." && s != "..");
                if !plain {
                    return fail(
                        &at("path"),
                        format!("{path:?}: a directory of the storage, like datasets/gis"),
                    );
                }
            }
            (None, Some(nfs)) => absolute(&at("nfs.export"), &nfs.export)?,
            _ => {
                return fail(
                    &format!("{field}[{i}]"),
                    "give exactly one of path (on the storage) and nfs",
                );
            }
        }
    }
    Ok(())
}

fn profiles(list: &[Profile]) -> Result<(), Failure> {
    let field = "singleuser.profiles";
    if list.iter().filter(|p| p.default).count() > 1 {
        return fail(field, "more than one profile says default = true");
    }
    for (i, p) in list.iter().enumerate() {
        let at = |key: &str| format!("{field}[{i}].{key}");
        let slug = !p.name.is_empty()
            && p.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !slug {
            return fail(
                &at("name"),
                format!("{:?}: lower case letters, digits and -", p.name),
            );
        }
        if list[..i].iter().any(|q| q.name == p.name) {
            return fail(&at("name"), format!("{:?} names two profiles", p.name));
        }
        if p.display_name.trim().is_empty() {
            return fail(&at("display_name"), "give the name users see");
        }
        if let Some(img) = &p.image {
            image(&at("image"), img)?;
        }
        if let Some(r) = &p.resources {
            resources(&at("resources"), r)?;
        }
        constraints(&at("constraints"), &p.constraints)?;
        for (kind, n) in &p.generic_resources {
            let plain = !kind.is_empty()
                && kind
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
            if !plain || *n == 0 {
                return fail(
                    &at("generic_resources"),
                    format!(
                        "{kind:?} = {n}: a resource kind like NVIDIA-GPU and a count of 1 or more"
                    ),
                );
            }
        }
    }
    Ok(())
}

fn hub_limits(f: &DeployFile) -> Result<(), Failure> {
    let (cull, limits) = (&f.hub.cull, &f.hub.limits);
    if f.hub.idle_timeout.is_none() && *cull != Cull::default() {
        return fail(
            "hub.cull",
            "the culler runs only with hub.idle_timeout: set it too",
        );
    }
    if cull.every.is_some_and(|d| d.0 == 0) {
        return fail("hub.cull.every", "at least 1 s");
    }
    if cull.concurrency == Some(0) {
        return fail("hub.cull.concurrency", "at least 1 (leave it out for 10)");
    }
    if cull.max_age.is_some_and(|d| d.0 == 0) {
        return fail("hub.cull.max_age", "at least 1 s (leave it out for none)");
    }
    for (field, value, none) in [
        (
            "hub.limits.concurrent_spawns",
            limits.concurrent_spawns,
            "JupyterHub's 100",
        ),
        (
            "hub.limits.active_servers",
            limits.active_servers,
            "no limit",
        ),
        (
            "hub.limits.named_servers",
            limits.named_servers,
            "no named servers",
        ),
    ] {
        if value == Some(0) {
            return fail(field, format!("at least 1 (leave it out for {none})"));
        }
    }
    Ok(())
}

fn auth(f: &DeployFile) -> Result<(), Failure> {
    let a = &f.auth;
    for (field, names) in [
        ("auth.allowed_users", &a.allowed_users),
        ("auth.admin_users", &a.admin_users),
        ("auth.allowed_organizations", &a.allowed_organizations),
    ] {
        if names.iter().any(|n| n.trim().is_empty()) {
            return fail(field, "an empty name");
        }
    }
    match a.kind {
        AuthKind::Dummy => {
            if a.client_id.is_some()
                || a.client_secret_file.is_some()
                || a.client_secret_secret.is_some()
            {
                return fail(
                    "auth.kind",
                    "client_id and client secrets need kind = \"github\"",
                );
            }
        }
        AuthKind::Github | AuthKind::Oauth => {
            if a.password_file.is_some() {
                return fail("auth.password_file", "only with kind = \"dummy\"");
            }
            if a.client_id.as_deref().is_none_or(str::is_empty) {
                return fail("auth.client_id", "OAuth needs the app's client_id");
            }
            match (&a.client_secret_file, &a.client_secret_secret) {
                (Some(_), None) | (None, Some(_)) => {}
                _ => {
                    return fail(
                        "auth.client_secret_file",
                        "give exactly one of client_secret_file and client_secret_secret",
                    );
                }
            }
            if a.kind == AuthKind::Oauth {
                return oauth(a);
            }
            if !a.allow_all && a.allowed_users.is_empty() && a.allowed_organizations.is_empty() {
                return fail(
                    "auth.allowed_users",
                    "nobody could log in: name allowed_users or allowed_organizations, or set allow_all = true",
                );
            }
        }
    }
    Ok(())
}

/// A generic OAuth provider: its URLs, and who may log in.
fn oauth(a: &Auth) -> Result<(), Failure> {
    if !a.allowed_organizations.is_empty() {
        return fail("auth.allowed_organizations", "only with kind = \"github\"");
    }
    let provider = a.oauth_provider()?;
    for (field, url) in [
        ("auth.authorize_url", &provider.authorize_url),
        ("auth.token_url", &provider.token_url),
        ("auth.userdata_url", &provider.userdata_url),
    ] {
        let rest = url.strip_prefix("https://").or(url.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
            return fail(field, format!("{url:?} is not an http(s) URL"));
        }
    }
    let groups = !a.allowed_groups.is_empty() || !a.admin_groups.is_empty();
    if groups && provider.groups_claim.is_none() {
        return fail(
            "auth.groups_claim",
            "allowed_groups and admin_groups need the claim that lists a user's groups",
        );
    }
    if !a.allow_all && a.allowed_users.is_empty() && a.allowed_groups.is_empty() {
        return fail(
            "auth.allowed_users",
            "nobody could log in: name allowed_users or allowed_groups, or set allow_all = true",
        );
    }
    Ok(())
}

/// The ports the swarm itself uses on every node (Docker's "open these
/// ports" list): a service publishing one cannot start, or breaks the node.
pub(super) const SWARM_PORTS: [(u16, &str); 3] = [
    (2377, "the swarm's cluster management"),
    (7946, "the swarm's node gossip"),
    (4789, "the swarm's overlay traffic (VXLAN)"),
];

fn port(field: &str, port: u16) -> Result<(), Failure> {
    match SWARM_PORTS.iter().find(|(p, _)| *p == port) {
        Some((_, what)) => fail(
            field,
            format!("{port} is {what} port on every node: choose another"),
        ),
        None => Ok(()),
    }
}

/// A PostgreSQL URL both JupyterHub (SQLAlchemy) and the lease (libpq)
/// read, naming a server the hub's container reaches, without a password.
fn database_url(field: &str, url: &str) -> Result<(), Failure> {
    let Some(rest) = url.strip_prefix("postgresql://") else {
        return fail(
            field,
            "a postgresql://USER@HOST/DB URL (leave hub.database out for sqlite on the storage)",
        );
    };
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (user, host) = authority.rsplit_once('@').unwrap_or(("", authority));
    if user.contains(':') {
        return fail(
            field,
            "the URL holds a password: put it in hub.database.password_file",
        );
    }
    let host = host.split(':').next().unwrap_or_default();
    if host.is_empty() {
        return fail(field, "name the database server's host");
    }
    if host == "localhost" || host.starts_with("127.") {
        return fail(
            field,
            format!("{host} is the hub's own container: name the database server's address"),
        );
    }
    if path.split('?').next().unwrap_or_default().is_empty() {
        return fail(field, "name the database (postgresql://USER@HOST/DB)");
    }
    Ok(())
}

pub(super) fn object_name(field: &str, name: &str) -> Result<(), Failure> {
    let ok = !name.is_empty()
        && name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if ok {
        Ok(())
    } else {
        fail(
            field,
            format!("{name:?}: lower-case letters, digits, - and _, at most 40"),
        )
    }
}

fn host_name(field: &str, host: &str) -> Result<(), Failure> {
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if host.len() <= 253 && host.split('.').all(label_ok) {
        Ok(())
    } else {
        fail(
            field,
            format!("{host:?} is not a host name (no scheme, port or path)"),
        )
    }
}

pub(super) fn image(field: &str, image: &str) -> Result<(), Failure> {
    if image.is_empty() || image.contains(char::is_whitespace) {
        fail(field, format!("{image:?} is not an image reference"))
    } else {
        Ok(())
    }
}

fn absolute(field: &str, path: &str) -> Result<(), Failure> {
    if path.starts_with('/') && !path.split('/').any(|s| s == "..") {
        Ok(())
    } else {
        fail(field, format!("{path:?} must be an absolute path"))
    }
}

fn cidr(field: &str, s: &str) -> Result<(), Failure> {
    let ok = s.split_once('/').is_some_and(|(ip, bits)| {
        ip.parse::<std::net::Ipv4Addr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| b <= 32)
    });
    if ok {
        Ok(())
    } else {
        fail(
            field,
            format!("{s:?} is not an IPv4 subnet like 10.20.0.0/16"),
        )
    }
}

pub(super) fn resources(field: &str, r: &Resources) -> Result<(), Failure> {
    for (name, cpu) in [
        ("cpu_limit", r.cpu_limit),
        ("cpu_reservation", r.cpu_reservation),
    ] {
        if cpu.is_some_and(|c| !(c > 0.0 && c <= 1024.0)) {
            return fail(&format!("{field}.{name}"), "a number of cores above 0");
        }
    }
    if let (Some(limit), Some(res)) = (r.cpu_limit, r.cpu_reservation)
        && res > limit
    {
        return fail(&format!("{field}.cpu_reservation"), "above cpu_limit");
    }
    if let (Some(limit), Some(res)) = (r.memory_limit, r.memory_reservation)
        && res.0 > limit.0
    {
        return fail(&format!("{field}.memory_reservation"), "above memory_limit");
    }
    Ok(())
}

/// The 1-based line of byte `offset`.
pub(super) fn line_at(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The dotted path of the field whose value holds byte `offset` (the
/// innermost one), when the file parses as TOML.
pub(super) fn field_at(text: &str, offset: usize) -> Option<String> {
    fn search(table: &DeTable<'_>, offset: usize, path: &mut Vec<String>) -> bool {
        for (k, v) in table.iter() {
            path.push(k.get_ref().to_string());
            let inside = v.span().contains(&offset);
            let found = match v.get_ref() {
                DeValue::Table(t) => search(t, offset, path) || inside,
                DeValue::Array(items) => {
                    items.iter().any(|item| match item.get_ref() {
                        DeValue::Table(t) => search(t, offset, path),
                        _ => false,
                    }) || inside
                }
                _ => inside,
            };
            if found {
                return true;
            }
            path.pop();
        }
        false
    }
    let doc = DeTable::parse(text).ok()?;
    let mut path = vec![];
    search(doc.get_ref(), offset, &mut path).then(|| path.join("."))
}

/// The line a dotted field path is written on, when the file has it (else
/// the line of its nearest written parent).
pub(super) fn line_of(text: &str, path: &str) -> Option<usize> {
    let doc = DeTable::parse(text).ok()?;
    let mut table = doc.get_ref();
    let mut found = None;
    for part in path.split('.') {
        // `profiles[1]`: the second table of an array.
        let (key, index) = match part.split_once('[') {
            Some((key, rest)) => (key, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        let Some((k, v)) = table.iter().find(|(k, _)| k.get_ref().as_ref() == key) else {
            break;
        };
        found = Some(line_at(text, k.span().start));
        let v = match (v.get_ref(), index) {
            (DeValue::Array(items), Some(i)) => match items.get(i) {
                Some(item) => {
                    found = Some(line_at(text, item.span().start));
                    item.get_ref()
                }
                None => break,
            },
            (v, _) => v,
        };
        match v {
            DeValue::Table(t) => table = t,
            _ => break,
        }
    }
    found
}
