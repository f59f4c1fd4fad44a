//! Idempotent submissions (IETF httpapi `Idempotency-Key` draft): a client
//! that retries a `POST /process-job` with the same key gets the first
//! answer back instead of a second job. This module decides; the records
//! live in the metadata store, and `service::submit` does the I/O.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// How long a claim made when a request starts holds if its process dies
/// before answering; after that the key may be used again.
pub const PENDING_LEASE: Duration = Duration::from_secs(15 * 60);

/// A client's idempotency key, as sent in the header.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Idempotency-Key header must be 1 to 255 printable ASCII characters (optionally in double quotes)")]
pub struct BadKey;

impl IdempotencyKey {
    /// Accepts the draft's Structured Field string (`"…"`) or the bare
    /// token many clients send.
    pub fn parse(header: &str) -> Result<Self, BadKey> {
        let value = header.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        let ok = (1..=255).contains(&value.len())
            && value.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
            && !value.contains('"');
        if ok {
            Ok(IdempotencyKey(value.to_string()))
        } else {
            Err(BadKey)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A key as recorded with its job (already checked when it arrived).
    pub fn from_stored(key: String) -> Self {
        IdempotencyKey(key)
    }
}

/// What makes two submissions "the same request": the recipe, and each
/// file's name and SHA-256, in order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn of(recipe: &str, files: &[(String, [u8; 32])]) -> Self {
        let mut h = Sha256::new();
        h.update((recipe.len() as u64).to_le_bytes());
        h.update(recipe.as_bytes());
        for (name, digest) in files {
            h.update((name.len() as u64).to_le_bytes());
            h.update(name.as_bytes());
            h.update(digest);
        }
        Fingerprint(hex::encode(h.finalize()))
    }
}

/// A finished submission, kept as long as its job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Completed {
    pub fingerprint: Fingerprint,
    pub job_id: String,
    /// The 202 answer's JSON body, replayed byte for byte.
    pub response: String,
}

/// What the store holds for a (tenant, key) when a request claims it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// Nobody had it: this request owns it now.
    Claimed,
    /// Another request with this key has not answered yet.
    Pending,
    /// A request with this key already succeeded.
    Done(Completed),
}

/// What a request that found a finished submission under its key gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Same request: the first answer again, and no new job.
    Replay(Completed),
    /// Same key, different request: refused (422).
    Mismatch,
}

pub fn judge(done: Completed, request: &Fingerprint) -> Verdict {
    if &done.fingerprint == request {
        Verdict::Replay(done)
    } else {
        Verdict::Mismatch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_may_be_quoted_and_must_be_printable() {
        assert_eq!(
            IdempotencyKey::parse("\"abc-1\"").unwrap().as_str(),
            "abc-1"
        );
        assert_eq!(IdempotencyKey::parse("abc-1").unwrap().as_str(), "abc-1");
        for bad in ["", "\"\"", "caf\u{e9}", &"k".repeat(256), "a\"b"] {
            assert_eq!(IdempotencyKey::parse(bad), Err(BadKey), "{bad:?}");
        }
    }

    #[test]
    fn the_same_request_replays_and_any_difference_is_a_mismatch() {
        let files = vec![
            ("a.png".to_string(), [1; 32]),
            ("b.png".to_string(), [2; 32]),
        ];
        let fp = Fingerprint::of("blur", &files);
        let done = Completed {
            fingerprint: fp.clone(),
            job_id: "j".into(),
            response: "{}".into(),
        };
        assert_eq!(judge(done.clone(), &fp), Verdict::Replay(done.clone()));
        let mut swapped = files.clone();
        swapped.swap(0, 1);
        let mut renamed = files.clone();
        renamed[0].0 = "c.png".into();
        let mut changed = files.clone();
        changed[1].1[0] = 3;
        for other in [
            Fingerprint::of("sharpen", &files),
            Fingerprint::of("blur", &swapped),
            Fingerprint::of("blur", &renamed),
            Fingerprint::of("blur", &changed),
            Fingerprint::of("blur", &files[..1]),
        ] {
            assert_eq!(judge(done.clone(), &other), Verdict::Mismatch);
        }
    }
}
