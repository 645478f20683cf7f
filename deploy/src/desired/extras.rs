//! The hub's extras: its services (`hub.services`), each a swarm service
//! with an API token the hub and it share, and its branding (a logo and
//! templates, `hub.logo_file` and `hub.templates`), each file a Docker
//! config the hub mounts.

use std::collections::BTreeMap;

use serde::Serialize;

use super::inputs::Inputs;
use super::layout::{
    BRANDING_DIR, HUB_PORT, SERVICE_TOKEN_PATH, TEMPLATES_DIR, hub_service_token_path, names,
};
use super::parts::{blob, file_ref, labels, resources, short_hash};
use crate::DeployError;
use crate::file::{DeployFile, HubService};
use crate::model::{BlobWant, FileRef, Mode, Role, SecretData, ServiceWant};

/// How a service's command starts: its token read from its secret's file
/// into the environment (never in the spec), then the command itself.
const WITH_TOKEN: &str = "JUPYTERHUB_API_TOKEN=\"$(cat \"$0\")\" exec \"$@\"";

/// What the hub's services and branding add to a deployment.
pub(super) struct Extras {
    pub(super) services: Vec<ServiceWant>,
    pub(super) secrets: Vec<BlobWant>,
    pub(super) configs: Vec<BlobWant>,
    /// The hub's mounts of the tokens and the branding files.
    pub(super) hub_secrets: Vec<FileRef>,
    pub(super) hub_configs: Vec<FileRef>,
    /// What `hubgate_hub.configure` reads of them.
    pub(super) values: ExtrasPart,
}

/// The hub's settings for its services and branding.
#[derive(Debug, Serialize)]
pub(super) struct ExtrasPart {
    services: Vec<ServicePart>,
    logo_file: Option<String>,
    template_paths: Vec<&'static str>,
}

/// A service as the hub knows it.
#[derive(Debug, Serialize)]
struct ServicePart {
    name: String,
    /// Where its pages are (`/services/NAME/` routes there).
    url: Option<String>,
    token_path: String,
    scopes: Vec<String>,
}

/// The extras of `f`.
pub(super) fn extras(f: &DeployFile, inputs: &Inputs) -> Result<Extras, DeployError> {
    let mut out = Extras {
        services: vec![],
        secrets: vec![],
        configs: vec![],
        hub_secrets: vec![],
        hub_configs: vec![],
        values: ExtrasPart {
            services: vec![],
            logo_file: None,
            template_paths: vec![],
        },
    };
    for s in &f.hub.services {
        let token = BlobWant {
            name: format!("{}-service-{}-token", f.name, s.name),
            data: SecretData::Generated,
            role: Role::HubServiceToken,
        };
        out.hub_secrets
            .push(file_ref(&token, &hub_service_token_path(&s.name)));
        out.services.push(service(f, s, &token));
        out.values.services.push(ServicePart {
            name: s.name.clone(),
            url: s.port.map(|p| format!("http://{}:{p}", service_name(f, s))),
            token_path: hub_service_token_path(&s.name),
            scopes: s.scopes.clone(),
        });
        out.secrets.push(token);
    }
    branding(f, inputs, &mut out)?;
    Ok(out)
}

/// The logo and the templates: configs the hub mounts.
fn branding(f: &DeployFile, inputs: &Inputs, out: &mut Extras) -> Result<(), DeployError> {
    if let Some(path) = &f.hub.logo_file {
        let bytes = inputs.logo.as_deref();
        let bytes = bytes.ok_or_else(|| DeployError::MissingInput("hub.logo_file".to_owned()))?;
        let logo = blob(f, Role::HubBranding, bytes);
        // Its extension tells JupyterHub the type it serves it as.
        let ext = std::path::Path::new(path)
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        let target = format!("{BRANDING_DIR}/logo{ext}");
        out.hub_configs.push(file_ref(&logo, &target));
        out.values.logo_file = Some(target);
        out.configs.push(logo);
    }
    if f.hub.templates.is_some() {
        if inputs.templates.is_empty() {
            return Err(DeployError::MissingInput("hub.templates".to_owned()));
        }
        for (file, bytes) in &inputs.templates {
            let mut key = file.as_bytes().to_vec();
            key.push(0);
            key.extend_from_slice(bytes);
            let template = BlobWant {
                name: format!("{}-{}-{}", f.name, Role::HubBranding, short_hash(&key)),
                data: SecretData::Bytes(bytes.clone()),
                role: Role::HubBranding,
            };
            out.hub_configs
                .push(file_ref(&template, &format!("{TEMPLATES_DIR}/{file}")));
            out.configs.push(template);
        }
        out.values.template_paths = vec![TEMPLATES_DIR];
    }
    Ok(())
}

fn service_name(f: &DeployFile, s: &HubService) -> String {
    format!("{}-service-{}", f.name, s.name)
}

