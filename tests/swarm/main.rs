//! Swarm tests: hubgate's production image (built from the Dockerfile) runs
//! as a service on this machine's real swarm, with test backends from a
//! locally built image. `scripts/swarm-setup` (run by `scripts/test`) makes
//! the swarm and the images; without them every test fails and says so.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout
)]

mod cluster;
mod day_two;
mod deployment;

mod deploy;
mod discovery;
mod failover;
mod guard;
mod hub_extras;
mod hub_failover;
mod hub_postgres;
mod jupyterhub;
mod multinode;
mod multinode_checks;
mod nodes;
mod oauth;
mod outage;
mod stack;
mod trial;
mod upgrade;
