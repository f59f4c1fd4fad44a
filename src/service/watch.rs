//! One watcher of one job (`GET /jobs/{id}/events`): the frames it is sent,
//! in order. Without a resume point it starts with a snapshot of the
//! status; with one (`Last-Event-ID`) it gets exactly the events after it.
//! Then each event once, in `seq` order, up to the final event, which
//! carries the job's status as `GET /status-job/{id}` would answer it then.
//! Frames go through a bounded channel: a watcher that stops reading (or
//! disconnects) ends its task.

use std::time::Duration;

use tokio::sync::{broadcast, mpsc};

use super::events::{Subscription, PAGE};
use super::{JobError, JobService};
use crate::auth::Access;
use crate::jobs::events::{Event, EventKind};
use crate::jobs::status::JobStatus;
use crate::jobs::JobId;

/// How often an idle stream sends a comment, so that proxies keep it open.
pub const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// What a watcher is sent.
#[derive(Debug)]
pub enum Frame {
    /// The status when the watcher connected; `seq`: the last event it covers.
    Snapshot {
        seq: u64,
        status: Box<JobStatus>,
    },
    Event(Event),
    /// The last frame. `status` is `None` when the job is gone (deleted).
    Final {
        event: Event,
        status: Option<Box<JobStatus>>,
    },
    KeepAlive,
}

impl JobService {
    /// Checks that `access` may watch the job, then follows it; see the
    /// module doc. `after`: the last event the client has.
    pub async fn watch(
        &self,
        id: &str,
        access: Access,
        after: Option<u64>,
    ) -> Result<mpsc::Receiver<Frame>, JobError> {
        let record = self.record(id, &access).await?;
        let job = record.job.id;
        let subscription = self.events.subscribe(job).await?;
        let (tx, rx) = mpsc::channel(64);
        let watcher = Watcher {
            service: self.clone(),
            id: id.to_string(),
            job,
            access,
            tx,
        };
        tokio::spawn(async move {
            // `None`: the client went away, or the store failed (logged).
            let _ = watcher.run(subscription, after).await;
        });
        Ok(rx)
    }
}

struct Watcher {
    service: JobService,
    id: String,
    job: JobId,
    access: Access,
    tx: mpsc::Sender<Frame>,
}

impl Watcher {
    async fn send(&self, frame: Frame) -> Option<()> {
        self.tx.send(frame).await.ok()
    }

    async fn status(&self) -> Option<Box<JobStatus>> {
        self.service
            .status(&self.id, &self.access)
            .await
            .ok()
            .map(Box::new)
    }

    /// Sends one event; `None` once the stream is over (final, or gone).
    async fn event(&self, event: Event) -> Option<()> {
        if event.kind.is_final() {
            let status = match event.kind {
                EventKind::JobDeleted => None,
                _ => self.status().await,
            };
            self.send(Frame::Final { event, status }).await;
            return None;
        }
        self.send(Frame::Event(event)).await
    }

    fn log_error<T>(&self, result: Result<T, crate::meta::MetaError>) -> Option<T> {
        result
            .map_err(|e| log::warn!("job {}: watching its events: {e}", self.job))
            .ok()
    }

    async fn run(self, mut subscription: Subscription, after: Option<u64>) -> Option<()> {
        let log = self.service.events.log();
        let mut cursor = match after {
            Some(seq) => {
                // Resuming at or past a final event: nothing follows it.
                let last = self.log_error(log.last_seq(self.job).await)?;
                if last == 0 && self.status().await?.status.is_terminal() {
                    // A job that ended before events were recorded has none.
                    return None;
                }
                if last > 0 && seq >= last {
                    let tail = self.log_error(log.events_after(self.job, last - 1, 1).await)?;
                    if tail.iter().any(|e| e.kind.is_final()) {
                        return None;
                    }
                }
                seq
            }
            None => {
                let seq = self.log_error(log.last_seq(self.job).await)?;
                let status = self.status().await?;
                let ended = status.status.is_terminal();
                self.send(Frame::Snapshot { seq, status }).await?;
                if ended {
                    // Its final event is its last: send it and end.
                    let last =
                        self.log_error(log.events_after(self.job, seq.saturating_sub(1), 1).await)?;
                    for event in last.into_iter().filter(|e| e.kind.is_final()) {
                        self.event(event).await;
                    }
                    return None;
                }
                seq
            }
        };
        loop {
            // Catch up from the log...
            loop {
                let events = self.log_error(log.events_after(self.job, cursor, PAGE).await)?;
                let full = events.len() == PAGE;
                for event in events {
                    cursor = event.seq;
                    self.event(event).await?;
                }
                if !full {
                    break;
                }
            }
            // ...then follow the hub until a gap sends us back to the log.
            loop {
                tokio::select! {
                    received = subscription.events.recv() => match received {
                        Ok(event) if event.seq <= cursor => {}
                        Ok(event) if event.seq == cursor + 1 => {
                            cursor = event.seq;
                            self.event(Event::clone(&event)).await?;
                        }
                        Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return None,
                    },
                    () = tokio::time::sleep(KEEP_ALIVE) => {
                        self.send(Frame::KeepAlive).await?;
                        // An expired job makes no event: end with it.
                        if !self.log_error(self.service.meta.is_live(self.job).await)? {
                            return None;
                        }
                    }
                    () = self.tx.closed() => return None,
                }
            }
        }
    }
}
