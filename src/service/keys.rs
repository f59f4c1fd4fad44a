//! API keys at run time: turning a presented token into a [`Caller`], and
//! the key management behind `imgpipe keys` and IMGPIPE_BOOTSTRAP_KEY. Over
//! the [`TenantStore`] trait; knows nothing of HTTP.
//!
//! Every request asks the store, so a revocation counts from the next
//! request. Only while the store is unreachable does a key seen in the last
//! few minutes still count (stale-if-error): the job routes fail with 503
//! anyway then, but an admin can still read `/readyz`'s details.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;

use crate::auth::keys::{hash_token, plausible, MIN_BOOTSTRAP_LEN};
use crate::auth::{ApiKey, Caller, KeyId, NameError, NewKey, QuotaSettings, Scopes, Tenant};
use crate::meta::{MetaError, TenantStore};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Unknown, revoked or malformed: one answer for all three, so a caller
    /// learns nothing about which keys exist.
    #[error("this API key is not valid (unknown or revoked)")]
    Invalid,
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("the tenant name \"local\" is reserved (it owns the jobs of open mode and the bootstrap key); choose another")]
    Reserved,
    #[error("no key with id {0}, or it is already revoked")]
    NoSuchKey(String),
    #[error("IMGPIPE_BOOTSTRAP_KEY must be at least {MIN_BOOTSTRAP_LEN} printable characters (use e.g. `openssl rand -hex 32`)")]
    WeakBootstrap,
    #[error("the operating system's random generator failed: {0}")]
    Random(String),
    #[error(transparent)]
    Store(#[from] MetaError),
}

/// What starting with a bootstrap key did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrap {
    Created,
    Existed,
    /// The key was revoked: revocation wins, it stays revoked.
    Revoked,
}

/// How long a key seen active still counts while the store is unreachable.
const STALE_IF_ERROR: Duration = Duration::from_secs(120);
/// Keys remembered for that; the memory is cleared when it fills up.
const REMEMBERED_KEYS: usize = 1024;

#[derive(Clone)]
pub struct KeyService {
    store: Arc<dyn TenantStore>,
    /// Hash → the caller and when the store last confirmed it.
    seen: Arc<Mutex<HashMap<String, (Caller, Instant)>>>,
}

impl KeyService {
    pub fn new(store: Arc<dyn TenantStore>) -> Self {
        KeyService {
            store,
            seen: Arc::default(),
        }
    }

    /// The caller a presented token stands for.
    pub async fn authenticate(&self, token: &str) -> Result<Caller, KeyError> {
        if !plausible(token) {
            return Err(KeyError::Invalid);
        }
        let hash = hash_token(token);
        match self.store.key_by_hash(&hash).await {
            Ok(Some(key)) if key.is_active() => {
                let caller = Caller::of(&key);
                self.remember(hash, &caller);
                Ok(caller)
            }
            Ok(_) => {
                self.forget(&hash);
                Err(KeyError::Invalid)
            }
            Err(e) if e.is_transient() => self.recall(&hash).ok_or(KeyError::Store(e)),
            Err(e) => Err(KeyError::Store(e)),
        }
    }

