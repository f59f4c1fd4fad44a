//! An in-memory [`ObjectStore`] for unit tests of the code above it. Can be
//! switched "down" to act out an outage, and can run a hook on each write to
//! act out what other processes do meanwhile. Test builds only.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectStore, ObjectStream, StoreError};
use crate::backend_error::ErrorKind;

type Hook = Box<dyn Fn(&str) + Send + Sync>;

#[derive(Default)]
pub struct MemoryStore {
    objects: Mutex<HashMap<String, Bytes>>,
    down: AtomicBool,
    on_put: Mutex<Option<Hook>>,
}

impl MemoryStore {
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Runs `hook(key)` before each write is stored.
    pub fn on_put(&self, hook: impl Fn(&str) + Send + Sync + 'static) {
        if let Ok(mut slot) = self.on_put.lock() {
            *slot = Some(Box::new(hook));
        }
    }

    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .objects
            .lock()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        keys.sort();
        keys
    }

    fn objects(
        &self,
        key: &str,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<String, Bytes>>, StoreError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(StoreError::new(
                ErrorKind::Unavailable,
                format!("{key}: memory store is down"),
            ));
        }
        self.objects
            .lock()
            .map_err(|_| StoreError::new(ErrorKind::Refused, "a test panicked holding the lock"))
    }
}

#[async_trait]
impl ObjectStore for MemoryStore {
    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        _content_type: &str,
    ) -> Result<(), StoreError> {
        let bytes = tokio::fs::read(path)
            .await
            .map_err(|e| StoreError::with_source(ErrorKind::Refused, key, e))?;
        self.put_bytes(key, Bytes::from(bytes), _content_type).await
    }

    async fn put_bytes(
        &self,
        key: &str,
        bytes: Bytes,
        _content_type: &str,
    ) -> Result<(), StoreError> {
        // Fail before the hook while down, as a real store would.
        drop(self.objects(key)?);
        if let Ok(hook) = self.on_put.lock() {
            if let Some(hook) = hook.as_ref() {
                hook(key);
            }
        }
        self.objects(key)?.insert(key.to_string(), bytes);
        Ok(())
    }

    async fn get_bytes(&self, key: &str) -> Result<Bytes, StoreError> {
        self.objects(key)?
            .get(key)
            .cloned()
            .ok_or_else(|| StoreError::new(ErrorKind::NotFound, key))
    }

    async fn get_stream(&self, key: &str) -> Result<ObjectStream, StoreError> {
        let bytes = self.get_bytes(key).await?;
        Ok(ObjectStream {
            size: bytes.len() as u64,
            stream: Box::pin(futures::stream::once(async move { Ok(bytes) })),
        })
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.objects(key)?.remove(key);
        Ok(())
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.objects("").map(|_| ())
    }
}
