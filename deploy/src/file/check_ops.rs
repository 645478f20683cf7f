//! Checks of the operations fields: the addresses user servers may not
//! reach, the hub's services, its branding.

use super::check::{Failure, fail, image, object_name, resources};
use super::fields::DeployFile;
use super::hub::HubService;

/// Checks the operations fields of `f`; the first problem.
pub(super) fn check(f: &DeployFile) -> Result<(), Failure> {
    cloud_metadata(f)?;
    for (field, path) in [
        ("hub.logo_file", &f.hub.logo_file),
        ("hub.templates", &f.hub.templates),
    ] {
        if path.as_deref().is_some_and(str::is_empty) {
            return fail(field, "name a file (relative to the deployment file)");
        }
    }
    for (i, s) in f.hub.services.iter().enumerate() {
        service(&format!("hub.services[{i}]"), s)?;
        if f.hub.services[..i].iter().any(|o| o.name == s.name) {
            return fail(
                &format!("hub.services[{i}].name"),
                format!("{:?} twice", s.name),
            );
        }
    }
    Ok(())
}

/// Environment names a service's token goes by: never a plain value.
const TOKEN_NAMES: [&str; 2] = ["JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"];

fn service(field: &str, s: &HubService) -> Result<(), Failure> {
    object_name(&format!("{field}.name"), &s.name)?;
    if s.name == "idle-culler" {
        return fail(
            &format!("{field}.name"),
            "idle-culler is the hub's culler (hub.idle_timeout)",
        );
    }
    image(&format!("{field}.image"), &s.image)?;
    if s.command.first().is_none_or(String::is_empty) {
        return fail(&format!("{field}.command"), "name the service's command");
    }
    if s.port == Some(0) {
        return fail(&format!("{field}.port"), "a port from 1 to 65535");
    }
    if let Some(scope) = s
        .scopes
        .iter()
        .find(|c| c.is_empty() || c.contains(char::is_whitespace))
    {
        return fail(
            &format!("{field}.scopes"),
            format!("{scope:?} is not a JupyterHub scope"),
        );
    }
    if let Some(key) = s
        .environment
        .keys()
        .find(|k| TOKEN_NAMES.contains(&k.as_str()))
    {
        return fail(
            &format!("{field}.environment"),
            format!("{key} is the service's token: apply makes it a Docker secret"),
        );
    }
    resources(&format!("{field}.resources"), &s.resources)
}

fn cloud_metadata(f: &DeployFile) -> Result<(), Failure> {
    let m = &f.singleuser.cloud_metadata;
    let field = "singleuser.cloud_metadata.addresses";
    if m.block && m.addresses.is_empty() {
        return fail(field, "name at least one address, or set block = false");
    }
    for a in &m.addresses {
        let (ip, bits) = a.split_once('/').unwrap_or((a, "32"));
        let ok = ip.parse::<std::net::Ipv4Addr>().is_ok()
            && bits.parse::<u8>().is_ok_and(|b| (1..=32).contains(&b));
        if !ok {
            return fail(
                field,
                format!(
                    "{a:?} is not an IPv4 address or network like 169.254.169.254 or 10.0.0.0/8"
                ),
            );
        }
    }
    Ok(())
}
