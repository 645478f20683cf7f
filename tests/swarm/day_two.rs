//! A real JupyterHub deployed by `hubgate deploy apply` on this machine's
//! swarm, then the operator's second day: a kernel and a kept file, a hub
//! restart under a running server (a fresh login and the server's activity
//! reach the new hub at once), JupyterHub's limits and the culler set in
//! the file, hubgate's update, and a port another process holds (the
//! update rolls back while the old port keeps serving).

use std::time::{Duration, Instant};

use crate::cluster::{docker, docker_ok, free_port, unique};
use crate::deploy::service_spec;
use crate::deployment::{Deployment, User, deploy_images, inspect, local_file, port_gaps};

#[test]
fn a_real_jupyterhub_deployed_by_apply_serves_a_kernel_and_keeps_files() {
    let name = unique("hub").replace('-', "");
    let port = free_port();
    let storage = tempfile::tempdir().unwrap();
    let d = Deployment::new(&name, &local_file(&name, port, storage.path(), ""));
    // Servers report their activity to the hub every 5 s (not 300).
    let hub_image = format!("image = \"{}\"", deploy_images().hub);
    d.edit(
        &hub_image,
        &format!(
            "{hub_image}\nextra_config = 'c.Spawner.environment = {{\"JUPYTERHUB_ACTIVITY_INTERVAL\": \"5\"}}'"
        ),
    );
    let user = User::new(
        &format!("u{name}"),
        vec![format!("http://127.0.0.1:{port}")],
    );

    let started = Instant::now();
    let out = d.apply();
    eprintln!("{out}");
    assert!(out.contains("Ready in"), "{out}");
    user.step("login", &[]);
    user.step("spawn", &[]);
    user.step("kernel", &[]);
    let first_kernel = started.elapsed();
    eprintln!(
        "apply on a fresh swarm -> first kernel reply: {:.1} s",
        first_kernel.as_secs_f64()
    );

    // The user's server is a swarm service; their volume carries the
    // storage options in the mount (bind here, NFS in production).
    let server = format!("jupyter-{}", user.name);
    let spec = service_spec(&server);
    let mount = &spec["TaskTemplate"]["ContainerSpec"]["Mounts"][0];
    let source = mount["Source"].as_str().unwrap();
    // Named by the deployment, the storage (a hash of its options) and
    // the user: a storage that moves gets new volumes.
    assert!(
        source.starts_with(&format!("{name}-user-"))
            && source.ends_with(&format!("-{}", user.name)),
        "{source}"
    );
    assert_eq!(
        mount["VolumeOptions"]["DriverConfig"]["Options"]["o"],
        "bind"
    );
    // The deployment's jupyter_server configuration (a Docker config) and
    // the path that names its directory: what keeps the server from
    // calling a restarted hub at its old address.
    let container = &spec["TaskTemplate"]["ContainerSpec"];
    assert_eq!(
        container["Configs"][0]["File"]["Name"],
        "/etc/hubgate/jupyter/jupyter_server_config.py"
    );
    assert!(
        container["Env"]
            .to_string()
            .contains("JUPYTER_CONFIG_PATH=/etc/hubgate/jupyter"),
        "{container}"
    );
    let volume = inspect("volume", source);
    assert_eq!(
        volume["Options"]["device"],
        storage.path().join(&user.name).display().to_string()
    );
    eprintln!(
        "NFS: production puts type=nfs options in this same mount; this kernel has no NFS client, so the bind-type stand-in carries the files here"
    );

    // The user's token is a Docker secret of the server's, in no spec;
    // the guard's sockets, probed from the hub's and hubgate's positions,
    // refuse every attack and show neither it nor the cookie secret.
    let token = docker(&[
        "exec",
        &running_container(&server),
        "cat",
        "/run/secrets/hubgate-api-token",
    ]);
    assert!(token.len() >= 32, "the server's token file: {token:?}");
    let spec_text = docker(&["service", "inspect", &server]);
    assert!(
        !spec_text.contains(&token),
        "the token is in the server's spec"
    );
    assert!(!spec_text.contains("JUPYTERHUB_API_TOKEN"), "{spec_text}");
    let hub = running_container(&format!("{name}-hub"));
    let cookie = docker(&["exec", &hub, "cat", "/run/secrets/hub-cookie-secret"]);
    crate::guard::probe_deployment(&name, &[token, cookie]);

    // A file outlives the server.
    user.step("write", &[]);
    assert!(storage.path().join(&user.name).join("kept.txt").exists());
    // Stopped means its container has ended: a start right after is not
    // taken for the old server still answering at its address (the hub's
    // readiness check passed on it, then hubgate had no task to route to).
    user.step("stop", &[]);
    let left = containers_of(&server);
    assert!(
        left.is_empty(),
        "the hub said {server} stopped; still running: {left:?}"
    );
    user.step("unrouted", &[]);
    user.step("spawn", &[]);
    user.step("read", &[]);

    // The hub restarts (one edit of a hub setting) while the server runs:
    // a fresh login to the server works as soon as the hub answers, and
    // the server's activity reports reach the new hub (its address
    // changed; a resolver that kept the old one broke both for 10 min).
    d.edit(&hub_image, &format!("{hub_image}\nidle_timeout = \"1h\""));
    let out = d.apply();
    assert!(
        out.contains(&format!("updated service {name}-hub")),
        "{out}"
    );
    // The browser goes to the hub's public URL (`hosts`: localhost), where
    // the server sends it for the hub's OAuth: cookies are per host name.
    let browser = User::new(&user.name, vec![format!("http://localhost:{port}")]);
    browser.step("browse", &["--timeout", "60"]);
    user.step("activity", &["--timeout", "30"]);

    // Stopped: the service and its route go.
    user.step("stop", &[]);
    user.step("unrouted", &[]);
    assert!(!docker_ok(&["service", "inspect", &server]));

    // JupyterHub's limits and the culler, from the file: at most one spawn
    // at once, two servers running, two named servers; idle ones stopped
    // after 40 s. The edit changes the hub's settings and nothing else.
    d.edit(
        &hub_image,
        &format!(
            "{hub_image}\ncull = {{ every = \"10s\", concurrency = 5, admin_users = false }}\n\
             limits = {{ concurrent_spawns = 1, active_servers = 2, named_servers = 2 }}\n\
             login_message = \"Welcome to the <b>day-two</b> hub\""
        ),
    );
    d.edit("idle_timeout = \"1h\"", "idle_timeout = \"40s\"");
    // Two profiles, the second with an image of its own (the single-user
    // image under another name) and other limits.
    let images = deploy_images();
    let big_image = images
        .singleuser
        .replacen("hubgate-singleuser:", "hubgate-singleuser-big:", 1);
    docker(&["tag", &images.singleuser, &big_image]);
    d.edit(
        "[network]",
        &format!(
            "[[singleuser.profiles]]\nname = \"small\"\ndisplay_name = \"Small\"\ndefault = true\n\n\
             [[singleuser.profiles]]\nname = \"big\"\ndisplay_name = \"Big\"\n\
             description = \"More of everything\"\nimage = \"{big_image}\"\n\
             resources = {{ cpu_limit = 1.5, memory_limit = \"1536M\" }}\n\n\
             [[singleuser.profiles]]\nname = \"ghost\"\ndisplay_name = \"Ghost\"\n\
             image = \"local/hubgate-ghost:1\"\nallowed_users = [\"nobody\"]\n\n\
             [[singleuser.mounts]]\ntarget = \"/home/jovyan/work/datasets\"\n\
             path = \"datasets\"\n\n[[singleuser.mounts]]\n\
             target = \"/home/jovyan/work/shared\"\npath = \"shared\"\nread_only = false\n\n[network]"
        ),
    );
    // A dashboard service with its own token, the hub's logo and a login
    // template of the deployment's.
    crate::hub_extras::add_extras(&d, "idle_timeout = \"40s\"");
    let plan = d.plan();
    for setting in [
        "+ extras.services[0].url: \"http://",
        "+ extras.logo_file:",
        "+ idle_timeout: 40",
        "+ spawner.profiles[1].image:",
        "+ cull.every: 10",
        "+ cull.concurrency: 5",
        "+ cull.admin_users: False",
        "+ limits.concurrent_spawns: 1",
        "+ limits.active_servers: 2",
        "+ limits.named_servers: 2",
        "+ template_vars.announcement_login:",
    ] {
        assert!(plan.contains(setting), "{setting} not in\n{plan}");
    }
    let out = d.apply();
    // The image of a profile no node has is named, with the node.
    let node = docker(&["info", "--format", "{{.Name}}"]);
    assert!(
        out.contains(&format!("local/hubgate-ghost:1 is missing on {node}"))
            && out.contains(&format!("{big_image} is on the 1 node(s)")),
        "{out}"
    );
    // apply made the shared directories on the storage.
    std::fs::write(storage.path().join("datasets/readme.txt"), "shared data").unwrap();
    assert!(
        out.contains(&format!("updated service {name}-hub "))
            && !out.contains(&format!("updated service {name}-hubgate")),
        "{out}"
    );
    // The login page's message, from the file.
    let hubgate: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    crate::cluster::wait_for("the login page's message", Duration::from_secs(30), || {
        let page = crate::cluster::http_get(hubgate, "/hub/login", &[]).ok()?;
        page.body
            .contains("Welcome to the <b>day-two</b> hub")
            .then_some(())
    });
    crate::hub_extras::check_extras(&name, hubgate, &user.name);
    user.step("limits", &["--timeout", "120"]);
    assert!(d.apply().contains("No changes"));
    crate::hub_extras::plan_names_each_field(&d, &name);
    // The second profile: its image and limits, read back from the task.
    user.step("profile", &[]);
    let task = &service_spec(&server)["TaskTemplate"];
    assert_eq!(task["ContainerSpec"]["Image"], big_image.as_str());
    assert_eq!(task["Resources"]["Limits"]["NanoCPUs"], 1_500_000_000u64);
    assert_eq!(task["Resources"]["Limits"]["MemoryBytes"], 1536u64 << 20);
    // The shared data beside the user's own files: the dataset read-only,
    // the group space writable.
    let c = running_container(&server);
    let sh = |script: &str| docker(&["exec", &c, "sh", "-c", script]);
    assert_eq!(
        sh("cat /home/jovyan/work/datasets/readme.txt"),
        "shared data"
    );
    assert!(!docker_ok(&[
        "exec",
        &c,
        "touch",
        "/home/jovyan/work/datasets/x"
    ]));
    sh("echo mine > /home/jovyan/work/shared/from-server.txt");
    assert!(storage.path().join("shared/from-server.txt").exists());
    assert_eq!(
        sh("cat /home/jovyan/work/kept.txt"),
        "written before the restart"
    );
    eprintln!("shared data: the dataset read-only, the group space written, the user's files kept");
    user.step("stop", &[]);
    user.step("unrouted", &[]);

    // The proxy's routes, from inside its container.
    let status = d.ok(&["status", "FILE"]);
    eprintln!("{status}");
    assert!(
        status.contains(&format!("{name}-hub ")) && status.contains("running"),
        "{status}"
    );
    assert!(
        status.contains(&format!("http://{name}-hub:8081")),
        "{status}"
    );
    assert!(d.apply().contains("No changes"));

    // hubgate's update: stop-first on the one node, so its port is unserved
    // between the old task's exit and the new one's start.
    d.edit(
        &format!("http_port = {port}"),
        &format!("http_port = {port}\nmax_upload = \"2G\""),
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    let (gaps, _) = port_gaps(&[addr], || {
        let out = d.apply();
        assert!(
            out.contains("updated service") && out.contains("(args)"),
            "{out}"
        );
    });
    eprintln!(
        "hubgate update on one node: port unserved for {:.2} s",
        gaps[0].as_secs_f64()
    );

    // A port that cannot work: another process (not Docker's) holds it.
    // The new task fails, apply says why at once, the swarm rolls back,
    // and the old task serves throughout.
    let taken = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let busy = taken.local_addr().unwrap().port();
    d.edit(
        &format!("http_port = {port}"),
        &format!("http_port = {busy}"),
    );
    let plan = d.plan();
    assert!(
        plan.contains("new tasks start before the old ones stop"),
        "{plan}"
    );
    let (gaps, _) = port_gaps(&[addr], || {
        let started = Instant::now();
        let out = d.fails(&["apply", "FILE"]);
        eprintln!(
            "a port in use: apply failed after {:.1} s",
            started.elapsed().as_secs_f64()
        );
        assert!(
            out.contains(&format!("a task of {name}-hubgate failed")),
            "{out}"
        );
        assert!(out.contains("address already in use"), "{out}");
        assert!(
            out.contains("rolled it back to its last working spec"),
            "{out}"
        );
    });
    // The tasks' history, to tell a replaced old task from a slow one.
    let tasks = docker(&[
        "service",
        "ps",
        "--no-trunc",
        "--format",
        "{{.Name}} {{.DesiredState}} {{.CurrentState}} {{.Error}}",
        &format!("{name}-hubgate"),
    ]);
    assert_eq!(
        gaps[0],
        std::time::Duration::ZERO,
        "the old task kept serving; hubgate's tasks:\n{tasks}"
    );
    drop(taken);
    let spec = service_spec(&format!("{name}-hubgate"));
    assert_eq!(
        spec["EndpointSpec"]["Ports"][0]["PublishedPort"], port,
        "rolled back to the working port"
    );
    d.edit(
        &format!("http_port = {busy}"),
        &format!("http_port = {port}"),
    );
}

/// The ID of the running container of `service` on this engine.
pub(crate) fn running_container(service: &str) -> String {
    containers_of(service)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no container of {service}"))
}

/// The running containers of a service's tasks on this node.
fn containers_of(service: &str) -> Vec<String> {
    let label = format!("label=com.docker.swarm.service.name={service}");
    let ids = docker(&["ps", "-q", "--filter", &label]);
    ids.lines().map(str::to_owned).collect()
}
