//! A job's webhook: where its events are pushed and which of them. Set at
//! submission (`webhook_url`, `webhook_events`), recorded with the job and
//! never changed. Pure: where a URL may point is `webhooks::target`'s
//! business, delivering is `service::webhooks`'.

use serde::{Deserialize, Serialize};

use super::events::EventKind;

/// The events sent when a job names none: its final one.
pub const DEFAULT_EVENTS: [EventKind; 4] = [
    EventKind::JobCompleted,
    EventKind::JobCompletedWithErrors,
    EventKind::JobFailed,
    EventKind::JobDeleted,
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Webhook {
    pub url: String,
    /// The events delivered, in [`EventKind::ALL`]'s order, none twice.
    pub events: Vec<EventKind>,
}

/// Why `webhook_events` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadEvents {
    #[error("webhook_events names {0:?}, which is not an event (one of: {names}, or \"final\" or \"all\")", names = names())]
    Unknown(String),
    #[error("webhook_events is empty; leave it out for the final event only")]
    Empty,
}

fn names() -> String {
    EventKind::ALL.map(EventKind::name).join(", ")
}

impl Webhook {
    /// `events`: comma-separated event names, `final` (the default: every
    /// final event) and `all`.
    pub fn new(url: String, events: Option<&str>) -> Result<Webhook, BadEvents> {
        let Some(list) = events else {
            return Ok(Webhook {
                url,
                events: DEFAULT_EVENTS.to_vec(),
            });
        };
        let mut wanted = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "all" => wanted.extend(EventKind::ALL),
                "final" => wanted.extend(DEFAULT_EVENTS),
                other => wanted
                    .push(EventKind::parse(other).ok_or_else(|| BadEvents::Unknown(other.into()))?),
            }
        }
        if wanted.is_empty() {
            return Err(BadEvents::Empty);
        }
        let events = EventKind::ALL
            .into_iter()
            .filter(|k| wanted.contains(k))
            .collect();
        Ok(Webhook { url, events })
    }

    /// The events as the stores match them: `,name,name,` (a substring test
    /// in SQL and Lua, where a list is awkward).
    pub fn filter(&self) -> String {
        let mut text = String::from(",");
        for kind in &self.events {
            text.push_str(kind.name());
            text.push(',');
        }
        text
    }

    pub fn wants(&self, kind: EventKind) -> bool {
        self.events.contains(&kind)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not yet delivered; tried again at `next_at`.
    Pending,
    Delivered,
    /// Given up: too old to try again, or the URL was refused.
    Failed,
    /// The receiver answered 410 Gone: nothing more goes to it for the job.
    Stopped,
}

impl DeliveryState {
    pub fn name(self) -> &'static str {
        match self {
            DeliveryState::Pending => "pending",
            DeliveryState::Delivered => "delivered",
            DeliveryState::Failed => "failed",
            DeliveryState::Stopped => "stopped",
        }
    }

    pub fn parse(name: &str) -> Option<DeliveryState> {
        [
            DeliveryState::Pending,
            DeliveryState::Delivered,
            DeliveryState::Failed,
            DeliveryState::Stopped,
        ]
        .into_iter()
        .find(|s| s.name() == name)
    }
}

/// The webhook part of a job's status: where, which events, how many
/// deliveries are in each state, and the latest of them.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WebhookStatus {
    pub url: String,
    pub events: Vec<EventKind>,
    pub pending: u64,
    pub delivered: u64,
    pub failed: u64,
    pub stopped: u64,
    /// The latest deliveries, newest first.
    pub deliveries: Vec<DeliveryStatus>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryStatus {
    /// The `webhook-id` header it is sent with (the same on every retry).
    pub webhook_id: String,
    pub seq: u64,
    pub event: String,
    pub state: DeliveryState,
    pub attempts: u32,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub next_try_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The `webhook-id` of event `seq` of `job`: stable across retries, unique
/// per event.
pub fn message_id(job: super::JobId, seq: u64) -> String {
    format!("msg_{}_{seq}", job.to_string().replace('-', ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url() -> String {
        "https://example.com/hook".into()
    }

    #[test]
    fn the_default_is_the_final_event() {
        let hook = Webhook::new(url(), None).expect("valid");
        assert_eq!(hook.events, DEFAULT_EVENTS.to_vec());
        assert!(hook.events.iter().all(|k| k.is_final()));
        assert_eq!(
            hook.filter(),
            ",job.completed,job.completed_with_errors,job.failed,job.deleted,"
        );
    }

    #[test]
    fn names_aliases_and_order() {
        let hook = Webhook::new(url(), Some(" job.progress , final,job.progress")).expect("valid");
        assert_eq!(hook.events[0], EventKind::JobProgress);
        assert_eq!(hook.events.len(), 5);
        assert!(hook.wants(EventKind::JobDeleted));
        assert!(!hook.wants(EventKind::ImageStarted));
        let all = Webhook::new(url(), Some("all")).expect("valid");
        assert_eq!(all.events, EventKind::ALL.to_vec());
    }

    #[test]
    fn unknown_and_empty_lists_are_refused() {
        let err = Webhook::new(url(), Some("job.done")).expect_err("unknown");
        assert!(err.to_string().contains("\"job.done\""), "{err}");
        assert!(err.to_string().contains("image.started"), "{err}");
        assert_eq!(Webhook::new(url(), Some(" , ")), Err(BadEvents::Empty));
    }
}
