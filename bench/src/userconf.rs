//! nginx's and haproxy's configuration for a JupyterHub's routes, generated
//! from the user table (the jhub scenario). JupyterHub tells hubgate and
//! configurable-http-proxy each route through the REST API; nginx and
//! haproxy cannot be told, so each gets every user's route in its file,
//! written the way that keeps upstream connections alive:
//!
//! - nginx: one `upstream` block per user server (keep-alive 1, what a
//!   user's REST polls reuse), a `map` from the user name in
//!   `/user/NAME/` to the block's name, and `proxy_pass http://$upstream`
//!   (a variable naming an `upstream` block keeps its keep-alive pool).
//!   Everything else goes to the hub. As JupyterHub's documented nginx
//!   configuration has it, responses are not buffered
//!   (`proxy_buffering off`: with buffering, nginx spools JupyterLab's
//!   large bundles to temporary files); unlike it, a request without
//!   `Upgrade` keeps its upstream connection (`''` rather than `close`).
//! - haproxy: one `backend` per user server (`http-reuse always`), chosen by
//!   `use_backend` through a map file from the user name (the third field
//!   of the path) to the backend's name. Everything else goes to the hub.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;

/// Every user's server, and the hub's.
#[derive(Debug)]
pub(crate) struct UserTable {
    pub(crate) hub: SocketAddr,
    /// `(name, server)`, the route being `/user/NAME/`.
    pub(crate) users: Vec<(String, SocketAddr)>,
}

/// The `http {}` body of nginx's configuration; `listen` is the server's
/// `listen` line.
pub(crate) fn nginx_http(table: &UserTable, listen: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "  map_hash_max_size {};\n  map_hash_bucket_size 64;",
        (table.users.len() * 2).max(2048)
    );
    let _ = writeln!(
        out,
        "  map $http_upgrade $connection_upgrade {{ default upgrade; '' ''; }}"
    );
    let _ = writeln!(
        out,
        "  upstream hub {{ server {}; keepalive 16; }}",
        table.hub
    );
    for (name, addr) in &table.users {
        let _ = writeln!(out, "  upstream s_{name} {{ server {addr}; keepalive 1; }}");
    }
    let _ = writeln!(out, "  map $jhub_user $jhub_upstream {{\n    default hub;");
    for (name, _) in &table.users {
        let _ = writeln!(out, "    {name} s_{name};");
    }
    let _ = writeln!(out, "  }}");
    out.push_str(&nginx_server(listen));
    out
}

/// The `server {}` block: users' paths to their upstream, the rest to the
/// hub.
fn nginx_server(listen: &str) -> String {
    let proxied = "proxy_http_version 1.1;\n      \
        proxy_set_header Upgrade $http_upgrade;\n      \
        proxy_set_header Connection $connection_upgrade;\n      \
        proxy_set_header Host $host;\n      \
        proxy_set_header X-Real-IP $remote_addr;\n      \
        proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;\n      \
        proxy_set_header X-Forwarded-Proto $scheme;\n      \
        proxy_read_timeout 3600s;\n      \
        proxy_buffering off;";
    format!(
        "  server {{\n    {listen}\n    \
         location ~ ^/user/(?<jhub_user>[^/]+)/ {{\n      proxy_pass http://$jhub_upstream;\n      {proxied}\n    }}\n    \
         location / {{\n      proxy_pass http://hub;\n      {proxied}\n    }}\n  }}"
    )
}

/// haproxy's configuration, and the map file it reads (written to `dir`).
pub(crate) fn haproxy(
    table: &UserTable,
    port: u16,
    threads: usize,
    dir: &Path,
) -> std::io::Result<String> {
    let mut map = String::new();
    for (name, _) in &table.users {
        let _ = writeln!(map, "{name} s_{name}");
    }
    let map_path = dir.join("users.map");
    std::fs::write(&map_path, map)?;
    let mut out = format!(
        "global\n  nbthread {threads}\n  maxconn 9900\n\
         defaults\n  mode http\n  timeout connect 5s\n  timeout client 3600s\n  \
         timeout server 3600s\n  timeout tunnel 3600s\n  option http-keep-alive\n  \
         http-reuse always\n  maxconn 9900\n\
         frontend fe\n  bind 127.0.0.1:{port}\n  \
         use_backend %[path,field(3,/),map({},hub)]\n  default_backend hub\n\
         backend hub\n  server hub {}\n",
        map_path.display(),
        table.hub
    );
    for (name, addr) in &table.users {
        let _ = writeln!(out, "backend s_{name}\n  server s {addr}");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> UserTable {
        UserTable {
            hub: ([127, 0, 1, 1], 80).into(),
            users: vec![("u1".into(), ([127, 0, 1, 2], 81).into())],
        }
    }

    #[test]
    fn nginx_routes_each_user_to_an_upstream_block_of_its_own() {
        let conf = nginx_http(&table(), "listen 127.0.0.1:8000;");
        assert!(conf.contains("upstream s_u1 { server 127.0.1.2:81; keepalive 1; }"));
        assert!(conf.contains("    u1 s_u1;"));
        assert!(conf.contains("proxy_pass http://$jhub_upstream;"));
    }

    #[test]
    fn haproxy_maps_the_user_name_to_a_backend_of_its_own() {
        let dir = std::env::temp_dir().join(format!("userconf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let conf = haproxy(&table(), 8000, 1, &dir).expect("written");
        assert!(conf.contains("backend s_u1\n  server s 127.0.1.2:81"));
        let map = std::fs::read_to_string(dir.join("users.map")).expect("map");
        assert_eq!(map, "u1 s_u1\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
