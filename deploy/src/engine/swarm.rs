//! The swarm itself: `init` (with the advertise address chosen and
//! explained) and the join commands.

use std::net::IpAddr;

use bollard::models::SwarmInitRequest;

use super::Engine;
use crate::DeployError;

/// The swarm's join tokens and the address nodes join through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinTokens {
    pub worker: String,
    pub manager: String,
    /// `ip:2377` of a manager.
    pub addr: String,
}

impl JoinTokens {
    /// The `docker swarm join` command for a worker or a manager.
    pub fn command(&self, manager: bool) -> String {
        let token = if manager { &self.manager } else { &self.worker };
        format!("docker swarm join --token {token} {}", self.addr)
    }
}

/// What `init` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Initialised {
    /// A new swarm, advertising this address.
    New { addr: IpAddr },
    /// The engine was a manager already.
    Already,
}

/// Whether an address is on a private network (RFC 1918, RFC 6598, ULA).
fn is_private(ip: &IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private() || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// The address to advertise among `candidates` (this machine's
/// addresses), with the reason: a private one keeps the cluster's traffic
/// (2377/tcp, 7946/tcp+udp, 4789/udp) off the public interface; a public
/// one works but exposes those ports; loopback fits a single machine only.
pub fn choose_advertise(candidates: &[IpAddr]) -> (IpAddr, String) {
    let usable: Vec<&IpAddr> = candidates
        .iter()
        .filter(|ip| !ip.is_loopback() && !ip.is_unspecified())
        .collect();
    if let Some(ip) = usable.iter().find(|ip| is_private(ip)) {
        return (
            **ip,
            format!(
                "{ip} is this machine's private address: other nodes join through it, and the swarm's ports (2377/tcp, 7946/tcp+udp, 4789/udp) need only be open on the private network"
            ),
        );
    }
    if let Some(ip) = usable.first() {
        return (
            **ip,
            format!(
                "{ip} is public (no private address found): firewall 2377/tcp, 7946/tcp+udp and 4789/udp to your nodes' addresses, or pass --advertise-addr with a private one"
            ),
        );
    }
    (
        IpAddr::from([127, 0, 0, 1]),
        "no network address found: advertising loopback, which serves this one machine only (no other node can join)".to_owned(),
    )
}

/// What part an engine has in a swarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SwarmRole {
    Manager,
    Worker,
    /// Not in a swarm: the engine's swarm state (`inactive`, `pending`,
    /// `error`, `locked`), or none reported.
    NotInSwarm(String),
}

impl SwarmRole {
    /// The role `docker info`'s swarm part describes.
    pub fn of(swarm: &bollard::models::SwarmInfo) -> Self {
        if swarm.control_available == Some(true) {
            return Self::Manager;
        }
        match swarm.local_node_state.map(|s| s.to_string()) {
            Some(s) if s == "active" => Self::Worker,
            Some(s) if !s.is_empty() => Self::NotInSwarm(s),
            _ => Self::NotInSwarm("no swarm".to_owned()),
        }
    }
}

impl Engine {
    /// This engine's part in a swarm.
    pub async fn swarm_role(&self) -> Result<SwarmRole, DeployError> {
        let info = self
            .docker
            .info()
            .await
            .map_err(DeployError::engine("docker info"))?;
        Ok(SwarmRole::of(&info.swarm.unwrap_or_default()))
    }

    /// Fails unless this engine is a swarm manager.
    pub async fn require_manager(&self) -> Result<(), DeployError> {
        let state = match self.swarm_role().await? {
            SwarmRole::Manager => return Ok(()),
            SwarmRole::Worker => "a worker".to_owned(),
            SwarmRole::NotInSwarm(s) => format!("swarm state {s}"),
        };
        Err(DeployError::NotManager { state })
    }

    /// Makes this engine a swarm manager unless it is one.
    pub async fn init_swarm(&self, advertise: IpAddr) -> Result<Initialised, DeployError> {
        match self.swarm_role().await? {
            SwarmRole::Manager => return Ok(Initialised::Already),
            SwarmRole::Worker => {
                return Err(DeployError::NotManager {
                    state: "a worker of another swarm: promote it from a manager, or run init on a manager"
                        .to_owned(),
                });
            }
            SwarmRole::NotInSwarm(_) => {}
        }
        let request = SwarmInitRequest {
            listen_addr: Some("0.0.0.0:2377".to_owned()),
            advertise_addr: Some(advertise.to_string()),
            ..Default::default()
        };
        self.docker
            .init_swarm(request)
            .await
            .map_err(DeployError::engine("docker swarm init"))?;
        Ok(Initialised::New { addr: advertise })
    }

    /// The join tokens and this manager's address.
    pub async fn join_tokens(&self) -> Result<JoinTokens, DeployError> {
        self.require_manager().await?;
        let swarm = self
            .docker
            .inspect_swarm()
            .await
            .map_err(DeployError::engine("docker swarm inspect"))?;
        let tokens = swarm.join_tokens.unwrap_or_default();
        let info = self
            .docker
            .info()
            .await
            .map_err(DeployError::engine("docker info"))?;
        let addr = info
            .swarm
            .and_then(|s| {
                let me = s.node_addr.clone()?;
                let managers = s.remote_managers.unwrap_or_default();
                managers
                    .iter()
                    .find_map(|m| m.addr.clone().filter(|a| a.starts_with(&format!("{me}:"))))
                    .or(Some(format!("{me}:2377")))
            })
            .unwrap_or_default();
        Ok(JoinTokens {
            worker: tokens.worker.unwrap_or_default(),
            manager: tokens.manager.unwrap_or_default(),
            addr,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_inactive_engine_is_not_called_a_worker() {
        use bollard::models::{LocalNodeState, SwarmInfo};
        let info = |state, control| SwarmInfo {
            local_node_state: state,
            control_available: control,
            ..Default::default()
        };
        assert_eq!(
            SwarmRole::of(&info(Some(LocalNodeState::INACTIVE), Some(false))),
            SwarmRole::NotInSwarm("inactive".into())
        );
        assert_eq!(
            SwarmRole::of(&info(Some(LocalNodeState::ACTIVE), Some(false))),
            SwarmRole::Worker
        );
        assert_eq!(
            SwarmRole::of(&info(Some(LocalNodeState::ACTIVE), Some(true))),
            SwarmRole::Manager
        );
        assert_eq!(
            SwarmRole::of(&info(None, None)),
            SwarmRole::NotInSwarm("no swarm".into())
        );
    }

    #[test]
    fn a_private_address_is_preferred_and_explained() {
        let ips: Vec<IpAddr> = ["127.0.0.1", "203.0.113.7", "10.0.0.5"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        let (ip, why) = choose_advertise(&ips);
        assert_eq!(ip.to_string(), "10.0.0.5");
        assert!(why.contains("private"), "{why}");
        let (ip, why) = choose_advertise(&ips[..2]);
        assert_eq!(ip.to_string(), "203.0.113.7");
        assert!(why.contains("firewall"), "{why}");
        let (ip, why) = choose_advertise(&ips[..1]);
        assert!(ip.is_loopback());
        assert!(why.contains("one machine"), "{why}");
        let cgnat: IpAddr = "100.64.1.2".parse().unwrap();
        assert!(is_private(&cgnat));
    }
}
