//! Webhooks: pushing a job's events to a URL its submitter gave, signed as
//! the Standard Webhooks specification (standardwebhooks.com) says. The
//! decisions are pure and unit-tested; `client` is the one edge (DNS and
//! HTTP). The deliveries' durable state and queue are `meta` and `queue`'s,
//! the loop that joins them `service::webhooks`.
//!
//! - `signing` the `whsec_` secrets and the `v1,` HMAC-SHA256 signatures
//! - `target`  which URLs and addresses a delivery may go to (no SSRF)
//! - `retry`   what to do after an attempt: done, stop, retry when, give up
//! - `client`  one try: resolve, check, POST, no redirects, 15 s
//!
//! Must not: know about HTTP frameworks, queues or stores.

pub mod client;
pub mod retry;
pub mod signing;
pub mod target;
