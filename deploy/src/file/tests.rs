use super::*;

const PRODUCTION: &str = include_str!("../../../examples/production.toml");

fn error(text: &str) -> String {
    DeployFile::parse(text).unwrap_err().to_string()
}

#[test]
fn the_examples_parse() {
    let f = DeployFile::parse(PRODUCTION).unwrap();
    assert_eq!(f.public_url(), "https://hub.example.org/");
    assert_eq!(
        f.oauth_callback_url(),
        "https://hub.example.org/hub/oauth_callback"
    );
    assert_eq!(f.proxy.replicas, Replicas::Managers);
    DeployFile::parse(include_str!("../../../examples/local.toml")).unwrap();
}

#[test]
fn errors_name_the_line_and_the_field() {
    let e = error(&PRODUCTION.replace("idle_timeout = \"2h\"", "idle_timout = \"2h\""));
    assert!(
        e.starts_with("line 27") && e.contains("unknown field `idle_timout`"),
        "{e}"
    );

    let e = error(&PRODUCTION.replace(
        "hosts = [\"hub.example.org\"]",
        "hosts = [\"https://hub.example.org\"]",
    ));
    assert!(
        e.starts_with("line 18, field hosts:") && e.contains("not a host name"),
        "{e}"
    );

    let e = error(&PRODUCTION.replace("allowed_organizations = [\"example-org\"]", ""));
    assert!(
        e.contains("field auth.allowed_users") && e.contains("nobody could log in"),
        "{e}"
    );

    let e = error(&PRODUCTION.replace("# local = \"/srv/jupyterhub-users\"", "local = \"/x\""));
    assert!(
        e.contains("field storage:") && e.contains("exactly one"),
        "{e}"
    );

    let e = error(&PRODUCTION.replace("memory_limit = \"4G\"", "memory_limit = \"4X\""));
    assert!(
        e.starts_with("line 68") && e.contains("unknown unit"),
        "{e}"
    );

    let e = error(&PRODUCTION.replace("options = \"rw,", "options = \"addr=1.2.3.4,rw,"));
    assert!(e.contains("field storage.nfs.options"), "{e}");

    let e = error(&PRODUCTION.replace("replicas = \"managers\"", "replicas = 0"));
    assert!(e.contains("at least 1"), "{e}");

    let e = error(&PRODUCTION.replace("named_servers = 3", "named_servers = 0"));
    assert!(
        e.starts_with("line 40, field hub.limits.named_servers:") && e.contains("at least 1"),
        "{e}"
    );
    let e = error(&PRODUCTION.replace("every = \"10m\"", "every = \"0s\""));
    assert!(e.contains("field hub.cull.every: at least 1 s"), "{e}");
    let e = error(&PRODUCTION.replace("idle_timeout = \"2h\"", ""));
    assert!(
        e.contains("field hub.cull:") && e.contains("set it too"),
        "{e}"
    );
    let e = error(&PRODUCTION.replace("named_servers = 3", "named_servers = -1"));
    assert!(
        e.starts_with("line 40") && e.contains("invalid value"),
        "{e}"
    );

    let e = error(&PRODUCTION.replace("name = \"gpu\"", "name = \"GPU\""));
    assert!(
        e.starts_with("line 87, field singleuser.profiles[1].name:") && e.contains("lower case"),
        "{e}"
    );
    let e = error(&PRODUCTION.replace("name = \"gpu\"", "name = \"python\""));
    assert!(e.contains("\"python\" names two profiles"), "{e}");
    let e = error(&PRODUCTION.replace("allowed_groups = [", "default = true\nallowed_groups = ["));
    assert!(e.contains("more than one profile says default"), "{e}");
    let e = error(&PRODUCTION.replace("NVIDIA-GPU = 1", "NVIDIA-GPU = 0"));
    assert!(
        e.starts_with("line 95, field singleuser.profiles[1].generic_resources:")
            && e.contains("a count of 1 or more"),
        "{e}"
    );

    let e = error(&PRODUCTION.replace("path = \"shared\"", "path = \"../etc\""));
    assert!(
        e.contains("field singleuser.mounts[1].path:") && e.contains("a directory of the storage"),
        "{e}"
    );
    let e = error(&PRODUCTION.replace(
        "path = \"shared\"",
        "path = \"shared\"\nnfs = { server = \"x\", export = \"/y\" }",
    ));
    assert!(
        e.contains("field singleuser.mounts[1]: give exactly one"),
        "{e}"
    );
    let e = error(&PRODUCTION.replace("/home/jovyan/shared", "/home/jovyan/datasets"));
    assert!(e.contains("/home/jovyan/datasets is mounted twice"), "{e}");

    let e = error("name = \"x\"\n");
    assert!(e.contains("missing field"), "{e}");

    let e = error("hosts = [\n");
    assert!(e.starts_with("line "), "{e}");
}

#[test]
fn port_mistakes_are_refused_naming_the_field() {
    let local = include_str!("../../../examples/local.toml");
    let port = |p: &str| error(&local.replace("http_port = 8000", &format!("http_port = {p}")));
    for bad in ["0", "80000", "-1"] {
        let e = port(bad);
        assert!(
            e.contains("field proxy.http_port") && e.contains("a port number, 1-65535"),
            "{bad}: {e}"
        );
    }
    for (swarm, what) in [
        ("2377", "cluster management"),
        ("7946", "gossip"),
        ("4789", "VXLAN"),
    ] {
        let e = port(swarm);
        assert!(
            e.contains("field proxy.http_port") && e.contains(what),
            "{swarm}: {e}"
        );
    }
    let e = error(&PRODUCTION.replace("https_port = 443", "https_port = 2377"));
    assert!(e.contains("field proxy.https_port"), "{e}");
}

