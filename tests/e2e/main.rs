//! End-to-end tests: real sockets on port 0, real HTTP and websocket clients
//! and backends, the proxy in process or as the `hubgate` binary, and real
//! JupyterHub. One test binary, so dependencies link once.

#![allow(unreachable_pub)]

mod harness;

mod api;
mod binary;
mod errors;
mod forwarding;
mod jupyterhub;
mod routing;
mod streaming;
mod tls;
mod websocket;
