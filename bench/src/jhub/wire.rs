//! What JupyterLab and jupyter_server say to each other, as the jhub
//! scenario's users and backend say it: Jupyter messages in websocket text
//! frames (jupyter_server's JSON protocol on `/api/kernels/ID/channels`),
//! terminado's JSON arrays on a terminal's websocket, the REST bodies
//! JupyterLab polls, and the static assets of its first load.

use serde::Deserialize;
use serde_json::json;

/// The assets of JupyterLab's first load, in bytes: the page itself, then
/// its scripts and styles; 70 requests, 5.0 MB in all (bench README).
pub(crate) fn asset_sizes() -> Vec<usize> {
    let mut sizes = vec![20 * 1024];
    sizes.extend(std::iter::repeat_n(700 * 1024, 4));
    sizes.extend(std::iter::repeat_n(80 * 1024, 15));
    sizes.extend(std::iter::repeat_n(20 * 1024, 50));
    sizes
}

/// The path of asset `i` under a user's prefix (`lab` is the page).
pub(crate) fn asset_path(i: usize) -> String {
    if i == 0 {
        "lab".to_owned()
    } else {
        format!("static/lab/{i}.js")
    }
}

/// The REST endpoints JupyterLab polls, under `/user/NAME/`.
pub(crate) const POLLED: [&str; 4] = [
    "api/kernels",
    "api/sessions",
    "api/terminals",
    "api/contents?content=1",
];

/// The kernel every simulated user has open.
pub(crate) const KERNEL_ID: &str = "5f6ad9c2-7a5b-4c47-9a53-6a1e0f3b2b11";

/// A REST body for `endpoint` (one of [`POLLED`]), shaped as
/// jupyter_server's.
pub(crate) fn rest_body(endpoint: &str) -> String {
    let kernel = json!({
        "id": KERNEL_ID,
        "name": "python3",
        "last_activity": "2026-12-06T06:00:00.000000Z",
        "execution_state": "idle",
        "connections": 1,
    });
    let value = match endpoint {
        "api/kernels" => json!([kernel]),
        "api/sessions" => json!([{
            "id": "0d3b1c1e-5d1e-4b7e-8d0e-2f3c1b0a9e88",
            "path": "Untitled.ipynb",
            "name": "Untitled.ipynb",
            "type": "notebook",
            "kernel": kernel,
            "notebook": {"path": "Untitled.ipynb", "name": "Untitled.ipynb"},
        }]),
        "api/terminals" => json!([{"name": "1", "last_activity": "2026-12-06T06:00:00Z"}]),
        _ => {
            let entry = |n: usize| {
                json!({
                    "name": format!("notebook-{n}.ipynb"),
                    "path": format!("notebook-{n}.ipynb"),
                    "type": "notebook",
                    "last_modified": "2026-12-06T06:00:00Z",
                    "created": "2026-12-06T06:00:00Z",
                    "size": 4096 + n,
                    "writable": true,
                    "mimetype": null,
                    "format": null,
                    "content": null,
                })
            };
            json!({
                "name": "", "path": "", "type": "directory", "writable": true,
                "format": "json", "mimetype": null,
                "last_modified": "2026-12-06T06:00:00Z",
                "created": "2026-12-06T06:00:00Z",
                "content": (0..8).map(entry).collect::<Vec<_>>(),
            })
        }
    };
    value.to_string()
}

/// An `execute_request` on the shell channel, as JupyterLab sends one.
pub(crate) fn execute_request(msg_id: &str, session: &str) -> String {
    json!({
        "header": {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "username": "",
            "session": session,
            "date": "2026-12-06T06:00:00.000Z",
            "version": "5.3",
        },
        "parent_header": {},
        "metadata": {"deletedCells": [], "recordTiming": false, "cellId": msg_id},
        "content": {
            "code": "print(sum(range(10)))",
            "silent": false,
            "store_history": true,
            "user_expressions": {},
            "allow_stdin": true,
            "stop_on_error": true,
        },
        "buffers": [],
        "channel": "shell",
    })
    .to_string()
}

#[derive(Deserialize)]
struct Header {
    #[serde(default)]
    msg_id: String,
    #[serde(default)]
    msg_type: String,
}

#[derive(Deserialize)]
struct Envelope {
    header: Header,
    #[serde(default)]
    parent_header: Option<Header>,
}

/// The request a message answers and its type: `(msg_id, msg_type)` of the
/// message itself and the parent's `msg_id`.
pub(crate) struct Seen {
    pub(crate) msg_id: String,
    pub(crate) msg_type: String,
    pub(crate) parent: String,
}

pub(crate) fn read(text: &str) -> Option<Seen> {
    let e: Envelope = serde_json::from_str(text).ok()?;
    Some(Seen {
        msg_id: e.header.msg_id,
        msg_type: e.header.msg_type,
        parent: e.parent_header.map(|h| h.msg_id).unwrap_or_default(),
    })
}

/// What a kernel answers an execute request with, in order, as
/// jupyter_server relays it: busy, the input, the output, idle, the reply.
pub(crate) fn execute_replies(request: &Seen, count: u64) -> Vec<String> {
    let message = |n: usize, channel: &str, msg_type: &str, content: serde_json::Value| {
        json!({
            "header": {
                "msg_id": format!("{}-r{n}", request.msg_id),
                "msg_type": msg_type,
                "username": "",
                "session": "kernel",
                "date": "2026-12-06T06:00:00.000Z",
                "version": "5.3",
            },
            "parent_header": {"msg_id": request.msg_id, "msg_type": request.msg_type},
            "metadata": {},
            "content": content,
            "buffers": [],
            "channel": channel,
            "msg_id": format!("{}-r{n}", request.msg_id),
            "msg_type": msg_type,
        })
        .to_string()
    };
    vec![
        message(0, "iopub", "status", json!({"execution_state": "busy"})),
        message(
            1,
            "iopub",
            "execute_input",
            json!({"code": "print(sum(range(10)))", "execution_count": count}),
        ),
        message(
            2,
            "iopub",
            "stream",
            json!({"name": "stdout", "text": "45\n"}),
        ),
        message(3, "iopub", "status", json!({"execution_state": "idle"})),
        message(
            4,
            "shell",
            "execute_reply",
            json!({"status": "ok", "execution_count": count, "user_expressions": {}}),
        ),
    ]
}

/// What terminado sends when a terminal's websocket opens.
pub(crate) const TERMINAL_SETUP: &str = r#"["setup", {}]"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_load_is_seventy_requests_and_five_megabytes() {
        let sizes = asset_sizes();
        assert_eq!(sizes.len(), 70);
        let total: usize = sizes.iter().sum();
        assert!((5_000_000..5_300_000).contains(&total), "{total}");
    }

    #[test]
    fn a_reply_stream_answers_its_request_and_ends_with_the_reply() {
        let req = read(&execute_request("u1-7", "s")).expect("parses");
        assert_eq!(req.msg_type, "execute_request");
        let replies = execute_replies(&req, 7);
        assert_eq!(replies.len(), 5);
        for r in &replies {
            assert_eq!(read(r).expect("parses").parent, "u1-7");
        }
        let last = read(replies.last().expect("five")).expect("parses");
        assert_eq!(last.msg_type, "execute_reply");
        assert!(read("not json").is_none());
    }

    #[test]
    fn every_polled_body_is_json() {
        for p in POLLED {
            serde_json::from_str::<serde_json::Value>(&rest_body(p)).expect(p);
        }
    }
}
