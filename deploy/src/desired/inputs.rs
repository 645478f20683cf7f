//! What a deployment's objects are made of besides the file: the bytes of
//! the files it names, read by the caller.

/// The bytes of the files a deployment names, read by the caller.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub oauth_client_secret: Option<Vec<u8>>,
    /// The dummy authenticator's shared password (`auth.password_file`).
    pub password: Option<Vec<u8>>,
    /// The hub database's password (`hub.database.password_file`).
    pub db_password: Option<Vec<u8>>,
    pub tls_cert: Option<Vec<u8>>,
    pub tls_key: Option<Vec<u8>>,
    pub acme_ca: Option<Vec<u8>>,
    /// The hub's logo (`hub.logo_file`).
    pub logo: Option<Vec<u8>>,
    /// The hub's templates (`hub.templates`): each file's name and bytes.
    pub templates: Vec<(String, Vec<u8>)>,
}
