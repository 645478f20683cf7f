//! The CHP REST API as a load: route loading, add/delete latency, churn.

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::{Context as _, bail};
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::targets::TOKEN;

/// A keep-alive connection to a proxy's REST API.
pub(crate) struct Client {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Client {
    pub(crate) async fn connect(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        Ok(Self {
            sender,
            host: addr.to_string(),
        })
    }

    /// One call; the status code.
    pub(crate) async fn call(
        &mut self,
        method: Method,
        path: &str,
        body: &str,
    ) -> anyhow::Result<u16> {
        self.sender.ready().await?;
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("host", &self.host)
            .header("authorization", format!("token {TOKEN}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(body.to_owned())))?;
        let resp = self.sender.send_request(req).await?;
        let status = resp.status().as_u16();
        resp.into_body().collect().await?;
        Ok(status)
    }

    pub(crate) async fn add(&mut self, path: &str, target: &str) -> anyhow::Result<()> {
        let body = format!(r#"{{"target":"{target}","jupyterhub":true}}"#);
        match self
            .call(Method::POST, &format!("/api/routes{path}"), &body)
            .await?
        {
            201 => Ok(()),
            s => bail!("POST {path} answered {s}"),
        }
    }

    pub(crate) async fn delete(&mut self, path: &str) -> anyhow::Result<()> {
        match self
            .call(Method::DELETE, &format!("/api/routes{path}"), "")
            .await?
        {
            204 => Ok(()),
            s => bail!("DELETE {path} answered {s}"),
        }
    }
}

/// Adds `/user/u0 .. /user/u<n-1>` over `parallel` connections.
pub(crate) async fn load_routes(
    api: SocketAddr,
    n: usize,
    target: &str,
    parallel: usize,
) -> anyhow::Result<()> {
    let tasks = (0..parallel).map(|p| {
        let target = target.to_owned();
        async move {
            let mut c = Client::connect(api).await?;
            for i in (p..n).step_by(parallel) {
                c.add(&format!("/user/u{i}"), &target).await?;
            }
            anyhow::Ok(())
        }
    });
    for r in futures_util::future::join_all(tasks).await {
        r.context("loading routes")?;
    }
    Ok(())
}

/// Latency of `n` adds followed by `n` deletes, sequential: (add p50, add
/// p99, delete p50, delete p99) in µs.
pub(crate) async fn add_delete_latency(
    api: SocketAddr,
    n: usize,
    target: &str,
) -> anyhow::Result<[f64; 4]> {
    let mut c = Client::connect(api).await?;
    let (mut adds, mut deletes) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let t = Instant::now();
        c.add(&format!("/bench/r{i}"), target).await?;
        adds.push(t.elapsed().as_secs_f64() * 1e6);
    }
    for i in 0..n {
        let t = Instant::now();
        c.delete(&format!("/bench/r{i}")).await?;
        deletes.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let q = |v: &mut Vec<f64>, q: f64| {
        v.sort_by(f64::total_cmp);
        v[((v.len() - 1) as f64 * q) as usize]
    };
    Ok([
        q(&mut adds, 0.5),
        q(&mut adds, 0.99),
        q(&mut deletes, 0.5),
        q(&mut deletes, 0.99),
    ])
}

/// Writes a routes file with `/user/u0 .. /user/u<n-1>` (hubgate's format).
pub(crate) fn routes_file(path: &std::path::Path, n: usize, target: &str) -> anyhow::Result<()> {
    let mut json = String::with_capacity(n * 100 + 2);
    json.push('{');
    for i in 0..n {
        if i > 0 {
            json.push(',');
        }
        json.push_str(&format!(
            r#""/user/u{i}":{{"target":"{target}","jupyterhub":true}}"#
        ));
    }
    json.push('}');
    std::fs::write(path, json)?;
    Ok(())
}