#[test]
fn a_database_url_is_postgresql_without_a_password() {
    let commented =
        "# database = { url = \"postgresql://jupyterhub@db.example.org:5432/jupyterhub\"";
    let with = |url: &str| PRODUCTION.replace(commented, &format!("database = {{ url = \"{url}\""));
    let f = DeployFile::parse(&with(
        "postgresql://jupyterhub@db.example.org:5432/jupyterhub",
    ))
    .unwrap();
    let db = f.hub.database.unwrap();
    assert_eq!(db.password_file.as_deref(), Some("hub-db-password"));
    for (url, said) in [
        (
            "postgresql://hub:pw@db/jupyterhub",
            "put it in hub.database.password_file",
        ),
        (
            "mysql://hub@db/jupyterhub",
            "a postgresql://USER@HOST/DB URL",
        ),
        (
            "postgres://hub@db/jupyterhub",
            "a postgresql://USER@HOST/DB URL",
        ),
        (
            "postgresql://hub@/jupyterhub",
            "name the database server's host",
        ),
        (
            "postgresql://hub@127.0.0.1/jupyterhub",
            "the hub's own container",
        ),
        (
            "postgresql://hub@localhost:5432/jupyterhub",
            "the hub's own container",
        ),
        ("postgresql://hub@db:5432/", "name the database"),
        ("postgresql://hub@db", "name the database"),
    ] {
        let e = error(&with(url));
        assert!(
            e.starts_with("line 53, field hub.database.url:") && e.contains(said),
            "{url}: {e}"
        );
    }
}

#[test]
fn a_generic_oauth_provider_comes_from_a_preset_or_its_urls() {
    let oauth = |auth: &str| {
        PRODUCTION
            .replace("kind = \"github\"", &format!("kind = \"oauth\"\n{auth}"))
            .replace("allowed_organizations = [\"example-org\"]", "")
    };
    let keycloak = oauth(
        "preset = \"keycloak\"\nissuer = \"https://id.example.org/realms/r/\"\nallowed_groups = [\"staff\"]",
    );
    let f = DeployFile::parse(&keycloak).unwrap();
    let p = f.auth.oauth_provider().unwrap();
    assert_eq!(
        p.token_url,
        "https://id.example.org/realms/r/protocol/openid-connect/token"
    );
    assert_eq!(p.username_claim, "preferred_username");
    assert_eq!(p.groups_claim.as_deref(), Some("groups"));
    // The file's own values win over the preset's.
    let own = keycloak.replace(
        "allowed_groups = [\"staff\"]",
        "username_claim = \"email\"\nallowed_groups = [\"staff\"]",
    );
    let p = DeployFile::parse(&own)
        .unwrap()
        .auth
        .oauth_provider()
        .unwrap();
    assert_eq!(p.username_claim, "email");

    for (auth, words) in [
        (
            "preset = \"okta\"\nallow_all = true",
            "field auth.preset: \"okta\": one of cilogon",
        ),
        (
            "preset = \"keycloak\"\nallow_all = true",
            "field auth.issuer: this preset needs",
        ),
        ("preset = \"google\"", "nobody could log in"),
        (
            "preset = \"google\"\nallowed_groups = [\"g\"]",
            "field auth.groups_claim: allowed_groups and admin_groups need",
        ),
        (
            "authorize_url = \"https://a/\"\nallow_all = true",
            "field auth.token_url: give it",
        ),
        (
            "authorize_url = \"ftp://a\"\ntoken_url = \"https://a\"\nuserdata_url = \"https://a\"\nallow_all = true",
            "field auth.authorize_url: \"ftp://a\" is not an http(s) URL",
        ),
    ] {
        let e = error(&oauth(auth));
        assert!(e.contains(words), "{auth}: {e}");
    }
}

#[test]
fn the_operations_fields_are_checked() {
    let e = error(&PRODUCTION.replace(
        "addresses = [\"169.254.169.254\"]",
        "addresses = [\"169.254.169.254/40\"]",
    ));
    assert!(
        e.contains("field singleuser.cloud_metadata.addresses:")
            && e.contains("not an IPv4 address or network"),
        "{e}"
    );
    let e = error(&PRODUCTION.replace("addresses = [\"169.254.169.254\"]", "addresses = []"));
    assert!(e.contains("or set block = false"), "{e}");
    let e = error(&PRODUCTION.replace("concurrency = 10", "concurrency = 0"));
    assert!(e.contains("field hub.cull.concurrency: at least 1"), "{e}");
    let service = "[[hub.services]]\nname = \"dash\"\nimage = \"d:1\"\ncommand = [\"dash\"]\n";
    let with = |extra: &str| {
        PRODUCTION.replace(
            "\n[singleuser]\n",
            &format!("\n{service}{extra}\n[singleuser]\n"),
        )
    };
    assert!(DeployFile::parse(&with("")).is_ok());
    let e = error(&with(&format!("\n{service}")));
    assert!(
        e.contains("field hub.services[1].name: \"dash\" twice"),
        "{e}"
    );
    let e = error(&with("environment = { JUPYTERHUB_API_TOKEN = \"x\" }\n"));
    assert!(
        e.contains("field hub.services[0].environment:") && e.contains("Docker secret"),
        "{e}"
    );
    let e = error(&with("port = 0\n"));
    assert!(e.contains("field hub.services[0].port"), "{e}");
    let e = error(&PRODUCTION.replace("# logo_file = \"logo.png\"", "logo_file = \"\""));
    assert!(e.contains("field hub.logo_file:"), "{e}");
}
