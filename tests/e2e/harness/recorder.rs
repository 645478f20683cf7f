//! A raw backend that records every byte it receives and reads requests
//! the way a naive server does (`Content-Length` first, then chunked), so a
//! test sees exactly what got past the proxy: a smuggled request shows up
//! as a head the proxy never wrote (no `x-forwarded-for`).

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// See the module docs.
pub struct Recorder {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<u8>>>,
    heads: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    /// Answers every request with `200 ok`.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let heads = Arc::new(Mutex::new(Vec::new()));
        let (r, h) = (received.clone(), heads.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(record(stream, r.clone(), h.clone()));
            }
        });
        Self {
            addr,
            received,
            heads,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every byte received, on all connections, as text.
    pub async fn bytes(&self) -> String {
        String::from_utf8_lossy(&self.received.lock().await).into_owned()
    }

    /// The request heads as this backend framed them, lower-cased.
    pub async fn heads(&self) -> Vec<String> {
        self.heads.lock().await.clone()
    }

    /// Asserts that every head received was written by the proxy: one
    /// request line, `x-forwarded-for` present, no conflicting framing.
    pub async fn assert_only_proxied(&self) {
        for head in self.heads().await {
            assert!(
                head.contains("\r\nx-forwarded-for: "),
                "a head the proxy did not write reached the backend:\n{head}"
            );
            let framings = ["\r\ncontent-length:", "\r\ntransfer-encoding:"]
                .iter()
                .filter(|f| head.contains(*f))
                .count();
            assert!(framings <= 1, "two framings reached the backend:\n{head}");
        }
    }
}

async fn record(
    mut stream: TcpStream,
    received: Arc<Mutex<Vec<u8>>>,
    heads: Arc<Mutex<Vec<String>>>,
) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        // Serve every complete request buffered.
        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end + 4]).to_ascii_lowercase();
            let Some(body_len) = body_length(&head, &seen[end + 4..]) else {
                break; // the body is not all here yet
            };
            seen.drain(..end + 4 + body_len);
            heads.lock().await.push(head);
            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
            if stream.write_all(reply).await.is_err() {
                return;
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                received.lock().await.extend_from_slice(&buf[..n]);
                seen.extend_from_slice(&buf[..n]);
            }
        }
    }
}

/// The length of the body after `head` (in `rest`), once it is complete.
fn body_length(head: &str, rest: &[u8]) -> Option<usize> {
    let field = |name: &str| {
        head.split("\r\n")
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
    };
    if let Some(n) = field("content-length:").and_then(|v| v.parse::<usize>().ok()) {
        return (rest.len() >= n).then_some(n);
    }
    if field("transfer-encoding:").is_some_and(|v| v.contains("chunked")) {
        let mut at = 0;
        loop {
            let line_end = rest[at..].windows(2).position(|w| w == b"\r\n")? + at;
            let size_text = String::from_utf8_lossy(&rest[at..line_end]);
            let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
            at = line_end + 2;
            if size == 0 {
                let end = rest[at..].windows(2).position(|w| w == b"\r\n")? + at;
                return Some(end + 2);
            }
            at += size + 2;
            if at > rest.len() {
                return None;
            }
        }
    }
    Some(0)
}

/// Sends raw bytes on a new connection and returns all the proxy wrote back
/// before closing (or within 3 s: end the last request with
/// `connection: close` to be quick).
pub async fn raw_exchange(addr: SocketAddr, bytes: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(bytes).await.unwrap();
    let mut reply = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), stream.read_to_end(&mut reply)).await;
    String::from_utf8_lossy(&reply).into_owned()
}

/// The status codes of every response in `reply`, in order.
pub fn statuses(reply: &str) -> Vec<u16> {
    reply
        .match_indices("HTTP/1.1 ")
        .filter_map(|(i, _)| reply.get(i + 9..i + 12)?.parse().ok())
        .collect()
}

/// How long until the proxy closes `stream` (reading and dropping whatever
/// it sends first), or `None` if it is still open after `limit`.
pub async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Option<Duration> {
    let start = std::time::Instant::now();
    let deadline = tokio::time::Instant::now() + limit;
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Ok(Ok(0) | Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => {}
            Err(_) => return None,
        }
    }
}

/// Reads from `conn` until a whole request head has arrived.
pub async fn read_head(conn: &mut TcpStream) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = conn.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed before a whole head");
        head.extend_from_slice(&buf[..n]);
    }
}
