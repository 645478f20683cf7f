//! The guarded sockets: an HTTP/1.1 server on a unix socket that judges
//! every request (each one on a kept-alive connection, not only the
//! first), refuses what its policy does not allow with a 403 naming the
//! rule, and forwards the rest to the engine's socket, one upstream
//! connection per call, streaming answers that need no filter.

use std::convert::Infallible;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::request::Parts;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::{UnixListener, UnixStream};

use crate::json::parse_strict;
use crate::policy::{Filter, Owned, Policy, Verdict};
use crate::redact::{container_service, node_states, redact_env};
use crate::target;

/// The largest request body the guard reads (service specs are a few KiB).
pub const MAX_BODY: usize = 1 << 20;
/// The largest answer it filters (every service of a hub of 10,000 users).
const MAX_FILTERED: usize = 256 << 20;

type Body = UnsyncBoxBody<Bytes, hyper::Error>;

/// One guarded socket's judge and the engine it forwards to.
struct Guard {
    policy: Policy,
    upstream: PathBuf,
}

/// Serves `listener` under `policy`, forwarding to the engine's socket at
/// `upstream`, until `shutdown` completes.
pub async fn serve(
    listener: UnixListener,
    upstream: PathBuf,
    policy: Policy,
    shutdown: impl Future<Output = ()>,
) {
    let guard = Arc::new(Guard { policy, upstream });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    tokio::spawn(connection(guard.clone(), stream));
                }
                Err(e) => {
                    tracing::warn!("docker-guard: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
        }
    }
}

