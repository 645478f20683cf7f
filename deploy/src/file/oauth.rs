//! A generic OAuth provider's endpoints and claims: a preset's, with the
//! file's own values in their place where it gives them.

use super::fields::Auth;

/// What GenericOAuthenticator needs of the provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OauthProvider {
    pub authorize_url: String,
    pub token_url: String,
    pub userdata_url: String,
    pub scopes: Vec<String>,
    pub username_claim: String,
    pub groups_claim: Option<String>,
    pub login_service: String,
}

/// The presets: name, and what each says (`{issuer}` stands for
/// `auth.issuer`).
struct Preset {
    name: &'static str,
    login_service: &'static str,
    urls: [&'static str; 3],
    scopes: &'static [&'static str],
    username_claim: &'static str,
    groups_claim: Option<&'static str>,
    needs_issuer: bool,
}

const PRESETS: [Preset; 4] = [
    Preset {
        name: "cilogon",
        login_service: "CILogon",
        urls: [
            "https://cilogon.org/authorize",
            "https://cilogon.org/oauth2/token",
            "https://cilogon.org/oauth2/userinfo",
        ],
        scopes: &["openid", "email", "org.cilogon.userinfo"],
        username_claim: "email",
        groups_claim: Some("isMemberOf"),
        needs_issuer: false,
    },
    Preset {
        name: "gitlab",
        login_service: "GitLab",
        urls: [
            "{issuer}/oauth/authorize",
            "{issuer}/oauth/token",
            "{issuer}/api/v4/user",
        ],
        scopes: &["read_user"],
        username_claim: "username",
        groups_claim: None,
        needs_issuer: true,
    },
    Preset {
        name: "google",
        login_service: "Google",
        urls: [
            "https://accounts.google.com/o/oauth2/v2/auth",
            "https://oauth2.googleapis.com/token",
            "https://openidconnect.googleapis.com/v1/userinfo",
        ],
        scopes: &["openid", "email"],
        username_claim: "email",
        groups_claim: None,
        needs_issuer: false,
    },
    Preset {
        name: "keycloak",
        login_service: "Keycloak",
        urls: [
            "{issuer}/protocol/openid-connect/auth",
            "{issuer}/protocol/openid-connect/token",
            "{issuer}/protocol/openid-connect/userinfo",
        ],
        scopes: &["openid", "profile", "email"],
        username_claim: "preferred_username",
        groups_claim: Some("groups"),
        needs_issuer: true,
    },
];

/// The names of the presets, for messages.
pub fn preset_names() -> Vec<&'static str> {
    PRESETS.iter().map(|p| p.name).collect()
}

impl Auth {
    /// The provider `kind = "oauth"` names; the field and message of the
    /// first thing missing or unknown.
    pub fn oauth_provider(&self) -> Result<OauthProvider, (String, String)> {
        let preset = match &self.preset {
            Some(name) => Some(PRESETS.iter().find(|p| p.name == name).ok_or_else(|| {
                let known = preset_names().join(", ");
                (
                    "auth.preset".to_owned(),
                    format!("{name:?}: one of {known}"),
                )
            })?),
            None => None,
        };
        let issuer = self.issuer.as_deref().map(|i| i.trim_end_matches('/'));
        if preset.is_some_and(|p| p.needs_issuer) && issuer.is_none() {
            let why = "this preset needs the provider's URL in auth.issuer".to_owned();
            return Err(("auth.issuer".to_owned(), why));
        }
        let url = |given: &Option<String>, field: &str, i: usize| {
            let from_preset =
                preset.map(|p| p.urls[i].replace("{issuer}", issuer.unwrap_or_default()));
            given.clone().or(from_preset).ok_or_else(|| {
                let why = "give it, or a preset".to_owned();
                (format!("auth.{field}"), why)
            })
        };
        let scopes = if self.scopes.is_empty() {
            preset.map_or_else(Vec::new, |p| {
                p.scopes.iter().map(|s| (*s).to_owned()).collect()
            })
        } else {
            self.scopes.clone()
        };
        Ok(OauthProvider {
            authorize_url: url(&self.authorize_url, "authorize_url", 0)?,
            token_url: url(&self.token_url, "token_url", 1)?,
            userdata_url: url(&self.userdata_url, "userdata_url", 2)?,
            scopes,
            username_claim: self
                .username_claim
                .clone()
                .or(preset.map(|p| p.username_claim.to_owned()))
                .unwrap_or_else(|| "sub".to_owned()),
            groups_claim: self
                .groups_claim
                .clone()
                .or(preset.and_then(|p| p.groups_claim.map(str::to_owned))),
            login_service: self
                .login_service
                .clone()
                .or(preset.map(|p| p.login_service.to_owned()))
                .unwrap_or_else(|| "OAuth".to_owned()),
        })
    }
}