/// Service `s`: on the deployment's network, its token a secret file.
fn service(f: &DeployFile, s: &HubService, token: &BlobWant) -> ServiceWant {
    let prefix = format!("/services/{}/", s.name);
    let mut env = BTreeMap::from([
        ("JUPYTERHUB_SERVICE_NAME".to_owned(), s.name.clone()),
        (
            "JUPYTERHUB_API_URL".to_owned(),
            format!("http://{}:{HUB_PORT}/hub/api", names(f).hub),
        ),
        ("JUPYTERHUB_BASE_URL".to_owned(), "/".to_owned()),
        ("JUPYTERHUB_SERVICE_PREFIX".to_owned(), prefix.clone()),
        (
            "JUPYTERHUB_CLIENT_ID".to_owned(),
            format!("service-{}", s.name),
        ),
        (
            "JUPYTERHUB_OAUTH_CALLBACK_URL".to_owned(),
            format!("{prefix}oauth_callback"),
        ),
        ("JUPYTERHUB_PUBLIC_URL".to_owned(), f.public_url()),
    ]);
    if let Some(port) = s.port {
        env.insert(
            "JUPYTERHUB_SERVICE_URL".to_owned(),
            format!("http://0.0.0.0:{port}/"),
        );
    }
    env.extend(s.environment.clone());
    let mut args = vec![SERVICE_TOKEN_PATH.to_owned()];
    args.extend(s.command.iter().cloned());
    ServiceWant {
        name: service_name(f, s),
        image: s.image.clone(),
        command: vec!["sh".into(), "-c".into(), WITH_TOKEN.into()],
        args,
        env,
        labels: labels(f, Role::HubService),
        user: String::new(),
        mode: Mode::Replicated(1),
        constraints: s.constraints.clone(),
        max_per_node: 0,
        mounts: vec![],
        secrets: vec![file_ref(token, SERVICE_TOKEN_PATH)],
        configs: vec![],
        ports: vec![],
        dnsrr: true,
        networks: vec![f.network.name.clone()],
        resources: resources(&s.resources),
        start_first: false,
        spec_hash: false,
        update_delay_secs: 0,
        stop_grace_secs: 10,
        capabilities: vec![],
        healthcheck: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::inputs;
    use super::super::{Desired, desired};
    use crate::file::DeployFile;
    use crate::model::{Role, SecretData};

    const LOCAL: &str = include_str!("../../../examples/local.toml");

    fn with_extras() -> Desired {
        let text = LOCAL.replace(
            "idle_timeout = \"1h\"\n",
            "idle_timeout = \"1h\"\nlogo_file = \"logo.png\"\ntemplates = \"templates\"\n\n\
             [[hub.services]]\nname = \"dash\"\nimage = \"local/dash:1\"\n\
             command = [\"python3\", \"-m\", \"dash\"]\nport = 9000\n\
             scopes = [\"list:users\"]\nenvironment = { COLOUR = \"blue\" }\n",
        );
        let f = DeployFile::parse(&text).unwrap();
        let mut inputs = inputs();
        inputs.logo = Some(b"\x89PNG".to_vec());
        inputs.templates = vec![(
            "login.html".into(),
            b"{% extends \"templates/login.html\" %}".to_vec(),
        )];
        desired(&f, &inputs).unwrap()
    }

    #[test]
    fn a_service_gets_its_token_as_a_secret_and_the_hub_its_logo_and_templates() {
        let d = with_extras();
        let dash = d
            .services
            .iter()
            .find(|s| s.name.ends_with("-service-dash"))
            .unwrap();
        assert_eq!(dash.command[..2], ["sh", "-c"]);
        assert_eq!(dash.args[1..], ["python3", "-m", "dash"]);
        assert_eq!(dash.secrets[0].target, "/run/secrets/hub-service-token");
        assert_eq!(dash.env["JUPYTERHUB_SERVICE_PREFIX"], "/services/dash/");
        assert_eq!(dash.env["COLOUR"], "blue");
        assert!(!dash.env.contains_key("JUPYTERHUB_API_TOKEN"));
        let token = d
            .secrets
            .iter()
            .find(|s| s.role == Role::HubServiceToken)
            .unwrap();
        assert_eq!(token.data, SecretData::Generated);
        assert_eq!(dash.secrets[0].name, token.name);
        let hub = d
            .services
            .iter()
            .find(|s| s.name.ends_with("-hub"))
            .unwrap();
        assert!(
            hub.secrets
                .iter()
                .any(|r| r.name == token.name && r.target == "/run/secrets/hub-service-dash-token")
        );
        let targets: Vec<&str> = hub.configs.iter().map(|c| c.target.as_str()).collect();
        assert!(
            targets.contains(&"/srv/jupyterhub/branding/logo.png"),
            "{targets:?}"
        );
        assert!(
            targets.contains(&"/srv/jupyterhub/templates/login.html"),
            "{targets:?}"
        );
        let SecretData::Bytes(config) = &d.configs[0].data else {
            panic!()
        };
        let config = String::from_utf8_lossy(config);
        for expected in [
            "\"url\": \"http://trial-service-dash:9000\"",
            "\"token_path\": \"/run/secrets/hub-service-dash-token\"",
            "\"logo_file\": \"/srv/jupyterhub/branding/logo.png\"",
            "\"template_paths\": [\"/srv/jupyterhub/templates\"]",
        ] {
            assert!(config.contains(expected), "{expected} not in {config}");
        }
    }
}