async fn connection(guard: Arc<Guard>, stream: UnixStream) {
    let service = service_fn(move |req| {
        let guard = guard.clone();
        async move { Ok::<_, Infallible>(guard.handle(req).await) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(e) = served {
        tracing::debug!("docker-guard: a client connection ended: {e}");
    }
}

impl Guard {
    async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        let call = match target::parse(&parts.method, &parts.uri) {
            Ok(call) => call,
            Err(why) => return self.refuse(StatusCode::BAD_REQUEST, "request", &parts, why),
        };
        if let Err(why) = framing(&parts) {
            return self.refuse(StatusCode::BAD_REQUEST, "request", &parts, why);
        }
        let bytes = match Limited::new(body, MAX_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                let why = format!("a body over {MAX_BODY} bytes, or cut short ({e})");
                return self.refuse(StatusCode::PAYLOAD_TOO_LARGE, "request", &parts, why);
            }
        };
        let json = if bytes.is_empty() {
            None
        } else {
            match parse_strict(&bytes) {
                Ok(v) => Some(v),
                Err(why) => {
                    let why = format!("a body that is not plain JSON: {why}");
                    return self.refuse(StatusCode::BAD_REQUEST, "request", &parts, why);
                }
            }
        };
        match self.policy.judge(&call, json.as_ref()) {
            Verdict::Deny { rule, why } => self.refuse(StatusCode::FORBIDDEN, rule, &parts, why),
            Verdict::Allow(filter) => self.forward(&parts, json, filter).await,
            Verdict::AllowIfOwned(owned, filter) => match self.check_owned(&parts, &owned).await {
                Ok(()) => self.forward(&parts, json, filter).await,
                Err(refused) => refused,
            },
        }
    }

    /// Asks the engine about each object the call names or refers to: a
    /// refusal unless each is the policy's. When the engine does not find
    /// the call's subject, the call gets the engine's status.
    async fn check_owned(&self, parts: &Parts, owned: &[Owned]) -> Result<(), Response<Body>> {
        for o in owned {
            let target = format!("/{}", o.path);
            let answer = self.send(&Method::GET, &target, None).await;
            let engine = |why: String| self.refuse(StatusCode::BAD_GATEWAY, "engine", parts, why);
            let answer =
                answer.map_err(|why| engine(format!("the Docker engine did not answer: {why}")))?;
            let status = answer.status();
            let body = Limited::new(answer.into_body(), MAX_BODY)
                .collect()
                .await
                .map_err(|e| engine(format!("the engine's answer to {target}: {e}")))?
                .to_bytes();
            if !status.is_success() {
                let status = if o.subject {
                    status
                } else {
                    StatusCode::FORBIDDEN
                };
                let why = format!("{target}: the engine answered {status}");
                return Err(self.refuse(status, "owned", parts, why));
            }
            let inspect: Value = serde_json::from_slice(&body)
                .map_err(|e| engine(format!("the engine's answer to {target}: {e}")))?;
            if !o.holds(&inspect) {
                let why = format!("{target} is not the deployment's ({:?})", o.want);
                return Err(self.refuse(StatusCode::FORBIDDEN, "owned", parts, why));
            }
        }
        Ok(())
    }

    /// Sends the judged call (its JSON re-serialised: what was judged is
    /// what the engine reads) and filters the answer.
    async fn forward(&self, parts: &Parts, json: Option<Value>, filter: Filter) -> Response<Body> {
        let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
        let answer = match self.send(&parts.method, target, json).await {
            Ok(answer) => answer,
            Err(why) => {
                let why = format!("the Docker engine did not answer: {why}");
                return self.refuse(StatusCode::BAD_GATEWAY, "engine", parts, why);
            }
        };
        if filter == Filter::Pass || !answer.status().is_success() {
            return answer.map(BodyExt::boxed_unsync);
        }
        let (mut head, body) = answer.into_parts();
        let mut v: Value = match Limited::new(body, MAX_FILTERED).collect().await {
            Ok(c) => match serde_json::from_slice(&c.to_bytes()) {
                Ok(v) => v,
                Err(e) => {
                    let why = format!("the engine's answer is not JSON: {e}");
                    return self.refuse(StatusCode::BAD_GATEWAY, "engine", parts, why);
                }
            },
            Err(e) => {
                let why = format!("the engine's answer could not be read whole: {e}");
                return self.refuse(StatusCode::BAD_GATEWAY, "engine", parts, why);
            }
        };
        match filter {
            Filter::Pass => {}
            Filter::RedactEnv(keep) => {
                redact_env(&mut v, keep);
            }
            Filter::OwnContainer(service) => {
                if container_service(&v) != Some(service.as_str()) {
                    let why = format!("only containers of the service {service} may be inspected");
                    return self.refuse(StatusCode::FORBIDDEN, "own-container", parts, why);
                }
                redact_env(&mut v, &[]);
            }
            Filter::NodeStates => node_states(&mut v),
        }
        let bytes = Bytes::from(serde_json::to_vec(&v).unwrap_or_default());
        head.headers.remove(header::TRANSFER_ENCODING);
        head.headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
        Response::from_parts(head, full(bytes))
    }

    async fn send(
        &self,
        method: &Method,
        target: &str,
        json: Option<Value>,
    ) -> Result<Response<Incoming>, String> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(target)
            .header(header::HOST, "docker");
        let body = match json {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, "application/json");
                Bytes::from(serde_json::to_vec(&v).map_err(|e| e.to_string())?)
            }
            None => Bytes::new(),
        };
        let req = req.body(Full::new(body)).map_err(|e| e.to_string())?;
        let stream = UnixStream::connect(&self.upstream)
            .await
            .map_err(|e| format!("{}: {e}", self.upstream.display()))?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!("docker-guard: an engine connection ended: {e}");
            }
        });
        sender.send_request(req).await.map_err(|e| e.to_string())
    }

    /// A refusal, as the engine words its errors (`{"message": ...}`), and
    /// a log line.
    fn refuse(&self, status: StatusCode, rule: &str, parts: &Parts, why: String) -> Response<Body> {
        let policy = self.policy.name();
        tracing::warn!(
            policy,
            rule,
            method = %parts.method,
            target = %parts.uri,
            "docker-guard refused: {why}"
        );
        let message = format!("hubgate docker-guard ({policy} policy, rule {rule}): {why}");
        let body = serde_json::json!({ "message": message }).to_string();
        let mut answer = Response::new(full(Bytes::from(body)));
        *answer.status_mut() = status;
        answer.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        answer
    }
}

/// A body's framing must be plain: one Content-Length, and not both it and
/// Transfer-Encoding.
fn framing(parts: &Parts) -> Result<(), String> {
    let lengths = parts.headers.get_all(header::CONTENT_LENGTH).iter().count();
    if lengths > 1 {
        return Err("more than one Content-Length".to_owned());
    }
    if lengths == 1 && parts.headers.contains_key(header::TRANSFER_ENCODING) {
        return Err("both Content-Length and Transfer-Encoding".to_owned());
    }
    Ok(())
}

fn full(bytes: Bytes) -> Body {
    Full::new(bytes)
        .map_err(|never: Infallible| match never {})
        .boxed_unsync()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(headers: &[(&str, &str)]) -> Parts {
        let mut req = Request::builder()
            .method("POST")
            .uri("/v1.41/services/create");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        req.body(()).unwrap().into_parts().0
    }

    #[test]
    fn only_plain_framing_passes() {
        assert!(framing(&parts(&[("content-length", "2")])).is_ok());
        assert!(framing(&parts(&[("transfer-encoding", "chunked")])).is_ok());
        let twice = parts(&[("content-length", "2"), ("content-length", "2")]);
        assert!(framing(&twice).unwrap_err().contains("more than one"));
        let both = parts(&[("content-length", "2"), ("transfer-encoding", "chunked")]);
        assert!(framing(&both).unwrap_err().contains("both"));
    }
}
