//! Builder-style backends on port 0 that record what they receive.

use super::*;

// === backends ===

/// What a backend saw of one request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    pub uri: String,
    pub headers: HeaderMap,
    pub body_len: u64,
}

#[derive(Clone, Default)]
struct Behaviour {
    name: String,
    status: u16,
    delay: Option<Duration>,
    download: Option<u64>,
}

/// A backend under test's control.
pub struct Backend {
    pub addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    connections: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

/// Builds a [`Backend`].
pub struct BackendBuilder {
    behaviour: Behaviour,
    websocket: bool,
}

impl Backend {
    /// An HTTP backend answering `backend <name>` with status 200.
    pub fn http(name: &str) -> BackendBuilder {
        BackendBuilder {
            behaviour: Behaviour {
                name: name.into(),
                status: 200,
                ..Default::default()
            },
            websocket: false,
        }
    }

    /// A websocket backend that echoes every message.
    pub fn websocket_echo(name: &str) -> BackendBuilder {
        BackendBuilder {
            behaviour: Behaviour {
                name: name.into(),
                ..Default::default()
            },
            websocket: true,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub async fn seen(&self) -> Vec<Seen> {
        self.seen.lock().await.clone()
    }

    pub async fn last(&self) -> Seen {
        self.seen
            .lock()
            .await
            .last()
            .cloned()
            .expect("backend saw no request")
    }

    /// Stops accepting (existing connections die with the task).
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl BackendBuilder {
    pub fn status(mut self, status: u16) -> Self {
        self.behaviour.status = status;
        self
    }

    pub fn delay(mut self, d: Duration) -> Self {
        self.behaviour.delay = Some(d);
        self
    }

    /// Answer with a streamed body of `bytes` zero bytes.
    pub fn download(mut self, bytes: u64) -> Self {
        self.behaviour.download = Some(bytes);
        self
    }

    pub async fn start(self) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let (h, s, b, ws, c) = (
            hits.clone(),
            seen.clone(),
            Arc::new(self.behaviour),
            self.websocket,
            connections.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                c.fetch_add(1, Ordering::SeqCst);
                let (h, s, b) = (h.clone(), s.clone(), b.clone());
                tokio::spawn(async move {
                    if ws {
                        websocket_echo(stream, h, s).await;
                    } else {
                        serve_http(stream, h, s, b).await;
                    }
                });
            }
        });
        Backend {
            addr,
            hits,
            connections,
            seen,
            task,
        }
    }
}

async fn serve_http(
    stream: TcpStream,
    hits: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
    b: Arc<Behaviour>,
) {
    let service = service_fn(move |req: Request<Incoming>| {
        let (hits, seen, b) = (hits.clone(), seen.clone(), b.clone());
        async move {
            hits.fetch_add(1, Ordering::SeqCst);
            let (parts, mut body) = req.into_parts();
            let mut body_len = 0;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => body_len += f.data_ref().map_or(0, |d| d.len() as u64),
                    Err(_) => break,
                }
            }
            seen.lock().await.push(Seen {
                method: parts.method.clone(),
                uri: parts.uri.to_string(),
                headers: parts.headers.clone(),
                body_len,
            });
            if let Some(d) = b.delay {
                tokio::time::sleep(d).await;
            }
            let body: BoxBody = match b.download {
                Some(n) => stream_zeros(n),
                None => Full::new(Bytes::from(format!("backend {}", b.name)))
                    .map_err(|e| match e {})
                    .boxed(),
            };
            let mut resp = Response::new(body);
            *resp.status_mut() = StatusCode::from_u16(b.status).unwrap();
            Ok::<_, Infallible>(resp)
        }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::io::Error>;

/// A streamed body of `n` zero bytes in 64 KiB chunks.
pub fn stream_zeros(n: u64) -> BoxBody {
    let chunk = Bytes::from(vec![0u8; 64 * 1024]);
    let stream = futures_util::stream::unfold(n, move |left| {
        let chunk = chunk.clone();
        async move {
            (left > 0).then(|| {
                let len = left.min(chunk.len() as u64);
                (
                    Ok::<_, std::io::Error>(Frame::data(chunk.slice(..len as usize))),
                    left - len,
                )
            })
        }
    });
    BodyExt::boxed(StreamBody::new(stream))
}

async fn websocket_echo(stream: TcpStream, hits: Arc<AtomicUsize>, seen: Arc<Mutex<Vec<Seen>>>) {
    use tokio_tungstenite::tungstenite::handshake::server::{Request as WsReq, Response as WsResp};
    let mut request = None;
    let callback = |req: &WsReq, resp: WsResp| {
        request = Some(Seen {
            method: req.method().clone(),
            uri: req.uri().to_string(),
            headers: req.headers().clone(),
            body_len: 0,
        });
        Ok(resp)
    };
    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    hits.fetch_add(1, Ordering::SeqCst);
    if let Some(r) = request {
        seen.lock().await.push(r);
    }
    while let Some(Ok(msg)) = ws.next().await {
        if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
            return;
        }
    }
}
