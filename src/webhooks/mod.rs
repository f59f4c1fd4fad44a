//! Webhooks: pushing a job's events to a URL its submitter gave, signed as
//! the Standard Webhooks specification (standardwebhooks.com) says. The
//! decisions live here, pure and unit-tested; the delivery (HTTP, the
//! durable queue, DNS) is at the edges and is not built yet: these are its
//! parts.
//!
//! - `signing` the `whsec_` secrets and the `v1,` HMAC-SHA256 signatures
//! - `target`  which URLs and addresses a delivery may go to (no SSRF)
//! - `retry`   what to do after an attempt: done, stop, retry when, give up
//!
//! Must not: know about HTTP frameworks or queues.

pub mod retry;
pub mod signing;
pub mod target;
