//! `DOCKER_HOST`, read once: the engine swarm discovery and `deploy` talk
//! to. The libraries take the client this makes (and set their own
//! request timeouts); they never read the environment.

use std::time::Duration;

use anyhow::Context as _;
use bollard::Docker;

/// The default engine socket.
const DEFAULT_SOCKET: &str = "unix:///var/run/docker.sock";

/// Where the engine is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DockerHost {
    /// A unix socket (`unix:///path`, or a bare path).
    Unix(String),
    /// A TCP endpoint (`tcp://host:port`, `http://host:port`).
    Tcp {
        url: String,
        /// The machine's name or address, as written.
        machine: String,
    },
}

impl DockerHost {
    /// `DOCKER_HOST` from the environment; unset or empty: the default
    /// socket.
    pub(crate) fn from_env() -> anyhow::Result<Self> {
        let value = std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty());
        Self::parse(value.as_deref())
    }

    /// Reads a `DOCKER_HOST` value.
    pub(crate) fn parse(value: Option<&str>) -> anyhow::Result<Self> {
        let Some(value) = value else {
            return Ok(Self::Unix(DEFAULT_SOCKET.to_owned()));
        };
        if value.starts_with("unix://") || value.starts_with('/') {
            return Ok(Self::Unix(value.to_owned()));
        }
        let rest = ["tcp://", "http://"]
            .iter()
            .find_map(|scheme| value.strip_prefix(scheme))
            .with_context(|| {
                format!("DOCKER_HOST={value}: hubgate talks to unix:// and tcp:// engines")
            })?;
        let authority = rest.split('/').next().unwrap_or_default();
        let machine = match authority.strip_prefix('[') {
            Some(v6) => v6.split(']').next().unwrap_or_default(),
            None => authority.split(':').next().unwrap_or_default(),
        };
        anyhow::ensure!(!machine.is_empty(), "DOCKER_HOST={value} names no machine");
        Ok(Self::Tcp {
            url: value.to_owned(),
            machine: machine.to_owned(),
        })
    }

    /// The engine's address, as given.
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Unix(path) => path,
            Self::Tcp { url, .. } => url,
        }
    }

    /// The machine a TCP engine runs on; `None` for a socket on this one.
    pub(crate) fn machine(&self) -> Option<&str> {
        match self {
            Self::Unix(_) => None,
            Self::Tcp { machine, .. } => Some(machine),
        }
    }

    /// A client for the engine (a unix socket must exist; no request is
    /// made yet); callers set their own timeout and negotiate the API
    /// version.
    pub(crate) fn connect(&self) -> Result<Docker, bollard::errors::Error> {
        let version = bollard::API_DEFAULT_VERSION;
        let timeout = Duration::from_secs(60).as_secs();
        match self {
            Self::Unix(path) => Docker::connect_with_unix(path, timeout, version),
            Self::Tcp { url, .. } => Docker::connect_with_http(url, timeout, version),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_form_once() {
        let default = DockerHost::parse(None).unwrap();
        assert_eq!(default.name(), "unix:///var/run/docker.sock");
        assert_eq!(default.machine(), None);
        let path = DockerHost::parse(Some("/run/user/docker.sock")).unwrap();
        assert_eq!(path.machine(), None);
        let tcp = DockerHost::parse(Some("tcp://10.0.0.5:2375")).unwrap();
        assert_eq!(tcp.machine(), Some("10.0.0.5"));
        assert_eq!(tcp.name(), "tcp://10.0.0.5:2375");
        let v6 = DockerHost::parse(Some("tcp://[fd00::5]:2375")).unwrap();
        assert_eq!(v6.machine(), Some("fd00::5"));
        for bad in ["ssh://me@host", "npipe:////./pipe/docker", "tcp://:2375"] {
            let e = DockerHost::parse(Some(bad)).unwrap_err().to_string();
            assert!(e.contains(bad), "{e}");
        }
    }
}
