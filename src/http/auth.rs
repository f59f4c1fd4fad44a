//! Who may call which route: reads `Authorization: Bearer KEY` (or a signed
//! link's query) and checks the scope a route needs. The rules themselves
//! are in `auth`; the key lookup in `service::keys`.

use actix_web::{HttpMessage, HttpRequest};
use chrono::Utc;

use super::ApiError;
use crate::auth::links::{LinkError, LinkSigner, EXPIRES_PARAM, SIGNATURE_PARAM};
use crate::auth::{Access, Caller, Scope};
use crate::service::{JobError, KeyError, KeyService};

/// Why a request was turned away before it reached a job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("this route needs an API key: send it as \"Authorization: Bearer KEY\" (create one with `imgpipe keys create`)")]
    MissingKey,
    #[error("this API key is not valid (unknown or revoked)")]
    InvalidKey,
    #[error("the Authorization header must be \"Bearer KEY\"")]
    MalformedHeader,
    #[error("this API key lacks the {0} scope needed here")]
    MissingScope(Scope),
    #[error("{0}")]
    Link(LinkError),
}

/// The app's gatekeeper, built once at start-up.
pub struct Gate {
    /// `None`: auth is off, every caller is [`Caller::open`].
    keys: Option<KeyService>,
    signer: LinkSigner,
}

impl Gate {
    pub fn new(keys: Option<KeyService>, signer: LinkSigner) -> Self {
        Gate { keys, signer }
    }

    /// The caller, who must hold `scope`. Remembered on the request for the
    /// access log.
    pub async fn require(&self, req: &HttpRequest, scope: Scope) -> Result<Caller, ApiError> {
        let caller = self.caller(req).await?;
        req.extensions_mut().insert(caller.clone());
        if caller.may(scope) {
            Ok(caller)
        } else {
            Err(Denied::MissingScope(scope).into())
        }
    }

    /// The caller if one is identified; `None` for anonymous requests (and
    /// for bad keys, which public routes treat as anonymous).
    pub async fn optional(&self, req: &HttpRequest) -> Option<Caller> {
        if self.keys.is_some() && !req.headers().contains_key("authorization") {
            return None;
        }
        let caller = self.caller(req).await.ok()?;
        req.extensions_mut().insert(caller.clone());
        Some(caller)
    }

    /// For the routes a signed link may open: the link, when the query has
    /// one, grants a read of exactly this path; otherwise a key with `read`.
    pub async fn reader(&self, req: &HttpRequest) -> Result<Access, ApiError> {
        let (expires, sig) = match link_params(req.query_string()) {
            LinkParams::None => return Ok(self.require(req, Scope::Read).await?.access()),
            LinkParams::Malformed => return Err(Denied::Link(LinkError::BadSignature).into()),
            LinkParams::Both(expires, sig) => (expires, sig),
        };
        self.signer
            .verify(req.path(), expires, sig, Utc::now().timestamp())
            .map_err(Denied::Link)?;
        Ok(Access::All)
    }

    async fn caller(&self, req: &HttpRequest) -> Result<Caller, ApiError> {
        let Some(keys) = &self.keys else {
            return Ok(Caller::open());
        };
        let header = req
            .headers()
            .get("authorization")
            .ok_or(Denied::MissingKey)?;
        let token = header
            .to_str()
            .ok()
            .and_then(|h| {
                let (scheme, token) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .ok_or(Denied::MalformedHeader)?;
        keys.authenticate(token).await.map_err(|e| match e {
            KeyError::Store(e) => ApiError::Job(JobError::Meta(e)),
            KeyError::Invalid => Denied::InvalidKey.into(),
            other => ApiError::Job(JobError::Internal(other.to_string())),
        })
    }
}

enum LinkParams<'q> {
    None,
    /// One of the two missing, or either given twice.
    Malformed,
    Both(&'q str, &'q str),
}

/// A signed link's parameters, exactly as written: no percent-decoding, so
/// each link has one spelling (`verify` then insists on plain digits and
/// lowercase hex).
fn link_params(query: &str) -> LinkParams<'_> {
    let mut expires = Vec::new();
    let mut sig = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            EXPIRES_PARAM => expires.push(value),
            SIGNATURE_PARAM => sig.push(value),
            _ => {}
        }
    }
    match (expires.as_slice(), sig.as_slice()) {
        ([], []) => LinkParams::None,
        ([expires], [sig]) => LinkParams::Both(expires, sig),
        _ => LinkParams::Malformed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_has_one_spelling() {
        assert!(matches!(link_params("partial=true"), LinkParams::None));
        assert!(matches!(
            link_params("expires=5&sig=ab&partial=true"),
            LinkParams::Both("5", "ab")
        ));
        for malformed in [
            "expires=5",
            "sig=ab",
            "expires=5&sig=ab&sig=ab",
            "expires=5&expires=6&sig=ab",
        ] {
            assert!(
                matches!(link_params(malformed), LinkParams::Malformed),
                "{malformed}"
            );
        }
        // Percent-encoded names are not the link's parameters.
        assert!(matches!(
            link_params("s%69g=ab&%65xpires=5"),
            LinkParams::None
        ));
    }
}
