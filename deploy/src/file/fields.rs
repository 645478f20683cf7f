//! The deployment file's fields as serde reads them, with their defaults.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::common::{Resources, default_true};
use super::hub::Hub;
use super::units::Size;

/// The ACME directory used when `[tls]` names none: Let's Encrypt's
/// production CA.
pub const LETSENCRYPT: &str = "https://acme-v02.api.letsencrypt.org/directory";

/// A whole deployment, as the file describes it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeployFile {
    /// Prefix of every object `apply` creates (`<name>-hub`, ...), and the
    /// value of their `hubgate.deploy` label.
    #[serde(default = "default_name")]
    pub name: String,
    /// The public host names users reach the hub at; the first is the one
    /// OAuth callbacks use.
    pub hosts: Vec<String>,
    pub hub: Hub,
    pub singleuser: SingleUser,
    #[serde(default)]
    pub network: Network,
    pub storage: Storage,
    pub auth: Auth,
    pub proxy: Proxy,
    pub tls: Option<Tls>,
}

fn default_name() -> String {
    "jupyterhub".to_owned()
}

/// The single-user servers SwarmSpawner starts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SingleUser {
    pub image: String,
    #[serde(default)]
    pub resources: Resources,
    /// Where the user's volume is mounted, and the notebook directory.
    #[serde(default = "default_notebook_dir")]
    pub notebook_dir: String,
    /// The uid (and gid) the image runs as, owner of the user's directory.
    #[serde(default = "default_uid")]
    pub uid: u32,
    /// Placement constraints for user servers (`node.role==worker`).
    #[serde(default)]
    pub constraints: Vec<String>,
    /// The server's command. Named here rather than read from the image:
    /// the hub's node need not have the single-user image.
    #[serde(default = "default_cmd")]
    pub cmd: Vec<String>,
    /// Seconds SwarmSpawner waits for a server to start.
    #[serde(default = "default_start_timeout")]
    pub start_timeout: u32,
    /// Environments users choose from on the spawn page (z2jh
    /// `singleuser.profileList`); none: every server is the one above.
    #[serde(default)]
    pub profiles: Vec<Profile>,
    /// Shared data every server mounts beside the user's own volume (z2jh
    /// `singleuser.storage.extraVolumes`).
    #[serde(default)]
    pub mounts: Vec<DataMount>,
    /// The cloud's instance metadata service, out of user servers' reach
    /// (z2jh `singleuser.cloudMetadata`).
    #[serde(default)]
    pub cloud_metadata: CloudMetadata,
}

/// Addresses no user server may reach: a firewall rule on every node that
/// runs servers, for what the swarm forwards from containers (z2jh
/// `singleuser.cloudMetadata.blockWithIptables`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudMetadata {
    /// On by default, as in z2jh.
    #[serde(default = "default_true")]
    pub block: bool,
    /// IPv4 addresses or networks (`a.b.c.d/n`).
    #[serde(default = "default_metadata_addresses")]
    pub addresses: Vec<String>,
}

impl Default for CloudMetadata {
    fn default() -> Self {
        Self {
            block: true,
            addresses: default_metadata_addresses(),
        }
    }
}

/// Where clouds (AWS, GCP, Azure, OpenStack) serve instance metadata.
fn default_metadata_addresses() -> Vec<String> {
    vec!["169.254.169.254".to_owned()]
}

/// Shared data a server mounts: a directory of the deployment's storage,
/// or an NFS export of its own.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataMount {
    /// Where the server sees it.
    pub target: String,
    /// A directory of the storage, relative to it (`datasets`).
    pub path: Option<String>,
    /// Or an NFS export of its own.
    pub nfs: Option<Nfs>,
    /// Servers cannot write it (a dataset); `false` for a shared space.
    #[serde(default = "default_true")]
    pub read_only: bool,
}

/// One environment on the spawn page: what it changes of `[singleuser]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// Its slug (lower case, digits, `-`): the spawn form's value, and
    /// `user_options.profile` through the REST API.
    pub name: String,
    pub display_name: String,
    #[serde(default)]
    pub description: String,
    /// None: `singleuser.image`.
    pub image: Option<String>,
    /// None: `singleuser.resources`.
    pub resources: Option<Resources>,
    /// Placement constraints besides `singleuser.constraints`.
    #[serde(default)]
    pub constraints: Vec<String>,
    /// Swarm generic resources each server reserves (`{ NVIDIA-GPU = 1 }`):
    /// it starts only on a node that advertises them free.
    #[serde(default)]
    pub generic_resources: BTreeMap<String, u64>,
    /// The one chosen when a spawn names none.
    #[serde(default)]
    pub default: bool,
    /// Who may choose it (by name, or by a group the authenticator
    /// gives); both empty: everyone.
    #[serde(default)]
    pub allowed_users: Vec<String>,
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Shared data its servers mount besides `singleuser.mounts`.
    #[serde(default)]
    pub mounts: Vec<DataMount>,
}

fn default_notebook_dir() -> String {
    "/home/jovyan/work".to_owned()
}

fn default_cmd() -> Vec<String> {
    vec!["jupyterhub-singleuser".to_owned()]
}

fn default_uid() -> u32 {
    1000
}

fn default_start_timeout() -> u32 {
    120
}

/// The attachable overlay network every service shares.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    #[serde(default = "default_network")]
    pub name: String,
    /// An IPv4 subnet in CIDR form; none: the engine's pool chooses.
    pub subnet: Option<String>,
    /// Encrypt the VXLAN traffic between nodes (IPsec).
    #[serde(default)]
    pub encrypted: bool,
}

