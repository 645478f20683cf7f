//! The hub's configuration: hubgate's JupyterHub module (`hubgate_hub.py`,
//! static Python that imports and lints on its own: the proxy and spawner
//! classes, the hooks, `configure`) and the generated
//! `jupyterhub_config.py`, which holds the deployment's values only,
//! serialised from [`HubValues`], and hands them to `configure`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::extras::ExtrasPart;
use super::layout::{
    API_PORT, COOKIE_SECRET_PATH, CRYPT_KEY_PATH, HUB_MODULE_DIR, HUB_PORT, HUB_STATE_DIR,
    OAUTH_SECRET_PATH, PASSWORD_PATH, PROXY_TOKEN_PATH, SERVER_PREFIX, SERVER_TOKEN_FILE,
    SINGLEUSER_CONFIG_DIR, STORAGE_DIR, names,
};
use super::profiles::{DataVolume, server_kinds};
use super::python;
use crate::DeployError;
use crate::file::{AuthKind, DeployFile, Resources};
use crate::model::{DEPLOY_LABEL, ROLE_LABEL, Role, SERVER_LABEL, SPAWNED_LABEL, STORAGE_LABEL};

/// hubgate's JupyterHub module, mounted at [`HUB_MODULE_DIR`].
pub(super) const HUB_MODULE: &str = include_str!("hubgate_hub.py");
/// Its file name (the module's name, `.py`).
pub(super) const HUB_MODULE_FILE: &str = "hubgate_hub.py";
/// The spawner's module, which the first imports, mounted beside it.
pub(super) const HUB_SPAWNER: &str = include_str!("hubgate_spawner.py");
pub(super) const HUB_SPAWNER_FILE: &str = "hubgate_spawner.py";
/// The hub's entrypoint, which runs JupyterHub while it holds the lease,
/// mounted beside the module.
pub(super) const HUB_LEASE: &str = include_str!("hubgate_lease.py");
pub(super) const HUB_LEASE_FILE: &str = "hubgate_lease.py";

/// How long the hub waits for one hubgate replica's API (on the overlay a
/// live one answers in milliseconds; a dead node's task can linger in DNS).
const REPLICA_TIMEOUT_SECS: u32 = 3;

/// The per-user volumes: `{username}` stands for the escaped user name.
pub(super) struct Volumes<'a> {
    pub(super) name: &'a str,
    pub(super) options: &'a BTreeMap<String, String>,
    /// The hash of the storage's options (the storage label).
    pub(super) storage_id: &'a str,
}

/// What `hubgate_hub.configure` reads: every value of a deployment the
/// hub needs, and nothing else.
#[derive(Debug, Serialize)]
struct HubValues<'a> {
    hub: HubPart,
    proxy: ProxyPart,
    spawner: SpawnerPart<'a>,
    auth: AuthPart<'a>,
    /// Seconds a server may idle before the culler stops it.
    idle_timeout: Option<u64>,
    /// The culler's other options (with `idle_timeout` only).
    cull: Option<CullPart>,
    limits: LimitsPart,
    /// JupyterHub's template variables: the banners.
    template_vars: BTreeMap<&'static str, &'a str>,
    /// The hub's services, its logo and templates.
    extras: &'a ExtrasPart,
}

#[derive(Debug, Serialize)]
struct CullPart {
    admin_users: bool,
    concurrency: Option<u32>,
    every: Option<u64>,
    max_age: Option<u64>,
    users: bool,
    remove_named_servers: bool,
}

/// JupyterHub's limits; `None`: JupyterHub's default.
#[derive(Debug, Serialize)]
struct LimitsPart {
    concurrent_spawns: Option<u32>,
    active_servers: Option<u32>,
    consecutive_failures: Option<u32>,
    named_servers: Option<u32>,
}

#[derive(Debug, Serialize)]
struct HubPart {
    port: u16,
    connect_ip: String,
    public_url: String,
    db_url: String,
    cookie_secret_path: &'static str,
    crypt_key_path: &'static str,
}

#[derive(Debug, Serialize)]
struct ProxyPart {
    host: String,
    port: u16,
    token_path: &'static str,
    replica_timeout: u32,
}

