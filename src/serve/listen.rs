//! Binding `hubgate serve`'s sockets before anything serves (a taken port
//! fails the start) and the proxy workers, each a single-threaded runtime
//! on its own `SO_REUSEPORT` socket.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use hubgate_proxy::Proxy;
use hubgate_proxy::server::{self, Listener, ServeConfig, Shutdown};

use crate::cli::parse_ip;

/// Where a listener goes.
pub(super) enum Bind {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

pub(super) fn bind_std_unix(path: &Path) -> anyhow::Result<std::os::unix::net::UnixListener> {
    if std::fs::symlink_metadata(path)
        .is_ok_and(|m| std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()))
    {
        std::fs::remove_file(path)?;
    }
    std::os::unix::net::UnixListener::bind(path)
        .with_context(|| format!("cannot bind {}", path.display()))
}

/// `n` sockets on one address with `SO_REUSEPORT`, so the kernel spreads
/// connections over the workers (port 0 picks a port for all of them).
///
/// `SO_REUSEPORT` would also let a second hubgate join a port another one
/// serves, the kernel then splitting clients between two route tables; so
/// the port is first bound once without it, which fails if anyone listens.
pub(super) fn bind_reuseport(
    addr: SocketAddr,
    n: usize,
) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let socket = |reuse_port: bool| -> std::io::Result<socket2::Socket> {
        let socket = socket2::Socket::new(
            socket2::Domain::for_address(addr),
            socket2::Type::STREAM,
            None,
        )?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(reuse_port)?;
        Ok(socket)
    };
    if addr.port() != 0 {
        socket(false)?.bind(&addr.into()).with_context(|| {
            format!("cannot bind {addr}: another process (another hubgate?) listens on it")
        })?;
    }
    let mut addr = addr;
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let socket = socket(true)?;
        socket
            .bind(&addr.into())
            .with_context(|| format!("cannot bind {addr}"))?;
        socket.listen(4096)?;
        let listener: std::net::TcpListener = socket.into();
        addr = listener.local_addr()?;
        out.push(listener);
    }
    Ok(out)
}

pub(super) async fn bind(bind: &Bind) -> anyhow::Result<Listener> {
    match bind {
        Bind::Tcp(addr) => Listener::bind_tcp(*addr)
            .await
            .with_context(|| format!("cannot bind {addr}")),
        Bind::Unix(path) => Listener::from_std_unix(bind_std_unix(path)?).map_err(Into::into),
    }
}

pub(super) fn address(ip: &str, port: u16) -> SocketAddr {
    SocketAddr::new(parse_ip(ip).unwrap_or(IpAddr::from([0, 0, 0, 0])), port)
}

/// Raises the soft limit on open files to the hard limit, as nginx's
/// `worker_rlimit_nofile` would: every connection and upstream socket is a
/// file descriptor, and the usual soft default (1024) is far below
/// `--max-connections`.
pub(super) fn raise_fd_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(n) => tracing::debug!(limit = n, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}

pub(super) enum Listen {
    Tcp(std::net::TcpListener),
    Unix(std::os::unix::net::UnixListener),
}

pub(super) fn spawn_workers(
    listeners: Vec<Listen>,
    config: &ServeConfig,
    proxy: &Arc<Proxy>,
    shutdown: &Shutdown,
) -> anyhow::Result<Vec<std::thread::JoinHandle<()>>> {
    listeners
        .into_iter()
        .enumerate()
        .map(|(i, listen)| {
            // Each worker its own handle: see `Proxy`'s docs.
            let proxy = Arc::new(Proxy::clone(proxy));
            let (config, shutdown) = (config.clone(), shutdown.clone());
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("hubgate-worker-{i}"))
                .spawn(move || {
                    runtime.block_on(async move {
                        let listener = match listen {
                            Listen::Tcp(l) => Listener::from_std(l),
                            Listen::Unix(l) => Listener::from_std_unix(l),
                        };
                        match listener {
                            Ok(l) => server::serve(l, config, proxy, shutdown.clone()).await,
                            Err(e) => tracing::error!(error = %e, "worker cannot use its listener"),
                        }
                        shutdown.all_closed().await;
                    });
                })
                .context("cannot start a worker thread")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuseport_sockets_share_one_port() {
        let l = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3).unwrap();
        let port = l[0].local_addr().unwrap().port();
        assert!(l.iter().all(|s| s.local_addr().unwrap().port() == port));
    }

    #[test]
    fn a_port_another_process_serves_with_reuseport_is_refused() {
        let first = bind_reuseport("127.0.0.1:0".parse().unwrap(), 2).unwrap();
        let taken = first[0].local_addr().unwrap();
        let err = bind_reuseport(taken, 2).unwrap_err();
        assert!(format!("{err:#}").contains("another process"), "{err:#}");
        // Once it is gone the port is free again.
        drop(first);
        assert_eq!(bind_reuseport(taken, 2).unwrap().len(), 2);
    }
}
