//! hubgate's deployment companion: the whole JupyterHub-on-Swarm
//! deployment from one declarative file.
//!
//! A reconciler in three parts, one way:
//! - [`file`]: the deployment file (`deploy.toml`), parsed and checked;
//! - [`desired`] and [`spec`]: the objects the file wants (network, Docker
//!   configs and secrets, the hub and hubgate services), pure values;
//! - [`diff`]: desired against [`diff::Observed`], a [`diff::Plan`] of
//!   steps, pure and unit-tested;
//! - [`engine`]: what touches Docker (bollard): reading the observed state,
//!   running a plan, waiting for convergence, swarm init and join tokens,
//!   status, destroy;
//! - [`volumes`]: which of a deployment's per-node volumes a node keeps
//!   (run on every node by a one-off job).
//!
//! The library reads no file and no environment variable: the binary
//! reads the deployment file and the files it names and passes their bytes
//! in ([`desired::Inputs`]).

pub mod desired;
pub mod diff;
pub mod engine;
mod error;
pub mod file;
pub mod spec;
pub mod volumes;

pub use error::DeployError;