#[derive(Debug, Serialize)]
struct SpawnerPart<'a> {
    image: &'a str,
    cmd: &'a [String],
    network: &'a str,
    notebook_dir: &'a str,
    start_timeout: u32,
    constraints: &'a [String],
    storage: &'static str,
    user_uid: u32,
    user_volume: &'a str,
    volume_options: &'a BTreeMap<String, String>,
    volume_labels: BTreeMap<&'static str, &'a str>,
    service_labels: BTreeMap<&'static str, &'a str>,
    singleuser_config: &'a str,
    singleuser_config_dir: &'static str,
    resources: ResourcesPart,
    /// The spawner's prefix: servers are `<prefix>-<user>`.
    prefix: &'static str,
    /// The shared data every server mounts (with profiles: each
    /// profile's own list).
    data_mounts: Vec<DataVolume>,
    /// The environments on the spawn page (none: no choice).
    profiles: Vec<ProfilePart<'a>>,
    token_secret: TokenSecretPart<'a>,
}

/// Each server's API token, a Docker secret of its own.
#[derive(Debug, Serialize)]
struct TokenSecretPart<'a> {
    /// The start of its name (a random part follows).
    prefix: String,
    labels: BTreeMap<&'static str, &'a str>,
    /// The label naming the server (its service) a secret is for.
    server_label: &'static str,
    /// Its file in the server's `/run/secrets`.
    file: &'static str,
}

/// A profile, resolved against `[singleuser]`.
#[derive(Debug, Serialize)]
struct ProfilePart<'a> {
    name: &'a str,
    display_name: &'a str,
    description: &'a str,
    image: &'a str,
    resources: ResourcesPart,
    constraints: Vec<String>,
    generic_resources: BTreeMap<String, u64>,
    default: bool,
    allowed_users: &'a [String],
    allowed_groups: &'a [String],
    mounts: Vec<DataVolume>,
}

#[derive(Debug, Serialize)]
struct ResourcesPart {
    cpu_limit: Option<f64>,
    memory_limit: Option<u64>,
    cpu_reservation: Option<f64>,
    memory_reservation: Option<u64>,
}

#[derive(Debug, Serialize)]
struct AuthPart<'a> {
    kind: &'static str,
    password_path: Option<&'static str>,
    client_id: Option<&'a str>,
    client_secret_path: Option<&'static str>,
    callback_url: Option<String>,
    allowed_organizations: &'a [String],
    /// kind = "oauth": the provider.
    provider: Option<ProviderPart<'a>>,
    allow_all: bool,
    allowed_users: &'a [String],
    admin_users: &'a [String],
}

/// A generic OAuth provider, resolved from its preset.
#[derive(Debug, Serialize)]
struct ProviderPart<'a> {
    authorize_url: String,
    token_url: String,
    userdata_url: String,
    scopes: Vec<String>,
    username_claim: String,
    groups_claim: Option<String>,
    login_service: String,
    allowed_groups: &'a [String],
    admin_groups: &'a [String],
}

