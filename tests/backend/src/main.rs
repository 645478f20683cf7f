//! The backend the swarm tests run as swarm services, from a `FROM scratch`
//! image: answers every HTTP request with a JSON object naming its task
//! (`{"task": <hostname>, "service": $SERVICE, "path": <path>}`), echoes
//! websocket messages, and fails `GET /healthz` with 503 while the file
//! `/tmp/unhealthy` exists. Listens on `$PORT` (8080).

use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8080);
    let listener = TcpListener::bind(("0.0.0.0", port)).await?;
    let task = std::fs::read_to_string("/etc/hostname")
        .map_or_else(|_| "unknown".into(), |h| h.trim().to_owned());
    let service = std::env::var("SERVICE").unwrap_or_default();
    loop {
        let (stream, _) = listener.accept().await?;
        let (task, service) = (task.clone(), service.clone());
        tokio::spawn(async move {
            let _ = serve(stream, &task, &service).await;
        });
    }
}

async fn serve(mut stream: TcpStream, task: &str, service: &str) -> std::io::Result<()> {
    loop {
        // Peek until the head is complete, so a websocket handshake can be
        // handed to tungstenite with nothing consumed.
        let mut buf = vec![0u8; 16 * 1024];
        let n = loop {
            let n = tokio::time::timeout(Duration::from_secs(300), stream.peek(&mut buf))
                .await
                .map_err(|_| std::io::Error::other("idle"))??;
            if n == 0 {
                return Ok(());
            }
            if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") || n == buf.len() {
                break n;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        };
        let mut fields = [httparse::EMPTY_HEADER; 64];
        let mut req = httparse::Request::new(&mut fields);
        let Ok(httparse::Status::Complete(head_len)) = req.parse(&buf[..n]) else {
            return Ok(());
        };
        let path = req.path.unwrap_or("/").to_owned();
        let header = |name: &str| {
            req.headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case(name))
                .and_then(|h| std::str::from_utf8(h.value).ok())
        };
        if header("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket")) {
            let mut ws = tokio_tungstenite::accept_async(stream)
                .await
                .map_err(std::io::Error::other)?;
            while let Some(Ok(msg)) = ws.next().await {
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
            return Ok(());
        }
        let body_len: usize = header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut head = vec![0u8; head_len];
        stream.read_exact(&mut head).await?;
        let mut body = vec![0u8; body_len];
        stream.read_exact(&mut body).await?;
        let unhealthy = path == "/healthz" && std::path::Path::new("/tmp/unhealthy").exists();
        let status = if unhealthy {
            "503 Service Unavailable"
        } else {
            "200 OK"
        };
        let json =
            serde_json::json!({ "task": task, "service": service, "path": path }).to_string();
        let response = format!(
            "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{json}",
            json.len()
        );
        stream.write_all(response.as_bytes()).await?;
    }
}
