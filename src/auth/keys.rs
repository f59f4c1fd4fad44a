//! API keys: high-entropy random tokens, shown once, stored only as their
//! SHA-256. A plain hash (no salt, no slow KDF) is enough because the tokens
//! are 256 random bits, not passwords: nothing can be guessed from the hash,
//! and a lookup by hash costs one index read per request.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Scopes, Tenant};

/// Every key starts with this, so a leaked one is easy to recognise (and to
/// search for in code or logs).
pub const TOKEN_PREFIX: &str = "ipk_";

/// A bootstrap key (IMGPIPE_BOOTSTRAP_KEY) must be at least this long.
pub const MIN_BOOTSTRAP_LEN: usize = 32;

/// The public name of a key: shown by `imgpipe keys list`, used to revoke it,
/// written to logs. Not a secret.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    pub fn new(id: &str) -> Self {
        KeyId(id.to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A key's own quota settings; unset ones are the server's defaults
/// (`IMGPIPE_QUOTA_*`). They apply to requests made with this key; use is
/// counted per tenant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuotaSettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jobs_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_images: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stored_bytes: Option<u64>,
}

impl fmt::Display for QuotaSettings {
    /// `jobs_per_minute=N,active_images=N,stored_bytes=N`, the set ones
    /// only, or `-`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let set: Vec<String> = [
            ("jobs_per_minute", self.jobs_per_minute),
            ("active_images", self.active_images),
            ("stored_bytes", self.stored_bytes),
        ]
        .iter()
        .filter_map(|(name, value)| value.map(|v| format!("{name}={v}")))
        .collect();
        if set.is_empty() {
            f.write_str("-")
        } else {
            f.write_str(&set.join(","))
        }
    }
}

/// A key as stored: everything but the token itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: KeyId,
    pub tenant: Tenant,
    pub scopes: Scopes,
    pub label: Option<String>,
    /// Keys made before quota settings existed have none.
    #[serde(default)]
    pub quotas: QuotaSettings,
    /// Hex SHA-256 of the token.
    pub hash: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    pub fn is_active(&self) -> bool {
        self.revoked_at.is_none()
    }
}

/// A freshly made key: the token (shown once) and its record.
pub struct NewKey {
    pub token: String,
    pub key: ApiKey,
}

impl NewKey {
    /// `random` must come from the operating system's CSPRNG: 32 bytes for
    /// the token, 6 for the id.
    pub fn from_random(
        random: [u8; 38],
        tenant: Tenant,
        scopes: Scopes,
        label: Option<String>,
        quotas: QuotaSettings,
        now: DateTime<Utc>,
    ) -> Self {
        let token = format!("{TOKEN_PREFIX}{}", hex::encode(&random[..32]));
        let key = ApiKey {
            id: KeyId(format!("key_{}", hex::encode(&random[32..]))),
            tenant,
            scopes,
            label,
            quotas,
            hash: hash_token(&token),
            created_at: now,
            revoked_at: None,
        };
        NewKey { token, key }
    }

    /// The admin key for a token chosen by the operator (IMGPIPE_BOOTSTRAP_KEY).
    /// Its id derives from the hash, so every start ensures the same key.
    pub fn bootstrap(token: &str, now: DateTime<Utc>) -> Self {
        let hash = hash_token(token);
        let key = ApiKey {
            id: KeyId(format!("boot_{}", &hash[..12])),
            tenant: Tenant::local(),
            scopes: Scopes::all(),
            label: Some("IMGPIPE_BOOTSTRAP_KEY".to_string()),
            quotas: QuotaSettings::default(),
            hash,
            created_at: now,
            revoked_at: None,
        };
        NewKey {
            token: token.to_string(),
            key,
        }
    }
}

/// How a presented token is looked up.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Whether a presented token could be a key at all (checked before hashing:
/// a header of garbage gets the same 401 without a store lookup).
pub fn plausible(token: &str) -> bool {
    (16..=256).contains(&token.len()) && token.bytes().all(|b| b.is_ascii_graphic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(random: [u8; 38]) -> NewKey {
        NewKey::from_random(
            random,
            "team".parse().unwrap(),
            "read".parse().unwrap(),
            None,
            QuotaSettings::default(),
            Utc::now(),
        )
    }

    #[test]
    fn tokens_carry_256_bits_and_only_their_hash_is_kept() {
        let a = key([7; 38]);
        assert!(a.token.starts_with(TOKEN_PREFIX));
        assert_eq!(a.token.len(), TOKEN_PREFIX.len() + 64);
        assert_eq!(a.key.hash, hash_token(&a.token));
        let stored = serde_json::to_string(&a.key).unwrap();
        assert!(!stored.contains(&a.token[TOKEN_PREFIX.len()..]));
        let mut other = [7; 38];
        other[0] = 8;
        assert_ne!(key(other).key.hash, a.key.hash);
        assert!(plausible(&a.token));
        assert!(!plausible("short") && !plausible("has a space in it, sixteen+"));
    }

    #[test]
    fn a_bootstrap_key_is_the_same_admin_key_at_every_start() {
        let token = "x".repeat(MIN_BOOTSTRAP_LEN);
        let first = NewKey::bootstrap(&token, Utc::now()).key;
        let again = NewKey::bootstrap(&token, Utc::now()).key;
        assert_eq!(first.id, again.id);
        assert!(first.scopes.contains(super::super::Scope::Admin));
    }
}
