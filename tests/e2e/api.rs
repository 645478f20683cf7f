//! The REST API: every status code CHP returns, auth, key normalisation,
//! stored data echoed back, `inactive_since`.

use http::{Method, StatusCode};
use serde_json::Value;

use crate::harness::{TestProxy, api_call};

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

#[tokio::test]
async fn routes_round_trip_with_chp_status_codes() {
    let p = TestProxy::start().await;
    let (s, body) = p.api(Method::GET, "/api/routes", "").await;
    assert_eq!((s, body.as_str()), (StatusCode::OK, "{}"));

    let data = r#"{"target": "http://127.0.0.1:8888", "jupyterhub": true, "user": "alice", "server_name": "", "n": 1.50}"#;
    let (s, body) = p.api(Method::POST, "/api/routes/user/alice/", data).await;
    assert_eq!((s, body.as_str()), (StatusCode::CREATED, ""));

    let (s, body) = p.api(Method::GET, "/api/routes", "").await;
    assert_eq!(s, StatusCode::OK);
    let routes = json(&body);
    let alice = &routes["/user/alice"];
    assert_eq!(alice["target"], "http://127.0.0.1:8888");
    assert_eq!(alice["jupyterhub"], true);
    assert_eq!(alice["server_name"], "");
    assert!(
        body.contains(r#""n":1.50"#),
        "numbers are echoed as sent: {body}"
    );
    let ts = alice["last_activity"].as_str().unwrap();
    assert_eq!(ts.len(), 24, "ISO 8601 with milliseconds: {ts}");
    assert!(ts.ends_with('Z'));

    let (s, body) = p.api(Method::GET, "/api/routes/user/alice", "").await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(json(&body)["user"], "alice");

    let (s, _) = p.api(Method::GET, "/api/routes/user/bob", "").await;
    assert_eq!(s, StatusCode::NOT_FOUND);

    let (s, body) = p.api(Method::DELETE, "/api/routes/user/alice", "").await;
    assert_eq!((s, body.as_str()), (StatusCode::NO_CONTENT, ""));
    let (s, body) = p.api(Method::DELETE, "/api/routes/user/alice", "").await;
    assert_eq!((s, body.as_str()), (StatusCode::NOT_FOUND, ""));
}

#[tokio::test]
async fn post_replaces_instead_of_merging() {
    let p = TestProxy::start().await;
    p.api(
        Method::POST,
        "/api/routes/a",
        r#"{"target":"http://127.0.0.1:1","extra":1}"#,
    )
    .await;
    p.api(
        Method::POST,
        "/api/routes/a",
        r#"{"target":"http://127.0.0.1:2"}"#,
    )
    .await;
    let (_, body) = p.api(Method::GET, "/api/routes/a", "").await;
    let v = json(&body);
    assert_eq!(v["target"], "http://127.0.0.1:2");
    assert!(v.get("extra").is_none());
}

#[tokio::test]
async fn bad_input_is_400_and_changes_nothing() {
    let p = TestProxy::start().await;
    p.add_route("/keep", "http://127.0.0.1:1").await;
    let cases = [
        ("", "Body not valid JSON"),
        ("{nope", "Body not valid JSON"),
        ("{}", "Must specify 'target' as string"),
        (r#"{"target": 5}"#, "Must specify 'target' as string"),
        (r#"{"target": "not a url"}"#, "Invalid target"),
    ];
    for (body, message) in cases {
        let (s, text) = p.api(Method::POST, "/api/routes/keep", body).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
        assert!(text.starts_with(message), "{body} -> {text}");
    }
    let (s, _) = p
        .api(
            Method::POST,
            "/api/routes/bad%zz",
            r#"{"target":"http://h:1"}"#,
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, body) = p.api(Method::GET, "/api/routes", "").await;
    assert_eq!(json(&body)["/keep"]["target"], "http://127.0.0.1:1");
}

#[tokio::test]
async fn an_oversized_body_is_413_and_changes_nothing() {
    let p = TestProxy::start().await;
    let padding = "x".repeat(2 << 20);
    let body = format!(r#"{{"target":"http://127.0.0.1:1","pad":"{padding}"}}"#);
    let (status, text) = p.api(Method::POST, "/api/routes/big", &body).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{text}");
    assert!(text.contains("larger than"), "{text}");
    let (status, _) = p.api(Method::GET, "/api/routes/big", "").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn keys_are_decoded_and_normalised() {
    let p = TestProxy::start().await;
    p.add_route("/user/%E7%A7%80/", "http://127.0.0.1:1").await;
    p.add_route("", "http://127.0.0.1:2").await;
    let (_, body) = p.api(Method::GET, "/api/routes", "").await;
    let v = json(&body);
    assert_eq!(v["/user/秀"]["target"], "http://127.0.0.1:1");
    assert_eq!(v["/"]["target"], "http://127.0.0.1:2");
    let (s, _) = p
        .api(Method::DELETE, "/api/routes/user/%E7%A7%80/", "")
        .await;
    assert_eq!(s, StatusCode::NO_CONTENT);
}

#[tokio::test]
async fn auth_and_unknown_paths_and_methods() {
    let p = TestProxy::start().await;
    let a = p.api_addr;
    assert_eq!(
        api_call(a, Method::GET, "/api/routes", "", None).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api_call(a, Method::GET, "/api/routes", "", Some("wrong"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api_call(a, Method::GET, "/api/routes", "", Some("test-token-x"))
            .await
            .0,
        StatusCode::FORBIDDEN
    );
    let (s, body) = api_call(
        a,
        Method::POST,
        "/api/routes/x",
        r#"{"target":"http://h:1"}"#,
        None,
    )
    .await;
    assert_eq!((s, body.as_str()), (StatusCode::FORBIDDEN, ""));
    assert!(
        p.routes.load().is_empty(),
        "a refused write changes nothing"
    );
    // The path is checked before the token.
    assert_eq!(
        api_call(a, Method::GET, "/api/", "", None).await.0,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        api_call(a, Method::GET, "/api/routesx", "", None).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, body) = p.api(Method::PUT, "/api/routes/x", "{}").await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "Method not supported")
    );
}

#[tokio::test]
async fn inactive_since_filters_strictly_earlier() {
    let p = TestProxy::start().await;
    let old = r#"{"target":"http://127.0.0.1:1","last_activity":"2020-01-01T00:00:00.000Z"}"#;
    p.routes
        .restore_api_routes(format!(r#"{{"/old":{old}}}"#).as_bytes())
        .await
        .unwrap();
    p.add_route("/new", "http://127.0.0.1:2").await;

    for q in [
        "inactive_since=2021-01-01T00:00:00.000Z",
        "inactiveSince=2021-01-01",
        "inactive_since=2020-01-01T00%3A00%3A00.001Z",
    ] {
        let (s, body) = p.api(Method::GET, &format!("/api/routes?{q}"), "").await;
        assert_eq!(s, StatusCode::OK);
        let v = json(&body);
        assert!(
            v.get("/old").is_some() && v.get("/new").is_none(),
            "{q}: {body}"
        );
    }
    let (_, body) = p
        .api(
            Method::GET,
            "/api/routes?inactive_since=2020-01-01T00:00:00.000Z",
            "",
        )
        .await;
    assert_eq!(body, "{}", "equal is not earlier");
    let (s, body) = p
        .api(Method::GET, "/api/routes?inactive_since=soon", "")
        .await;
    assert_eq!(
        (s, body.as_str()),
        (
            StatusCode::BAD_REQUEST,
            "Invalid datestamp 'soon' must be ISO8601."
        )
    );
}

#[tokio::test]
async fn host_routing_adds_host_to_data() {
    let p = TestProxy::with(Default::default(), true).await;
    p.add_route("/alice.hub.test/user/alice", "http://127.0.0.1:1")
        .await;
    let (_, body) = p.api(Method::GET, "/api/routes", "").await;
    assert_eq!(
        json(&body)["/alice.hub.test/user/alice"]["host"],
        "alice.hub.test"
    );
}

#[tokio::test]
async fn many_routes_through_the_api() {
    let p = TestProxy::start().await;
    for i in 0..500 {
        p.add_route(
            &format!("/user/u{i}"),
            &format!("http://127.0.0.1:{}", 1000 + i),
        )
        .await;
    }
    let (_, body) = p.api(Method::GET, "/api/routes", "").await;
    assert_eq!(json(&body).as_object().unwrap().len(), 500);
}
