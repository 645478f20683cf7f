//! Where a deployment's parts find each other: ports on the overlay
//! network, paths inside the containers, service names. A leaf: the
//! services and the hub's configuration both read it.

use crate::file::DeployFile;

/// The hub's port on the overlay network.
pub const HUB_PORT: u16 = 8081;
/// hubgate's REST API port on the overlay network.
pub const API_PORT: u16 = 8001;
// Inside the container: the image's HEALTHCHECK asks port 80 (Docker lets
// unprivileged processes bind low ports in containers).
pub(crate) const HTTP_PORT: u16 = 80;
pub(crate) const HTTPS_PORT: u16 = 443;
pub(crate) const PROXY_TOKEN_PATH: &str = "/run/secrets/proxy-token";
pub(crate) const OAUTH_SECRET_PATH: &str = "/run/secrets/oauth-client-secret";
pub(crate) const PASSWORD_PATH: &str = "/run/secrets/dummy-password";
pub(crate) const COOKIE_SECRET_PATH: &str = "/run/secrets/hub-cookie-secret";
pub(crate) const CRYPT_KEY_PATH: &str = "/run/secrets/hub-crypt-key";
pub(crate) const DB_PASSWORD_PATH: &str = "/run/secrets/hub-db-password";
pub(crate) const TLS_CERT_PATH: &str = "/run/secrets/tls-cert";
pub(crate) const TLS_KEY_PATH: &str = "/run/secrets/tls-key";
pub(crate) const ACME_CA_PATH: &str = "/etc/hubgate/acme-ca.pem";
pub(crate) const STORAGE_DIR: &str = "/srv/hubgate-storage";
/// Where user servers find the deployment's jupyter_server configuration
/// (named in their `JUPYTER_CONFIG_PATH`).
pub(crate) const SINGLEUSER_CONFIG_DIR: &str = "/etc/hubgate/jupyter";
/// The hub's state on the storage: its sqlite database and lease.
pub(crate) const HUB_STATE_DIR: &str = "/srv/hubgate-storage/.hubgate/hub";
/// The storage subdirectory of the hub's state.
pub const HUB_STATE_SUBDIR: &str = ".hubgate/hub";
pub(crate) const HUB_CONFIG_PATH: &str = "/srv/jupyterhub/jupyterhub_config.py";
/// Where the hub finds hubgate's JupyterHub module (put on its `sys.path`
/// by the generated configuration).
pub(crate) const HUB_MODULE_DIR: &str = "/srv/jupyterhub/hubgate";
/// Where the hub finds the deployment's logo, and its templates.
pub(crate) const BRANDING_DIR: &str = "/srv/jupyterhub/branding";
pub(crate) const TEMPLATES_DIR: &str = "/srv/jupyterhub/templates";
/// Where a hub service finds its API token.
pub(crate) const SERVICE_TOKEN_PATH: &str = "/run/secrets/hub-service-token";
pub(crate) const CERTS_DIR: &str = "/var/lib/hubgate";
pub(crate) const DOCKER_SOCKET: &str = "/var/run/docker.sock";
/// Where the guard's configuration is, in its task.
pub(crate) const GUARD_CONFIG_PATH: &str = "/etc/hubgate/docker-guard.json";
/// The directory of the guard's discovery socket (a volume the guard and
/// hubgate share on each node), and the socket.
pub(crate) const GUARD_DISCOVERY_DIR: &str = "/run/hubgate-guard/discovery";
pub(crate) const GUARD_DISCOVERY_SOCKET: &str = "/run/hubgate-guard/discovery/docker.sock";
/// The directory of the guard's spawner socket (a volume the guard and the
/// hub share on each manager), and the socket.
pub(crate) const GUARD_SPAWNER_DIR: &str = "/run/hubgate-guard/spawner";
pub(crate) const GUARD_SPAWNER_SOCKET: &str = "/run/hubgate-guard/spawner/docker.sock";
/// The start of a user server's service name (the spawner's prefix and a
/// dash); JupyterHub's spawners name servers `jupyter-<user>` by default.
pub(crate) const SERVER_PREFIX: &str = "jupyter";
/// Where a user server finds its API token (a Docker secret's file, under
/// `/run/secrets`).
pub(crate) const SERVER_TOKEN_FILE: &str = "hubgate-api-token";
/// The uid hubgate's image runs as.
pub const HUBGATE_UID: u32 = 10001;
/// The storage subdirectory hubgate keeps certificates in.
pub const CERTS_SUBDIR: &str = ".hubgate/certs";

/// Where the hub finds service `name`'s API token.
pub(crate) fn hub_service_token_path(name: &str) -> String {
    format!("/run/secrets/hub-service-{name}-token")
}

/// Object names of a deployment.
pub(crate) struct Names {
    pub(crate) hub: String,
    pub(crate) hubgate: String,
    pub(crate) guard: String,
}

pub(crate) fn names(f: &DeployFile) -> Names {
    Names {
        hub: format!("{}-hub", f.name),
        hubgate: format!("{}-hubgate", f.name),
        guard: format!("{}-docker-guard", f.name),
    }
}
