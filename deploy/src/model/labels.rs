//! The labels `apply` puts on what it makes, and the roles a deployment's
//! objects play: one spelling for the code that writes them, the code
//! that reads them back and the hub's spawner.

use std::fmt;

/// The label every object `apply` makes carries, valued with the
/// deployment's name.
pub const DEPLOY_LABEL: &str = "hubgate.deploy";
/// The label naming an object's part in the deployment (a [`Role`]).
pub const ROLE_LABEL: &str = "hubgate.deploy.role";
/// The label on user volumes naming the storage they mount (a hash of the
/// storage's options).
pub const STORAGE_LABEL: &str = "hubgate.deploy.storage";
/// The label on user servers the hub spawned for a deployment, and on
/// their token secrets.
pub const SPAWNED_LABEL: &str = "hubgate.deploy.spawned";
/// The label on a token secret naming the user server it is for.
pub const SERVER_LABEL: &str = "hubgate.deploy.server";

/// An object's part in a deployment: the value of its [`ROLE_LABEL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// The overlay network.
    Network,
    /// The hub service.
    Hub,
    /// The hubgate service.
    Hubgate,
    /// The service that keeps user servers from the cloud's metadata
    /// service on every node that runs them.
    MetadataBlock,
    /// The service that holds each GPU node's place on the servers'
    /// network (see `desired::metadata`).
    NetworkAnchor,
    /// A one-off job that looks for a user server image on the nodes.
    ImageCheck,
    /// A hub service of the deployment's (`hub.services`).
    HubService,
    /// A hub service's API token (a generated secret).
    HubServiceToken,
    /// The hub's logo or one of its templates (a Docker config).
    HubBranding,
    /// The Docker API guard service, the only one holding the engine's
    /// socket.
    DockerGuard,
    /// The guard's configuration: its sockets and their policies (a
    /// Docker config).
    GuardConfig,
    /// The guard's discovery socket, shared with hubgate on each node (a
    /// volume).
    GuardSocket,
    /// The hub's `jupyterhub_config.py` (a Docker config).
    HubConfig,
    /// hubgate's JupyterHub module (a Docker config).
    HubModule,
    /// hubgate's spawner module, beside it (a Docker config).
    HubSpawner,
    /// The hub's entrypoint, which holds the lease (a Docker config).
    HubLease,
    /// JupyterHub's cookie secret (a generated secret).
    HubCookieSecret,
    /// JupyterHub's auth-state encryption key (a generated secret).
    HubCryptKey,
    /// The user servers' jupyter_server configuration (a Docker config).
    SingleUserConfig,
    /// The token the hub and hubgate share (a generated secret).
    ProxyToken,
    /// The OAuth client secret (from a file, or the operator's secret).
    OauthClientSecret,
    /// The dummy authenticator's shared password.
    DummyPassword,
    /// The password of the hub's PostgreSQL database.
    HubDbPassword,
    /// A fixed TLS certificate chain and its key.
    TlsCert,
    TlsKey,
    /// The CA bundle an ACME directory is trusted with.
    AcmeCa,
    /// The hub's view of the whole storage (a volume).
    Storage,
    /// hubgate's certificate store on the storage (a volume).
    Certs,
    /// The hub's database directory on one node (a volume), before the
    /// database moved to the storage.
    HubData,
    /// A user's volume, made by the spawner.
    User,
    /// Shared data user servers mount (a volume, made by the spawner).
    Data,
}

impl Role {
    /// Every role, in declaration order.
    pub const ALL: [Role; 31] = [
        Role::Network,
        Role::Hub,
        Role::Hubgate,
        Role::MetadataBlock,
        Role::NetworkAnchor,
        Role::ImageCheck,
        Role::HubService,
        Role::HubServiceToken,
        Role::HubBranding,
        Role::DockerGuard,
        Role::GuardConfig,
        Role::GuardSocket,
        Role::HubConfig,
        Role::HubModule,
        Role::HubSpawner,
        Role::HubLease,
        Role::HubCookieSecret,
        Role::HubCryptKey,
        Role::SingleUserConfig,
        Role::ProxyToken,
        Role::OauthClientSecret,
        Role::DummyPassword,
        Role::HubDbPassword,
        Role::TlsCert,
        Role::TlsKey,
        Role::AcmeCa,
        Role::Storage,
        Role::Certs,
        Role::HubData,
        Role::User,
        Role::Data,
    ];

    /// The label value (and the word in the object's name).
    pub const fn as_str(self) -> &'static str {
        match self {
            Role::Network => "network",
            Role::Hub => "hub",
            Role::Hubgate => "hubgate",
            Role::MetadataBlock => "metadata-block",
            Role::NetworkAnchor => "network-anchor",
            Role::ImageCheck => "image-check",
            Role::HubService => "hub-service",
            Role::HubServiceToken => "hub-service-token",
            Role::HubBranding => "hub-branding",
            Role::DockerGuard => "docker-guard",
            Role::GuardConfig => "guard-config",
            Role::GuardSocket => "guard-socket",
            Role::HubConfig => "hub-config",
            Role::HubModule => "hub-module",
            Role::HubSpawner => "hub-spawner",
            Role::HubLease => "hub-lease",
            Role::HubCookieSecret => "hub-cookie-secret",
            Role::HubCryptKey => "hub-crypt-key",
            Role::SingleUserConfig => "singleuser-config",
            Role::ProxyToken => "proxy-token",
            Role::OauthClientSecret => "oauth-client-secret",
            Role::DummyPassword => "dummy-password",
            Role::HubDbPassword => "hub-db-password",
            Role::TlsCert => "tls-cert",
            Role::TlsKey => "tls-key",
            Role::AcmeCa => "acme-ca",
            Role::Storage => "storage",
            Role::Certs => "certs",
            Role::HubData => "hub-data",
            Role::User => "user",
            Role::Data => "data",
        }
    }

    /// The role a label value names, if any.
    pub fn from_label(value: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == value)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_reads_back_from_its_label() {
        for role in Role::ALL {
            assert_eq!(Role::from_label(role.as_str()), Some(role));
        }
        assert_eq!(Role::from_label("nonsense"), None);
    }
}