    fn remember(&self, hash: String, caller: &Caller) {
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= REMEMBERED_KEYS && !seen.contains_key(&hash) {
                seen.clear();
            }
            seen.insert(hash, (caller.clone(), Instant::now()));
        }
    }

    fn forget(&self, hash: &str) {
        if let Ok(mut seen) = self.seen.lock() {
            seen.remove(hash);
        }
    }

    fn recall(&self, hash: &str) -> Option<Caller> {
        let seen = self.seen.lock().ok()?;
        let (caller, at) = seen.get(hash)?;
        (at.elapsed() < STALE_IF_ERROR).then(|| caller.clone())
    }

    /// A new key; its token is in the answer and nowhere else.
    pub async fn create(
        &self,
        tenant: &str,
        scopes: &str,
        label: Option<String>,
        quotas: QuotaSettings,
    ) -> Result<NewKey, KeyError> {
        let tenant: Tenant = tenant.parse()?;
        if tenant == Tenant::local() {
            // `local` owns open mode's jobs and the bootstrap key: a key of
            // that tenant would see all of them.
            return Err(KeyError::Reserved);
        }
        let scopes: Scopes = scopes.parse()?;
        let mut random = [0u8; 38];
        getrandom::fill(&mut random).map_err(|e| KeyError::Random(e.to_string()))?;
        let new = NewKey::from_random(random, tenant, scopes, label, quotas, Utc::now());
        if !self.store.add_key(&new.key).await? {
            // 48 random bits of id colliding: vanishingly rare, and safe to refuse.
            return Err(KeyError::Random(
                "a fresh key collided with an existing one".into(),
            ));
        }
        Ok(new)
    }

    pub async fn list(&self) -> Result<Vec<ApiKey>, KeyError> {
        Ok(self.store.keys().await?)
    }

    pub async fn revoke(&self, id: &str) -> Result<(), KeyError> {
        if self.store.revoke_key(&KeyId::new(id), Utc::now()).await? {
            Ok(())
        } else {
            Err(KeyError::NoSuchKey(id.to_string()))
        }
    }

    /// Ensures the operator's bootstrap token is an admin key.
    pub async fn bootstrap(&self, token: &str) -> Result<Bootstrap, KeyError> {
        if token.len() < MIN_BOOTSTRAP_LEN || !plausible(token) {
            return Err(KeyError::WeakBootstrap);
        }
        let new = NewKey::bootstrap(token, Utc::now());
        match self.store.key_by_hash(&new.key.hash).await? {
            Some(key) if key.is_active() => Ok(Bootstrap::Existed),
            Some(_) => Ok(Bootstrap::Revoked),
            None => {
                self.store.add_key(&new.key).await?;
                Ok(Bootstrap::Created)
            }
        }
    }

    pub async fn any_active(&self) -> Result<bool, KeyError> {
        Ok(self.store.keys().await?.iter().any(ApiKey::is_active))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::idempotency::{Claim, Completed, IdempotencyKey};
    use crate::backend_error::ErrorKind;
    use async_trait::async_trait;
    use chrono::DateTime;
    use std::sync::atomic::{AtomicBool, Ordering};

    /// Keys in a map; can be "down". Only what authentication uses.
    #[derive(Default)]
    struct Keys {
        keys: Mutex<Vec<ApiKey>>,
        down: AtomicBool,
    }

    #[async_trait]
    impl TenantStore for Keys {
        async fn add_key(&self, key: &ApiKey) -> Result<bool, MetaError> {
            self.keys.lock().unwrap().push(key.clone());
            Ok(true)
        }
        async fn key_by_hash(&self, hash: &str) -> Result<Option<ApiKey>, MetaError> {
            if self.down.load(Ordering::SeqCst) {
                return Err(MetaError::new(ErrorKind::Unavailable, "down"));
            }
            let keys = self.keys.lock().unwrap();
            Ok(keys.iter().find(|k| k.hash == hash).cloned())
        }
        async fn keys(&self) -> Result<Vec<ApiKey>, MetaError> {
            Ok(self.keys.lock().unwrap().clone())
        }
        async fn revoke_key(&self, id: &KeyId, at: DateTime<Utc>) -> Result<bool, MetaError> {
            let mut keys = self.keys.lock().unwrap();
            let key = keys.iter_mut().find(|k| &k.id == id && k.is_active());
            Ok(key.map(|k| k.revoked_at = Some(at)).is_some())
        }
        async fn claim_submission(
            &self,
            _: &Tenant,
            _: &IdempotencyKey,
            _: &str,
            _: DateTime<Utc>,
            _: DateTime<Utc>,
        ) -> Result<Claim, MetaError> {
            Ok(Claim::Claimed)
        }
        async fn complete_submission(
            &self,
            _: &Tenant,
            _: &IdempotencyKey,
            _: &str,
            _: &Completed,
            _: DateTime<Utc>,
        ) -> Result<bool, MetaError> {
            Ok(true)
        }
        async fn release_submission(
            &self,
            _: &Tenant,
            _: &IdempotencyKey,
            _: &str,
        ) -> Result<(), MetaError> {
            Ok(())
        }
        async fn count_in_window(
            &self,
            _: &str,
            _: i64,
            _: i64,
            _: u64,
        ) -> Result<(bool, u64), MetaError> {
            Ok((true, 1))
        }
        async fn forget_submission(
            &self,
            _: &Tenant,
            _: &IdempotencyKey,
            _: &str,
        ) -> Result<(), MetaError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn revocation_counts_at_once_and_an_outage_keeps_recent_keys() {
        let store = Arc::new(Keys::default());
        let service = KeyService::new(store.clone());
        let a = service
            .create("team-a", "read", None, QuotaSettings::default())
            .await
            .unwrap();
        let b = service
            .create("team-b", "read", None, QuotaSettings::default())
            .await
            .unwrap();
        let caller = service.authenticate(&a.token).await.unwrap();
        assert_eq!(caller.tenant.as_str(), "team-a");
        assert!(matches!(
            service.authenticate("ipk_not-a-key-at-all").await,
            Err(KeyError::Invalid)
        ));

        // The store is down: a key seen a moment ago still counts, one
        // never seen gets the outage.
        store.down.store(true, Ordering::SeqCst);
        assert_eq!(service.authenticate(&a.token).await.unwrap(), caller);
        assert!(matches!(
            service.authenticate(&b.token).await,
            Err(KeyError::Store(_))
        ));
        store.down.store(false, Ordering::SeqCst);

        // Revoked: refused from the next request, and not remembered.
        service.revoke(a.key.id.as_str()).await.unwrap();
        assert!(matches!(
            service.authenticate(&a.token).await,
            Err(KeyError::Invalid)
        ));
        store.down.store(true, Ordering::SeqCst);
        assert!(service.authenticate(&a.token).await.is_err());
    }

    #[tokio::test]
    async fn a_bootstrap_key_is_ensured_once_and_never_revived() {
        let store = Arc::new(Keys::default());
        let service = KeyService::new(store.clone());
        assert!(matches!(
            service.bootstrap("short").await,
            Err(KeyError::WeakBootstrap)
        ));
        let token = "b".repeat(40);
        assert_eq!(service.bootstrap(&token).await.unwrap(), Bootstrap::Created);
        assert_eq!(service.bootstrap(&token).await.unwrap(), Bootstrap::Existed);
        let id = store.keys().await.unwrap()[0].id.clone();
        service.revoke(id.as_str()).await.unwrap();
        assert_eq!(service.bootstrap(&token).await.unwrap(), Bootstrap::Revoked);
        assert!(service.authenticate(&token).await.is_err());
    }
}
