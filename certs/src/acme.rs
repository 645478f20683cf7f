//! One ACME conversation: the account (created once, then reused from the
//! storage) and an order for a set of names, answered by HTTP-01 or
//! TLS-ALPN-01 and finalized with a fresh key.

use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AuthorizationHandle, AuthorizationStatus, CertificateIdentifier, ChallengeType,
    Identifier, NewAccount, NewOrder, Order, OrderStatus, RetryPolicy,
};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

use crate::challenge::Challenges;
use crate::lock::{Locked, try_lock};
use crate::store::{Store, read_opt, write_atomic};
use crate::x509::{Issued, csr, inspect};
use crate::{CertsError, ChallengeKind};

/// The account for `directory`: the stored one, else (or when `fresh`) a
/// new one, stored before use (0600). Replicas take the account lock so
/// that only one registers.
pub(crate) async fn account(
    store: &Store,
    directory: &str,
    email: Option<&str>,
    ca_pem: Option<&[u8]>,
    holder: &str,
    fresh: bool,
) -> Result<Account, CertsError> {
    let path = store.accounts().join(format!(
        "{:016x}.json",
        crate::policy::fnv(directory.bytes())
    ));
    for _ in 0..100 {
        if let Some(bytes) = read_opt(&path)?.filter(|_| !fresh) {
            let creds = serde_json::from_slice(&bytes).map_err(|source| CertsError::Account {
                path: path.clone(),
                source,
            })?;
            let builder = Account::builder_with_http(crate::client::https(ca_pem)?);
            return Ok(builder.from_credentials(creds).await?);
        }
        match try_lock(store, "account", holder, Duration::from_secs(30))? {
            Locked::Held(_lock) => {
                if !fresh && read_opt(&path)?.is_some() {
                    continue;
                }
                let contact = email.map(|e| format!("mailto:{e}"));
                let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
                let new = NewAccount {
                    contact: &contacts,
                    terms_of_service_agreed: true,
                    only_return_existing: false,
                };
                let builder = Account::builder_with_http(crate::client::https(ca_pem)?);
                let (account, creds) = builder.create(&new, directory.to_owned(), None).await?;
                let json = serde_json::to_vec(&creds).map_err(|source| CertsError::Account {
                    path: path.clone(),
                    source,
                })?;
                write_atomic(&path, &json, 0o600)?;
                tracing::info!(directory, account = account.id(), "ACME account registered");
                return Ok(account);
            }
            Locked::Busy { .. } => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
    Err(CertsError::BadCertificate(
        "timed out waiting for another replica to register the account".into(),
    ))
}

/// The directory's suggested renewal window for `issued` (RFC 9773), or
/// `None` when the directory offers no ARI (Pebble 2.4.0) or the query fails.
pub(crate) async fn renewal_window(
    account: &Account,
    issued: &Issued,
) -> Option<(SystemTime, SystemTime)> {
    let leaf = CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
        .next()?
        .ok()?;
    let id = CertificateIdentifier::try_from(&leaf).ok()?;
    match account.renewal_info(&id).await {
        Ok((info, _retry_after)) => {
            let w = info.suggested_window;
            Some((SystemTime::from(w.start), SystemTime::from(w.end)))
        }
        Err(instant_acme::Error::Unsupported(_)) => None,
        Err(e) => {
            tracing::debug!(error = %e, "ACME renewal information unavailable");
            None
        }
    }
}

/// Whether a new-order failed over the `replaces` field (RFC 9773 §5).
fn replaces_refused(e: &instant_acme::Error) -> bool {
    match e {
        instant_acme::Error::Unsupported(_) => true,
        instant_acme::Error::Other(inner) => {
            inner.to_string().starts_with("replaces field mismatch")
        }
        _ => false,
    }
}

/// The challenges an order put up, to take down when it ends.
struct Answered<'a> {
    tokens: &'a mut Vec<String>,
    alpn_names: &'a mut Vec<String>,
}

/// Answers one authorization with a `kind` challenge (a valid one needs
/// none); anything but pending or valid fails the order.
async fn answer(
    mut authz: AuthorizationHandle<'_>,
    kind: ChallengeKind,
    challenges: &Challenges,
    answered: Answered<'_>,
) -> Result<(), CertsError> {
    let name = match &authz.identifier().identifier {
        Identifier::Dns(n) => n.clone(),
        other => format!("{other:?}"),
    };
    match authz.status {
        AuthorizationStatus::Valid => return Ok(()),
        AuthorizationStatus::Pending => {}
        other => {
            return Err(CertsError::Validation {
                name,
                detail: format!("authorization is {other:?}"),
            });
        }
    }
    let wanted = match kind {
        ChallengeKind::Http01 => ChallengeType::Http01,
        ChallengeKind::TlsAlpn01 => ChallengeType::TlsAlpn01,
    };
    let mut challenge = authz.challenge(wanted).ok_or(CertsError::NoChallenge {
        name: name.clone(),
        kind: kind.as_str(),
    })?;
    let key_authorization = challenge.key_authorization();
    match kind {
        ChallengeKind::Http01 => {
            challenges.put_http01(&challenge.token, key_authorization.as_str())?;
            answered.tokens.push(challenge.token.clone());
        }
        ChallengeKind::TlsAlpn01 => {
            let name = name.to_ascii_lowercase();
            challenges.put_tls_alpn01(&name, key_authorization.digest().as_ref())?;
            answered.alpn_names.push(name);
        }
    }
    challenge.set_ready().await?;
    Ok(())
}

/// Why an order failed: the order's error, else the first failed
/// challenge's (where the CA puts its reason).
async fn failure_detail(order: &mut Order) -> Option<String> {
    let mut detail = order.state().error.as_ref().map(|p| p.to_string());
    let mut authorizations = order.authorizations();
    while let (None, Some(Ok(mut authz))) = (&detail, authorizations.next().await) {
        if let Ok(state) = authz.refresh().await {
            detail = state
                .challenges
                .iter()
                .find_map(|c| c.error.as_ref().map(|p| p.to_string()));
        }
    }
    detail
}

/// Orders a certificate for `names`, answering each authorization with
/// `kind`; `replaces` is the certificate being renewed (ARI). The chain is
/// checked before it is returned.
pub(crate) async fn order(
    account: &Account,
    names: &[String],
    kind: ChallengeKind,
    challenges: &Challenges,
    replaces: Option<&Issued>,
    poll: RetryPolicy,
) -> Result<Issued, CertsError> {
    let identifiers: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
    let mut new = NewOrder::new(&identifiers);
    let replaced = replaces.and_then(|issued| {
        let leaf = CertificateDer::pem_slice_iter(issued.chain_pem.as_bytes())
            .next()?
            .ok()?;
        CertificateIdentifier::try_from(&leaf)
            .ok()
            .map(|id| id.into_owned())
    });
    if let Some(id) = &replaced {
        new = new.replaces(id.clone());
    }
    let mut order = match account.new_order(&new).await {
        // A directory without ARI refuses `replaces`, and a CA that ignores
        // it breaks the RFC 9773 echo: order plainly (only the renewal's
        // rate-limit exemption is lost).
        Err(e) if replaced.is_some() && replaces_refused(&e) => {
            tracing::info!(error = %e, "ordering without `replaces`");
            account.new_order(&NewOrder::new(&identifiers)).await?
        }
        other => other?,
    };
    let (mut tokens, mut alpn_names) = (Vec::new(), Vec::new());
    let result = async {
        let mut authorizations = order.authorizations();
        while let Some(authz) = authorizations.next().await {
            let answered = Answered {
                tokens: &mut tokens,
                alpn_names: &mut alpn_names,
            };
            answer(authz?, kind, challenges, answered).await?;
        }
        let status = order.poll_ready(&poll).await?;
        if status != OrderStatus::Ready {
            let detail = failure_detail(&mut order).await;
            return Err(CertsError::Validation {
                name: names.join(", "),
                detail: detail.unwrap_or_else(|| format!("order is {status:?}")),
            });
        }
        let (csr, key_pem) = csr(names)?;
        order.finalize_csr(&csr).await?;
        let chain = order.poll_certificate(&poll).await?;
        inspect(&chain, &key_pem, names, SystemTime::now())
    }
    .await;
    challenges.clear(&tokens, &alpn_names);
    result
}
