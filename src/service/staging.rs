//! A submission's uploads while its request is still arriving. Each upload
//! is examined (`examine`) as soon as it is received and, once it passes,
//! stored under its input key in the job it will belong to, so that storage
//! overlaps the rest of the upload instead of following it: the POST waits
//! only for the last files' writes.
//!
//! Decides nothing: `submit` judges the examined uploads and the request,
//! and takes the stored inputs over ([`Staging::finish`]) only when it
//! records the job. Must not: store an upload that failed its examination,
//! store more than [`STORE_CONCURRENCY`] uploads of one request at once,
//! leave behind an object no job owns, or let an upload's [`Keep`] go while
//! anything here may still read its bytes. A refused submission's stored inputs
//! are removed before it is answered ([`Staging::abandon`]); those of a
//! request that was cancelled (its client went away) or that failed on a
//! backend are removed in the background when the staging is dropped.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::{oneshot, Semaphore};
use tokio::task::JoinHandle;

use super::examine::{examine, Content, Examined, Upload};
use super::idempotency::Claimed;
use super::{JobError, JobService};
use crate::jobs::intake::Limits;
use crate::jobs::{input_key, JobId};
use crate::store::ObjectStore;

/// How many uploads of one request are written to storage at once.
const STORE_CONCURRENCY: usize = 8;

const CONTENT_TYPE: &str = "application/octet-stream";

/// How long a refusal waits for its stored uploads to be removed.
const ABANDON_WAIT: Duration = Duration::from_secs(5);

/// What keeps an upload's bytes accounted for or on disk: the caller's
/// (its share of a memory budget, its spooled file), opaque here. Dropped
/// once neither the staging nor the upload's write needs the bytes, so that
/// a write still under way after a refusal or a cancelled request keeps its
/// bytes counted, and its file in place, until it ends.
pub type Keep = Arc<dyn Send + Sync>;

/// The uploads of one submission, examined and stored as they arrive.
pub struct Staging {
    /// The job they will belong to (minted now: the keys name it).
    job_id: JobId,
    store: Arc<dyn ObjectStore>,
    limits: Limits,
    /// Hash each upload (for an `Idempotency-Key`'s fingerprint).
    hash: bool,
    /// Store each upload as it passes. Not for a request that repeats an
    /// earlier one: it gets that one's answer, and nothing is stored.
    early: bool,
    permits: Arc<Semaphore>,
    ledger: Arc<Mutex<Ledger>>,
    received: Vec<Received>,
    /// Taken over by a job, or cleaned up: nothing left to remove.
    settled: bool,
}

/// What this staging has stored, shared with its uploads' tasks.
#[derive(Default)]
struct Ledger {
    /// Set once the submission is given up: a write that finishes after it
    /// removes its own object.
    abandoned: bool,
    stored: Vec<String>,
}

/// One upload: its examination's answer to come, and its storing.
struct Received {
    upload: Upload,
    _keep: Keep,
    examined: oneshot::Receiver<Result<Examined, JobError>>,
    /// `true`: stored; `false`: not stored (failed its examination, not
    /// stored early, or given up). Taken once awaited.
    storing: Option<JoinHandle<Result<bool, JobError>>>,
}

impl JobService {
    /// Where one submission's uploads go as they arrive; `claim` is its
    /// `Idempotency-Key`'s, if it has one.
    pub fn staging(&self, claim: Option<&Claimed>) -> Staging {
        Staging {
            job_id: JobId::new(),
            store: self.store.clone(),
            limits: self.limits,
            hash: claim.is_some(),
            early: claim.is_none_or(|c| c.earlier.is_none()),
            permits: Arc::new(Semaphore::new(STORE_CONCURRENCY)),
            ledger: Arc::default(),
            received: Vec::new(),
            settled: false,
        }
    }
}

impl Staging {
    pub(super) fn job_id(&self) -> JobId {
        self.job_id
    }

    /// How many uploads were received.
    pub fn len(&self) -> usize {
        self.received.len()
    }

    pub fn is_empty(&self) -> bool {
        self.received.is_empty()
    }

    /// Starts examining `upload` and, once it passes, storing it; `keep`
    /// lives as long as anything here may read the upload's bytes.
    pub fn receive(&mut self, upload: Upload, keep: Keep) {
        let key = input_key(self.job_id, self.received.len());
        let (name, content) = (upload.filename.clone(), upload.content.clone());
        let (limits, hash, early) = (self.limits, self.hash, self.early);
        let (store, permits, ledger) = (
            self.store.clone(),
            self.permits.clone(),
            self.ledger.clone(),
        );
        let (tell, examined) = oneshot::channel();
        let held = keep.clone();
        let storing = tokio::spawn(async move {
            let checked = {
                let content = content.clone();
                // Held by the examination too: it goes on should this task
                // be dropped (the runtime shutting down).
                let held = held.clone();
                tokio::task::spawn_blocking(move || {
                    let _held = held;
                    examine(&name, &content, &limits, hash)
                })
                .await
                .unwrap_or_else(|e| Err(JobError::Internal(format!("inspection crashed: {e}"))))
            };
            let passed = checked.is_ok();
            // The submission may have been refused meanwhile: no one listens.
            let _ = tell.send(checked);
            if !passed || !early {
                return Ok(false);
            }
            let stored = store_one(store.as_ref(), &key, content, &permits, &ledger).await;
            drop(held);
            stored
        });
        self.received.push(Received {
            upload,
            _keep: keep,
            examined,
            storing: Some(storing),
        });
    }

