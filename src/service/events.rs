//! Live job events for watchers (`GET /jobs/{id}/events`): a watcher first
//! catches up from the event log, then follows new events as they are
//! appended, to the job's final event.
//!
//! One process-wide [`EventHub`] holds one change subscription to the store
//! (Redis pub/sub, or a short poll of SQLite) while anyone watches, reads
//! each changed job's new events once, and fans them out to all of that
//! job's watchers: fifty watchers of a job cost one read per change, not
//! fifty. Must not: hold events itself (the log in the store is the truth;
//! a watcher that falls behind re-reads it), or know about HTTP.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::broadcast;

use crate::jobs::events::Event;
use crate::jobs::JobId;
use crate::meta::{EventLog, MetaError};

/// Events a job's watchers may fall behind by before they re-read the log.
const FAN_OUT: usize = 512;
/// Events read from the log per query.
pub(super) const PAGE: usize = 256;
/// How often every watched job is re-read whatever the subscription says:
/// a backstop for a pub/sub message lost to a reconnect.
const BACKSTOP: Duration = Duration::from_secs(1);

/// See the module doc. Cloning shares the hub.
#[derive(Clone)]
pub struct EventHub {
    log: Arc<dyn EventLog>,
    state: Arc<Mutex<HubState>>,
}

#[derive(Default)]
struct HubState {
    jobs: HashMap<JobId, Watched>,
    /// Whether the dispatcher task runs (it stops when `jobs` empties).
    running: bool,
}

struct Watched {
    fan_out: broadcast::Sender<Arc<Event>>,
    /// The last event sent to `fan_out`.
    last: u64,
    watchers: usize,
}

/// One watcher's share of the hub: new events of its job, from the moment
/// it subscribed (possibly some it already has: compare `seq`).
pub struct Subscription {
    pub events: broadcast::Receiver<Arc<Event>>,
    hub: EventHub,
    job: JobId,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut state = self.hub.lock();
        if let Some(watched) = state.jobs.get_mut(&self.job) {
            watched.watchers -= 1;
            if watched.watchers == 0 {
                state.jobs.remove(&self.job);
            }
        }
    }
}

impl EventHub {
    pub fn new(log: Arc<dyn EventLog>) -> Self {
        EventHub {
            log,
            state: Arc::default(),
        }
    }

    pub fn log(&self) -> &dyn EventLog {
        self.log.as_ref()
    }

    fn lock(&self) -> MutexGuard<'_, HubState> {
        // The state stays consistent across a panic (every change is one
        // field), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts following `job`. Subscribe before reading the log to catch
    /// up: every event appended after that read then reaches `events`.
    pub async fn subscribe(&self, job: JobId) -> Result<Subscription, MetaError> {
        let known = self.lock().jobs.contains_key(&job);
        let last = if known {
            0
        } else {
            self.log.last_seq(job).await?
        };
        let mut state = self.lock();
        let watched = state.jobs.entry(job).or_insert_with(|| Watched {
            fan_out: broadcast::channel(FAN_OUT).0,
            last,
            watchers: 0,
        });
        watched.watchers += 1;
        let events = watched.fan_out.subscribe();
        if !state.running {
            state.running = true;
            tokio::spawn(dispatch(self.clone()));
        }
        Ok(Subscription {
            events,
            hub: self.clone(),
            job,
        })
    }

    /// Jobs watched now; stops the dispatcher (returns `None`) when none are.
    fn watched_or_stop(&self) -> Option<Vec<JobId>> {
        let mut state = self.lock();
        if state.jobs.is_empty() {
            state.running = false;
            return None;
        }
        Some(state.jobs.keys().copied().collect())
    }

    /// Reads a watched job's events past the last one sent, and sends them.
    async fn refresh(&self, job: JobId) {
        loop {
            let Some(last) = self.lock().jobs.get(&job).map(|w| w.last) else {
                return;
            };
            let events = match self.log.events_after(job, last, PAGE).await {
                Ok(events) => events,
                Err(e) => {
                    log::warn!("job {job}: reading its events: {e}");
                    return;
                }
            };
            let full = events.len() == PAGE;
            let mut state = self.lock();
            let Some(watched) = state.jobs.get_mut(&job) else {
                return;
            };
            for event in events {
                if event.seq > watched.last {
                    watched.last = event.seq;
                    // No receivers left is fine: the entry goes with them.
                    let _ = watched.fan_out.send(Arc::new(event));
                }
            }
            if !full {
                return;
            }
        }
    }
}

/// The hub's one task: follows the store's changes while anyone watches.
async fn dispatch(hub: EventHub) {
    let mut changes = None;
    let mut backstop = tokio::time::interval(BACKSTOP);
    while let Some(watched) = hub.watched_or_stop() {
        let Some(stream) = changes.as_mut() else {
            match hub.log.changes().await {
                Ok(stream) => changes = Some(stream),
                Err(e) => {
                    log::warn!("subscribing to job events: {e}; retrying");
                    tokio::time::sleep(BACKSTOP).await;
                }
            }
            continue;
        };
        tokio::select! {
            batch = stream.next() => match batch {
                Some(jobs) => {
                    for job in jobs {
                        hub.refresh(job).await;
                    }
                }
                None => changes = None,
            },
            _ = backstop.tick() => {
                for job in watched {
                    hub.refresh(job).await;
                }
            }
        }
    }
}