/// The generated `jupyterhub_config.py`.
pub(super) fn render(
    f: &DeployFile,
    volumes: &Volumes<'_>,
    singleuser_config: &str,
    extras: &ExtrasPart,
) -> Result<String, DeployError> {
    let values = HubValues {
        hub: hub(f),
        proxy: proxy(f),
        spawner: spawner(f, volumes, singleuser_config),
        auth: auth(f),
        extras,
        idle_timeout: f.hub.idle_timeout.map(|d| d.0),
        cull: f.hub.idle_timeout.map(|_| CullPart {
            every: f.hub.cull.every.map(|d| d.0),
            max_age: f.hub.cull.max_age.map(|d| d.0),
            users: f.hub.cull.users,
            remove_named_servers: f.hub.cull.remove_named_servers,
            admin_users: f.hub.cull.admin_users,
            concurrency: f.hub.cull.concurrency,
        }),
        template_vars: [
            ("announcement", &f.hub.announcement),
            ("announcement_login", &f.hub.login_message),
        ]
        .into_iter()
        .filter_map(|(k, v)| Some((k, v.as_deref()?)))
        .collect(),
        limits: LimitsPart {
            concurrent_spawns: f.hub.limits.concurrent_spawns,
            active_servers: f.hub.limits.active_servers,
            consecutive_failures: f.hub.limits.consecutive_failures,
            named_servers: f.hub.limits.named_servers,
        },
    };
    let values = serde_json::to_value(&values).map_err(|e| DeployError::Render(e.to_string()))?;
    let py = |s: &str| serde_json::Value::from(s).to_string();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "# Generated by `hubgate deploy` for the deployment {}. Do not edit:\n\
         # change the deployment file and run `hubgate deploy apply` again.\n\
         # The code is hubgate's module {HUB_MODULE_FILE} beside this file (a Docker\n\
         # config of its own); this file holds the deployment's values only.\n\
         import sys\n\n\
         sys.path.insert(0, {})\n\
         import hubgate_hub  # noqa: E402\n\n\
         c = get_config()  # noqa: F821\n\
         hubgate_hub.configure(c, {})",
        py(&f.name),
        py(HUB_MODULE_DIR),
        python::literal(&values, 0),
    );
    if let Some(extra) = &f.hub.extra_config {
        let _ = writeln!(
            text,
            "\n# hub.extra_config from the deployment file.\n{extra}"
        );
    }
    Ok(text)
}

fn hub(f: &DeployFile) -> HubPart {
    HubPart {
        port: HUB_PORT,
        connect_ip: names(f).hub,
        public_url: f.public_url(),
        db_url: match &f.hub.database {
            // SQLAlchemy's driver named: its default for postgresql:// is
            // psycopg 3 in newer releases; the hub image has psycopg2.
            Some(db) => db
                .url
                .replacen("postgresql://", "postgresql+psycopg2://", 1),
            None => format!("sqlite:///{HUB_STATE_DIR}/jupyterhub.sqlite"),
        },
        cookie_secret_path: COOKIE_SECRET_PATH,
        crypt_key_path: CRYPT_KEY_PATH,
    }
}

fn proxy(f: &DeployFile) -> ProxyPart {
    ProxyPart {
        host: names(f).hubgate,
        port: API_PORT,
        token_path: PROXY_TOKEN_PATH,
        replica_timeout: REPLICA_TIMEOUT_SECS,
    }
}

fn spawner<'a>(f: &'a DeployFile, v: &Volumes<'a>, singleuser_config: &'a str) -> SpawnerPart<'a> {
    let s = &f.singleuser;
    // The one server `[singleuser]` describes, or its profiles.
    let (plain, profiled): (Vec<_>, Vec<_>) = server_kinds(f)
        .into_iter()
        .partition(|k| k.profile.is_none());
    SpawnerPart {
        image: &s.image,
        cmd: &s.cmd,
        network: &f.network.name,
        notebook_dir: &s.notebook_dir,
        start_timeout: s.start_timeout,
        constraints: &s.constraints,
        storage: STORAGE_DIR,
        user_uid: s.uid,
        user_volume: v.name,
        volume_options: v.options,
        volume_labels: user_volume_labels(f, v),
        service_labels: BTreeMap::from([(SPAWNED_LABEL, f.name.as_str())]),
        singleuser_config,
        singleuser_config_dir: SINGLEUSER_CONFIG_DIR,
        resources: resources(&s.resources),
        prefix: SERVER_PREFIX,
        data_mounts: plain
            .into_iter()
            .next()
            .map(|k| k.mounts)
            .unwrap_or_default(),
        profiles: profiled
            .into_iter()
            .filter_map(|k| {
                let p = k.profile?;
                Some(ProfilePart {
                    name: &p.name,
                    display_name: &p.display_name,
                    description: &p.description,
                    image: k.image,
                    resources: resources(k.resources),
                    constraints: k.constraints,
                    generic_resources: k.generic,
                    default: p.default,
                    allowed_users: &p.allowed_users,
                    allowed_groups: &p.allowed_groups,
                    mounts: k.mounts,
                })
            })
            .collect(),
        token_secret: TokenSecretPart {
            prefix: super::guard::token_secret_prefix(f),
            labels: BTreeMap::from([(SPAWNED_LABEL, f.name.as_str())]),
            server_label: SERVER_LABEL,
            file: SERVER_TOKEN_FILE,
        },
    }
}