    /// The uploads, each with what its examination found, in the order they
    /// were received; the first problem in that order refuses them all.
    /// The uploads' storing goes on meanwhile.
    pub(super) async fn examined(&mut self) -> Result<Vec<(Upload, Examined)>, JobError> {
        let mut found = Vec::with_capacity(self.received.len());
        for one in &mut self.received {
            let examined = (&mut one.examined)
                .await
                .map_err(|_| JobError::Internal("inspection crashed".into()))??;
            found.push((one.upload.clone(), examined));
        }
        Ok(found)
    }

    /// Waits until every upload is stored (storing now any that was not
    /// stored early) and hands them over: from here on the job owns them.
    /// On an error, nothing is handed over and dropping the staging removes
    /// what was stored.
    pub(super) async fn finish(&mut self) -> Result<(), JobError> {
        for (index, one) in self.received.iter_mut().enumerate() {
            let stored = match one.storing.take() {
                Some(storing) => storing
                    .await
                    .map_err(|e| JobError::Internal(format!("storing an upload crashed: {e}")))??,
                None => false,
            };
            if !stored {
                let key = input_key(self.job_id, index);
                store_one(
                    self.store.as_ref(),
                    &key,
                    one.upload.content.clone(),
                    &self.permits,
                    &self.ledger,
                )
                .await?;
            }
        }
        self.settled = true;
        Ok(())
    }

    /// Gives the submission up: waits for its uploads' tasks and removes
    /// every input they stored, before the refusal is answered; but a
    /// refusal does not wait past `ABANDON_WAIT` on a slow store, whose
    /// removals then go on in the background.
    pub async fn abandon(mut self) {
        self.settled = true;
        let received = std::mem::take(&mut self.received);
        let removing = tokio::spawn(remove_stored(
            self.store.clone(),
            self.ledger.clone(),
            received,
        ));
        if tokio::time::timeout(ABANDON_WAIT, removing).await.is_err() {
            log::warn!(
                "job {}: the uploads of a refused submission are still being removed",
                self.job_id
            );
        }
    }
}

impl Drop for Staging {
    /// Not finished nor abandoned (a request cancelled, a backend failure):
    /// the stored inputs are removed in the background.
    fn drop(&mut self) {
        if self.settled {
            return;
        }
        let cleanup = remove_stored(
            self.store.clone(),
            self.ledger.clone(),
            std::mem::take(&mut self.received),
        );
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(cleanup);
            }
            Err(_) => log::warn!(
                "job {}: uploads staged outside a runtime were not removed",
                self.job_id
            ),
        }
    }
}

/// Stores one upload unless the submission was given up; one that was
/// given up while it was written is removed again.
async fn store_one(
    store: &dyn ObjectStore,
    key: &str,
    content: Content,
    permits: &Semaphore,
    ledger: &Mutex<Ledger>,
) -> Result<bool, JobError> {
    let _permit = permits
        .acquire()
        .await
        .map_err(|e| JobError::Internal(format!("upload slots: {e}")))?;
    if lock(ledger).abandoned {
        return Ok(false);
    }
    match content {
        Content::Memory(bytes) => store.put_bytes(key, bytes, CONTENT_TYPE).await?,
        Content::File(path) => store.put_file(key, &path, CONTENT_TYPE).await?,
    }
    let abandoned = {
        let mut ledger = lock(ledger);
        if !ledger.abandoned {
            ledger.stored.push(key.to_string());
        }
        ledger.abandoned
    };
    if abandoned {
        remove(store, key).await;
        return Ok(false);
    }
    Ok(true)
}

/// Marks the submission given up, waits for its uploads' tasks (each
/// removes what it stores from then on) and removes what they had stored.
async fn remove_stored(
    store: Arc<dyn ObjectStore>,
    ledger: Arc<Mutex<Ledger>>,
    received: Vec<Received>,
) {
    lock(&ledger).abandoned = true;
    for storing in received.into_iter().filter_map(|one| one.storing) {
        // Its outcome no longer matters: only what it stored.
        let _ = storing.await;
    }
    let stored = std::mem::take(&mut lock(&ledger).stored);
    for key in stored {
        remove(store.as_ref(), &key).await;
    }
}

async fn remove(store: &dyn ObjectStore, key: &str) {
    if let Err(e) = store.delete(key).await {
        log::warn!("could not remove {key}, an upload of a refused submission: {e}");
    }
}

/// The ledger is a list and a flag: a panic elsewhere leaves it usable.
fn lock(ledger: &Mutex<Ledger>) -> std::sync::MutexGuard<'_, Ledger> {
    ledger.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests;
