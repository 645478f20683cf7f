//! The deployment file (`deploy.toml`): its fields, parsed with serde and
//! checked, every error naming the line and the field. `docs/deploy.md`
//! documents each field; `examples/` holds commented files.

mod check;
mod check_ops;
mod common;
mod fields;
mod hub;
mod oauth;
mod units;

pub use common::Resources;
pub use fields::{
    Auth, AuthKind, CloudMetadata, DataMount, DeployFile, LETSENCRYPT, Network, Nfs, Profile,
    Proxy, Replicas, SingleUser, Storage, Tls,
};
pub use hub::{Cull, Database, Hub, HubService, Limits};
pub use oauth::{OauthProvider, preset_names};
pub use units::{Duration, Size};

use crate::DeployError;

impl DeployFile {
    /// Parses and checks a deployment file's text. Errors name the line
    /// and the field.
    pub fn parse(text: &str) -> Result<Self, DeployError> {
        let file: Self = toml::from_str(text).map_err(|e| {
            let start = e.span().map(|s| s.start);
            DeployError::File {
                line: start.map(|s| check::line_at(text, s)),
                field: start.and_then(|s| check::field_at(text, s)),
                message: e.message().to_owned(),
            }
        })?;
        check::check(&file)
            .and_then(|()| check_ops::check(&file))
            .map_err(|(field, message)| DeployError::File {
                line: check::line_of(text, &field),
                field: Some(field),
                message,
            })?;
        Ok(file)
    }

    /// The scheme users reach the hub with.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// The hub's public URL on the first host (port shown when not the
    /// scheme's default).
    pub fn public_url(&self) -> String {
        let host = self.hosts.first().map_or("localhost", String::as_str);
        let port = if self.tls.is_some() {
            self.proxy.https_port
        } else {
            self.proxy.http_port
        };
        let default = if self.tls.is_some() { 443 } else { 80 };
        if port == default {
            format!("{}://{host}/", self.scheme())
        } else {
            format!("{}://{host}:{port}/", self.scheme())
        }
    }

    /// The OAuth callback URL derived from the first host.
    pub fn oauth_callback_url(&self) -> String {
        format!("{}hub/oauth_callback", self.public_url())
    }
}

#[cfg(test)]
mod tests;
