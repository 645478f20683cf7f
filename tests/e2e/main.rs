//! End-to-end tests: real sockets on port 0, real HTTP and websocket clients
//! and backends, the proxy in process or as the `hubgate` binary, and real
//! JupyterHub. One test binary, so dependencies link once.

// Test code: a failed unwrap is a failed test, with its location.
#![allow(
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::result_large_err
)]

mod harness;

mod acme;
mod api;
mod attacks;
mod balancing;
mod binary;
mod discovery;
mod errors;
mod flags;
mod forwarding;
mod inline;
mod jupyterhub;
mod limits;
mod routing;
mod streaming;
mod tls;
mod upstream;
mod websocket;
