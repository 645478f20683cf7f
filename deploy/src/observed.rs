//! What the engine reports of a deployment, in the model's terms:
//! `engine` reads it, `diff` compares it with what the file wants.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::model::ServiceWant;

/// The network as the engine has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkSeen {
    pub name: String,
    pub driver: String,
    pub attachable: bool,
    pub subnet: Option<String>,
    pub encrypted: bool,
    /// Made by this deployment (labelled), not found in place.
    pub managed: bool,
    /// Services attached to it that the deployment does not manage (user
    /// servers, the operator's own).
    pub foreign_services: Vec<String>,
}

/// A volume on the engine `apply` talks to, labelled by this deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeSeen {
    pub name: String,
    pub labels: HashMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// What the engine reports of a deployment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// The network with the file's name, if any.
    pub network: Option<NetworkSeen>,
    /// Other networks labelled by this deployment (an old name).
    pub old_networks: Vec<String>,
    /// Configs labelled by this deployment.
    pub configs: Vec<String>,
    /// Configs the deployment's running user servers mount (the servers'
    /// configuration of an earlier apply): none can go until its servers
    /// stop, so none is planned for removal (every apply would be a
    /// change).
    pub server_configs: HashSet<String>,
    /// Secrets labelled by this deployment.
    pub secrets: Vec<String>,
    /// Every secret's name (external ones must exist).
    pub all_secrets: HashSet<String>,
    /// Services labelled by this deployment.
    pub services: Vec<ServiceWant>,
    /// This engine's volumes of the deployment that no container uses.
    pub volumes: Vec<VolumeSeen>,
    /// Ports other services publish, as (port, service name).
    pub foreign_ports: Vec<(u16, String)>,
    /// The text of the hub configuration the hub service runs with.
    pub hub_config: Option<String>,
    /// A hub of an earlier hubgate that keeps its database on a volume of
    /// its node.
    pub hub_data: Option<HubDataSeen>,
}

/// Where a hub of an earlier hubgate keeps its database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubDataSeen {
    /// The node-local volume.
    pub volume: String,
    /// The node of the hub's latest task: its ID, host name, and whether
    /// it is up (the volume is reachable only there).
    pub node_id: String,
    pub node: String,
    pub node_ready: bool,
}
