//! The jhub scenario's backend: one process standing in for a hub and N
//! user servers, each user on a listener of its own (as each JupyterHub user
//! has a server of their own), spread over several loopback addresses. It
//! speaks jupyter_server's wire: the page and static assets of JupyterLab's
//! first load, the REST endpoints JupyterLab polls, a kernel's websocket
//! answering each execute request with a short message stream, and a
//! terminal's websocket that stays idle. One thread serves them all.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::wire;

/// Loopback addresses the user servers are spread over (127.0.1.1 up).
pub(crate) const ADDRESSES: u8 = 8;

/// The bodies every listener serves, made once.
struct Bodies {
    assets: Vec<Bytes>,
    rest: Vec<(&'static str, Bytes)>,
}

impl Bodies {
    fn new() -> Self {
        let sizes = wire::asset_sizes();
        let largest = sizes.iter().copied().max().unwrap_or(0);
        let blob = Bytes::from(vec![b'x'; largest]);
        Self {
            assets: sizes.iter().map(|&n| blob.slice(..n)).collect(),
            rest: wire::POLLED
                .iter()
                .map(|&p| (p, Bytes::from(wire::rest_body(p))))
                .collect(),
        }
    }

    /// The body for `rest` (a path under `/user/NAME/`, query included).
    fn find(&self, rest: &str) -> Option<(Bytes, &'static str)> {
        if let Some((_, body)) = self.rest.iter().find(|(p, _)| *p == rest) {
            return Some((body.clone(), "application/json"));
        }
        if rest == "lab" {
            return Some((self.assets[0].clone(), "text/html"));
        }
        let i: usize = rest
            .strip_prefix("static/lab/")?
            .strip_suffix(".js")?
            .parse()
            .ok()?;
        Some((self.assets.get(i)?.clone(), "application/javascript"))
    }
}

/// Binds the hub's listener and `users` user listeners; their addresses in
/// that order (the hub's first).
pub(crate) fn bind(users: usize) -> anyhow::Result<Vec<std::net::TcpListener>> {
    (0..=users)
        .map(|i| {
            let octet = 1 + (i % usize::from(ADDRESSES)) as u8;
            let l = std::net::TcpListener::bind((std::net::Ipv4Addr::new(127, 0, 1, octet), 0))?;
            l.set_nonblocking(true)?;
            Ok(l)
        })
        .collect()
}

/// Serves `listeners` on this thread until the process ends.
pub(crate) fn serve(listeners: Vec<std::net::TcpListener>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let bodies = Arc::new(Bodies::new());
    runtime.block_on(async move {
        for l in listeners {
            let listener = TcpListener::from_std(l)?;
            tokio::spawn(accept_loop(listener, bodies.clone()));
        }
        std::future::pending::<anyhow::Result<()>>().await
    })
}

async fn accept_loop(listener: TcpListener, bodies: Arc<Bodies>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of descriptors, say: wait, then go on.
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let bodies = bodies.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| handle(req, bodies.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades();
            let _ = conn.await;
        });
    }
}

/// The part of the path after `/user/NAME/`, query included.
fn under_user(uri: &http::Uri) -> &str {
    let pq = uri.path_and_query().map_or("/", |p| p.as_str());
    pq.strip_prefix("/user/")
        .and_then(|r| r.split_once('/'))
        .map_or("", |(_, rest)| rest)
}

async fn handle(
    mut req: Request<Incoming>,
    bodies: Arc<Bodies>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    if !req.uri().path().starts_with("/user/") {
        // The hub's own pages (and the proxies' readiness checks).
        return Ok(Response::new(Full::new(Bytes::from_static(b"hub\n"))));
    }
    let rest = under_user(req.uri()).to_owned();
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if upgrade {
        let kernel = rest.starts_with("api/kernels/") && rest.contains("/channels");
        let terminal = rest.starts_with("terminals/websocket/");
        if let (true, Some(key)) = (kernel || terminal, req.headers().get("sec-websocket-key")) {
            let accept = derive_accept_key(key.as_bytes());
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        None,
                    )
                    .await;
                    if kernel {
                        run_kernel(ws).await;
                    } else {
                        run_terminal(ws).await;
                    }
                }
            });
            return Ok(switching(&accept));
        }
    }
    Ok(match bodies.find(&rest) {
        Some((body, kind)) => {
            let mut resp = Response::new(Full::new(body));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
            resp
        }
        None => {
            let mut resp = Response::new(Full::new(Bytes::from_static(b"not found\n")));
            *resp.status_mut() = StatusCode::NOT_FOUND;
            resp
        }
    })
}

fn switching(accept: &str) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::default());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    if let Ok(v) = HeaderValue::from_str(accept) {
        h.insert("sec-websocket-accept", v);
    }
    resp
}

type Ws = WebSocketStream<TokioIo<hyper::upgrade::Upgraded>>;

/// Answers each execute request with the kernel's message stream.
async fn run_kernel(mut ws: Ws) {
    let mut count = 0;
    while let Some(Ok(msg)) = ws.next().await {
        let Message::Text(text) = msg else { continue };
        let Some(request) = wire::read(text.as_str()) else {
            continue;
        };
        if request.msg_type != "execute_request" {
            continue;
        }
        count += 1;
        for reply in wire::execute_replies(&request, count) {
            if ws.feed(Message::text(reply)).await.is_err() {
                return;
            }
        }
        if ws.flush().await.is_err() {
            return;
        }
    }
}

/// Says `setup`, then echoes what is typed as terminado's `stdout`.
async fn run_terminal(mut ws: Ws) {
    if ws.send(Message::text(wire::TERMINAL_SETUP)).await.is_err() {
        return;
    }
    while let Some(Ok(msg)) = ws.next().await {
        if let Message::Text(text) = msg {
            let echoed = text.as_str().replacen("\"stdin\"", "\"stdout\"", 1);
            if ws.send(Message::text(echoed)).await.is_err() {
                return;
            }
        }
    }
}
