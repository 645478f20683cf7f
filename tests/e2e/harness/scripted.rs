//! A backend that answers every request with the same raw bytes, for
//! response framings and failures a well-behaved HTTP server never sends.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// Answers each request (read up to its blank line; requests carry no
/// body) with fixed bytes.
pub struct Scripted {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    closed: Arc<AtomicUsize>,
}

/// Builds a [`Scripted`] backend.
pub struct ScriptedBuilder {
    reply: Vec<u8>,
    close_after: Option<Duration>,
}

impl Scripted {
    /// A backend that writes `reply` for every request it reads.
    pub fn reply(reply: impl Into<Vec<u8>>) -> ScriptedBuilder {
        ScriptedBuilder {
            reply: reply.into(),
            close_after: None,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    /// Connections this backend has closed (or seen closed) so far.
    pub fn closed(&self) -> usize {
        self.closed.load(Ordering::SeqCst)
    }
}

impl ScriptedBuilder {
    /// Close each connection this long after the first reply, whatever
    /// the reply said about keep-alive.
    pub fn close_after(mut self, d: Duration) -> Self {
        self.close_after = Some(d);
        self
    }

    pub async fn start(self) -> Scripted {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let (count, ended) = (connections.clone(), closed.clone());
        let reply: Arc<[u8]> = self.reply.into();
        let close_after = self.close_after;
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                let (reply, ended) = (reply.clone(), ended.clone());
                tokio::spawn(async move {
                    answer(stream, reply, close_after).await;
                    ended.fetch_add(1, Ordering::SeqCst);
                });
            }
        });
        Scripted {
            addr,
            connections,
            closed,
        }
    }
}

async fn answer(mut stream: TcpStream, reply: Arc<[u8]>, close_after: Option<Duration>) {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        while let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            seen.drain(..end + 4);
            if stream.write_all(&reply).await.is_err() {
                return;
            }
            if let Some(d) = close_after {
                tokio::time::sleep(d).await;
                return;
            }
        }
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}
