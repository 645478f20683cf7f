//! hubgate's deployment companion: the whole JupyterHub-on-Swarm
//! deployment from one declarative file.
//!
//! A reconciler in three parts, one way:
//! - [`file`]: the deployment file (`deploy.toml`), parsed and checked;
//! - [`model`]: the objects a deployment is made of (network, Docker
//!   configs and secrets, services, volumes' labels and roles), plain
//!   values that compare field by field;
//! - [`desired`]: the objects the file wants, pure;
//! - [`observed`]: what the engine has of a deployment;
//! - [`diff`]: desired against observed, a [`diff::Plan`] of steps, pure
//!   and unit-tested;
//! - [`engine`]: what touches Docker (bollard): the model to bollard's
//!   specs and back, reading the observed state and planning
//!   ([`engine::Engine::plan`]), running a plan, waiting for convergence, swarm init and join tokens,
//!   status, destroy;
//! - [`metadata`]: the firewall rules that keep user servers from the
//!   cloud's metadata service (run on every node by a service);
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
pub mod metadata;
pub mod model;
pub mod observed;
pub mod volumes;

pub use error::DeployError;