impl Default for Network {
    fn default() -> Self {
        Self {
            name: default_network(),
            subnet: None,
            encrypted: false,
        }
    }
}

fn default_network() -> String {
    "jupyterhub".to_owned()
}

/// Where users' files, the certificates and nothing else live: an NFS
/// export every node can mount, or a directory of a single machine.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Storage {
    pub nfs: Option<Nfs>,
    /// An absolute directory on the machine (one node, or a path every
    /// node shares).
    pub local: Option<String>,
}

/// An NFS export.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nfs {
    /// The server's address (IP or host name).
    pub server: String,
    /// The exported directory; users get `<export>/<user>`.
    pub export: String,
    /// Mount options besides `addr=`.
    #[serde(default = "default_nfs_options")]
    pub options: String,
}

fn default_nfs_options() -> String {
    "rw,nfsvers=4.1,hard,noatime".to_owned()
}

/// Who may log in.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Auth {
    pub kind: AuthKind,
    /// GitHub OAuth application's client id.
    pub client_id: Option<String>,
    /// A file holding the client secret (made a Docker secret by `apply`).
    pub client_secret_file: Option<String>,
    /// An existing Docker secret holding the client secret.
    pub client_secret_secret: Option<String>,
    #[serde(default)]
    pub allowed_users: Vec<String>,
    #[serde(default)]
    pub allowed_organizations: Vec<String>,
    #[serde(default)]
    pub admin_users: Vec<String>,
    /// Let every authenticated user in.
    #[serde(default)]
    pub allow_all: bool,
    /// kind = "dummy": a file holding the one password every name logs in
    /// with (made a Docker secret by `apply`); none: any password.
    pub password_file: Option<String>,
    /// kind = "oauth": `cilogon`, `gitlab`, `google` or `keycloak` (the
    /// provider's URLs, scopes and claims; each may still be set).
    pub preset: Option<String>,
    /// kind = "oauth": the provider's base URL, for the presets that have
    /// none of their own: a Keycloak realm
    /// (`https://id.example.org/realms/research`), a GitLab of one's own.
    pub issuer: Option<String>,
    pub authorize_url: Option<String>,
    pub token_url: Option<String>,
    pub userdata_url: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// The userdata claim that is the user's name.
    pub username_claim: Option<String>,
    /// The userdata claim listing the user's groups (they become the
    /// user's JupyterHub groups).
    pub groups_claim: Option<String>,
    /// Groups (from `groups_claim`) whose members may log in.
    #[serde(default)]
    pub allowed_groups: Vec<String>,
    /// Groups whose members are admins.
    #[serde(default)]
    pub admin_groups: Vec<String>,
    /// The login button's "Sign in with ...".
    pub login_service: Option<String>,
}

/// The authenticators the file knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthKind {
    /// JupyterHub's DummyAuthenticator: any name, any password (trials).
    Dummy,
    /// GitHub OAuth (oauthenticator).
    Github,
    /// Any OAuth 2 / OpenID Connect provider (oauthenticator's
    /// GenericOAuthenticator), by `preset` or by its URLs.
    Oauth,
}

/// hubgate itself.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Proxy {
    pub image: String,
    /// `"managers"`: one replica on every manager; a number: that many,
    /// at most one per node.
    #[serde(default)]
    pub replicas: Replicas,
    #[serde(default = "default_http_port", deserialize_with = "super::units::port")]
    pub http_port: u16,
    #[serde(
        default = "default_https_port",
        deserialize_with = "super::units::port"
    )]
    pub https_port: u16,
    /// Largest request body (uploads), e.g. `1G`; none: no limit.
    pub max_upload: Option<Size>,
    /// Ignored: hubgate reaches the engine through the Docker API guard
    /// and is in no group of its socket. Accepted so that files written
    /// for earlier releases still parse.
    pub docker_gid: Option<u32>,
}

fn default_http_port() -> u16 {
    80
}

fn default_https_port() -> u16 {
    443
}

/// How many hubgate replicas run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Replicas {
    /// One on every manager node (a global service).
    #[default]
    Managers,
    /// This many, at most one per node.
    Count(u32),
}

impl<'de> Deserialize<'de> for Replicas {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Word(String),
            Count(u32),
        }
        match Raw::deserialize(d)? {
            Raw::Word(w) if w == "managers" => Ok(Self::Managers),
            Raw::Count(n) if n > 0 => Ok(Self::Count(n)),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "replicas must be \"managers\" or a positive number, not {w:?}"
            ))),
            Raw::Count(_) => Err(serde::de::Error::custom("replicas must be at least 1")),
        }
    }
}

/// HTTPS: certificates from ACME, or static files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tls {
    /// ACME account e-mail; with it, hubgate obtains certificates for
    /// every host.
    pub acme_email: Option<String>,
    #[serde(default = "default_acme_directory")]
    pub acme_directory: String,
    /// `http-01` or `tls-alpn-01`.
    #[serde(default = "default_challenge")]
    pub challenge: String,
    /// A CA bundle to trust for the ACME server (a private CA).
    pub acme_ca_file: Option<String>,
    /// Static certificate chain and key files (made Docker secrets).
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

fn default_acme_directory() -> String {
    LETSENCRYPT.to_owned()
}

fn default_challenge() -> String {
    "http-01".to_owned()
}