/// The labels of every user's volume.
pub(super) fn user_volume_labels<'a>(
    f: &'a DeployFile,
    v: &Volumes<'a>,
) -> BTreeMap<&'static str, &'a str> {
    BTreeMap::from([
        (DEPLOY_LABEL, f.name.as_str()),
        (ROLE_LABEL, Role::User.as_str()),
        (STORAGE_LABEL, v.storage_id),
    ])
}

fn resources(r: &Resources) -> ResourcesPart {
    ResourcesPart {
        cpu_limit: r.cpu_limit,
        memory_limit: r.memory_limit.map(|m| m.0),
        cpu_reservation: r.cpu_reservation,
        memory_reservation: r.memory_reservation.map(|m| m.0),
    }
}

fn auth(f: &DeployFile) -> AuthPart<'_> {
    let a = &f.auth;
    let oauth = a.kind != AuthKind::Dummy;
    AuthPart {
        kind: match a.kind {
            AuthKind::Dummy => "dummy",
            AuthKind::Github => "github",
            AuthKind::Oauth => "oauth",
        },
        password_path: (a.kind == AuthKind::Dummy && a.password_file.is_some())
            .then_some(PASSWORD_PATH),
        client_id: oauth.then(|| a.client_id.as_deref().unwrap_or_default()),
        client_secret_path: oauth.then_some(OAUTH_SECRET_PATH),
        callback_url: oauth.then(|| f.oauth_callback_url()),
        allowed_organizations: if a.kind == AuthKind::Github {
            &a.allowed_organizations
        } else {
            &[]
        },
        // The file's check made sure it resolves.
        provider: (a.kind == AuthKind::Oauth)
            .then(|| a.oauth_provider().ok())
            .flatten()
            .map(|p| ProviderPart {
                authorize_url: p.authorize_url,
                token_url: p.token_url,
                userdata_url: p.userdata_url,
                scopes: p.scopes,
                username_claim: p.username_claim,
                groups_claim: p.groups_claim,
                login_service: p.login_service,
                allowed_groups: &a.allowed_groups,
                admin_groups: &a.admin_groups,
            }),
        // JupyterHub 5 lets nobody in unless told who may log in.
        allow_all: a.allow_all || (!oauth && a.allowed_users.is_empty()),
        allowed_users: &a.allowed_users,
        admin_users: &a.admin_users,
    }
}

/// The settings a hub configuration makes, one a line, for `plan` to name
/// those that change: each value of the generated block as its path
/// (`spawner.image: "..."`), every other line (the operator's
/// `extra_config`) as written; comments and blank lines left out.
pub fn hub_settings(text: &str) -> Vec<String> {
    // Each open bracket's segment of the path; a list's, how many items
    // it has opened (an item is `[i]` in the path: `profiles[1].image`).
    let mut path: Vec<(String, Option<usize>)> = vec![];
    let mut out = vec![];
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = line.strip_prefix('"').and_then(|l| l.split_once("\": "));
        match entry {
            Some((key, "{")) => path.push((key.to_owned(), None)),
            Some((key, "[")) => path.push((key.to_owned(), Some(0))),
            Some((key, value)) => {
                let at = joined(&path);
                let dot = if at.is_empty() { "" } else { "." };
                out.push(format!("{at}{dot}{key}: {}", value.trim_end_matches(',')));
            }
            None if line == "{" && matches!(path.last(), Some((_, Some(_)))) => {
                let Some((_, Some(items))) = path.last_mut() else {
                    unreachable!("matched above")
                };
                let segment = format!("[{items}]");
                *items += 1;
                path.push((segment, None));
            }
            None if matches!(line, "}," | "],") && !path.is_empty() => {
                path.pop();
            }
            None => out.push(line.to_owned()),
        }
    }
    out
}

/// A settings path: segments joined by `.`, list items (`[i]`) appended.
fn joined(path: &[(String, Option<usize>)]) -> String {
    let mut at = String::new();
    for (segment, _) in path {
        if !at.is_empty() && !segment.starts_with('[') {
            at.push('.');
        }
        at.push_str(segment);
    }
    at
}
