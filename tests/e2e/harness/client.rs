//! HTTP/1.1, HTTP/2 and websocket clients for tests.

use super::*;

// === clients ===

/// The longest any client step here may take: a proxy that hangs fails
/// the test with a message instead of stalling the run.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// `fut`, or a panic naming `what` after [`CLIENT_TIMEOUT`].
pub async fn within<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(CLIENT_TIMEOUT, fut)
        .await
        .unwrap_or_else(|_| panic!("{what}: no answer in {CLIENT_TIMEOUT:?}"))
}

/// A new HTTP/1.1 client connection to `addr`, for bodies of type `B`.
pub async fn h1<B>(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<B>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends one request over a new HTTP/1.1 connection and collects the body.
pub async fn send(addr: SocketAddr, req: Request<Full<Bytes>>) -> Response<Bytes> {
    let what = format!("{} {}", req.method(), req.uri());
    within(&what, async {
        let resp = h1(addr).await.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
    })
    .await
}

/// `GET path` with a Host header; status and body text.
pub async fn get(addr: SocketAddr, path: &str) -> (StatusCode, String) {
    get_host(addr, path, "localhost").await
}

pub async fn get_host(addr: SocketAddr, path: &str, host: &str) -> (StatusCode, String) {
    let req = Request::get(path)
        .header("host", host)
        .body(Full::default())
        .unwrap();
    let resp = send(addr, req).await;
    (
        resp.status(),
        String::from_utf8_lossy(resp.body()).into_owned(),
    )
}

/// Sends over HTTP/2 on an existing I/O (h2c or TLS).
pub async fn send_h2<I>(io: I, req: Request<Full<Bytes>>) -> Response<Bytes>
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
            .await
            .unwrap();
    tokio::spawn(conn);
    let what = format!("HTTP/2 {} {}", req.method(), req.uri());
    within(&what, async {
        let resp = sender.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        Response::from_parts(parts, body.collect().await.unwrap().to_bytes())
    })
    .await
}

pub type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

/// Opens a websocket to `ws://addr{path}`.
pub async fn websocket(addr: SocketAddr, path: &str) -> Ws {
    let stream = within("connect", TcpStream::connect(addr)).await.unwrap();
    let url = format!("ws://{addr}{path}");
    let (ws, resp) = within(&url, tokio_tungstenite::client_async(url.clone(), stream))
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    ws
}

/// Sends `text` and expects it back.
pub async fn echo(ws: &mut Ws, text: &str) {
    use tokio_tungstenite::tungstenite::Message;
    ws.send(Message::text(text)).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next())
        .await
        .expect("echo timed out");
    assert_eq!(reply.unwrap().unwrap().into_text().unwrap().as_str(), text);
}
