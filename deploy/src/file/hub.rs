//! The `[hub]` table's fields as serde reads them, with their defaults.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::common::{Resources, default_true};
use super::units::Duration;

/// The JupyterHub service.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hub {
    pub image: String,
    /// Pin the hub (and its database volume) to this manager's hostname.
    pub node: Option<String>,
    #[serde(default)]
    pub resources: Resources,
    /// Stop servers idle this long (`1h`, `30m`); none: never.
    pub idle_timeout: Option<Duration>,
    /// The idle culler's options beyond `idle_timeout`.
    #[serde(default)]
    pub cull: Cull,
    /// JupyterHub's limits on spawns and servers.
    #[serde(default)]
    pub limits: Limits,
    /// A banner on every page of the hub (HTML), e.g. a maintenance
    /// notice (z2jh `hub.templateVars.announcement`).
    pub announcement: Option<String>,
    /// A message on the login page only (HTML), in place of the banner
    /// there.
    pub login_message: Option<String>,
    /// An image file shown as the hub's logo (z2jh `hub.extraFiles` with
    /// `JupyterHub.logo_file`), shipped as a Docker config.
    pub logo_file: Option<String>,
    /// A directory of Jinja templates (`login.html`, `page.html`, ...)
    /// that take the place of JupyterHub's own (z2jh `hub.templatePaths`),
    /// each file a Docker config.
    pub templates: Option<String>,
    /// Services the hub knows and this deployment runs (z2jh
    /// `hub.services`): a dashboard, a grader.
    #[serde(default)]
    pub services: Vec<HubService>,
    /// Python appended verbatim to the generated `jupyterhub_config.py`.
    pub extra_config: Option<String>,
    /// An external PostgreSQL database for the hub (and its lease); none:
    /// sqlite on the storage.
    pub database: Option<Database>,
}

/// The idle culler (jupyterhub-idle-culler), z2jh's `cull.*`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cull {
    /// How often it looks (its default: 10 minutes).
    pub every: Option<Duration>,
    /// Stop servers this old however active they are.
    pub max_age: Option<Duration>,
    /// Remove users (not admins) who have no server and were idle as long.
    #[serde(default)]
    pub users: bool,
    /// Remove named servers it stops, rather than only stopping them.
    #[serde(default)]
    pub remove_named_servers: bool,
    /// With `users`: idle admins are removed as other users are (`false`:
    /// spared).
    #[serde(default = "default_true")]
    pub admin_users: bool,
    /// Requests it makes to the hub at once (its default: 10).
    pub concurrency: Option<u32>,
}

impl Default for Cull {
    fn default() -> Self {
        Self {
            every: None,
            max_age: None,
            users: false,
            remove_named_servers: false,
            admin_users: true,
            concurrency: None,
        }
    }
}

/// JupyterHub's limits (z2jh `hub.concurrentSpawnLimit`,
/// `hub.activeServerLimit`, `hub.consecutiveFailureLimit`,
/// `hub.allowNamedServers` and `hub.namedServerLimitPerUser`).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Spawns in progress at once; one more gets JupyterHub's 429 (its
    /// default: 100).
    pub concurrent_spawns: Option<u32>,
    /// Servers running or starting at once; one more gets a 429 (none: no
    /// limit).
    pub active_servers: Option<u32>,
    /// Failed spawns in a row after which the hub stops, for its service
    /// to start it again (its default: 0, never).
    pub consecutive_failures: Option<u32>,
    /// Named servers a user may have besides the default one (none: no
    /// named servers).
    pub named_servers: Option<u32>,
}

/// The hub's PostgreSQL database.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Database {
    /// `postgresql://USER@HOST[:PORT]/DB[?OPTIONS]`, without the password.
    pub url: String,
    /// A file holding the password (made a Docker secret by `apply`);
    /// none: the server asks for none (a client certificate, trust).
    pub password_file: Option<String>,
}

/// A hub service: a swarm service of its own, with an API token the hub
/// and it share (a Docker secret, made once and kept), its scopes, and
/// (with `port`) its pages at `/services/NAME/` through hubgate.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubService {
    /// Its name (lower case, digits, `-`): `/services/NAME/`, and the
    /// swarm service `<deployment>-service-NAME`.
    pub name: String,
    pub image: String,
    /// Its command; it starts with the token in `JUPYTERHUB_API_TOKEN`
    /// (read from its secret's file by `sh`, which the image must have).
    pub command: Vec<String>,
    /// The port it serves on; none: an API client only, with no pages.
    pub port: Option<u16>,
    /// What its token may do (JupyterHub scopes: `list:users`,
    /// `read:users:activity`, `admin:servers`, ...).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Environment values (not secrets: those go in Docker secrets).
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Placement constraints.
    #[serde(default)]
    pub constraints: Vec<String>,
    #[serde(default)]
    pub resources: Resources,
}
