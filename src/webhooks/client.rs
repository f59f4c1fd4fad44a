//! The HTTP side of a delivery: resolve the URL's host, refuse it if any
//! address is outside the [`Policy`], POST the signed payload with no
//! redirects followed and a 15 s limit, and say how it went as a
//! [`retry::Attempt`](super::retry::Attempt). The connection goes only to
//! addresses checked by the same policy (the client's resolver checks them
//! again), so a DNS answer that changes between the check and the connect
//! cannot slip a private address through.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use super::retry::Attempt;
use super::target::{check_url, Policy, Refused};

/// The most a try may take, connection included.
pub const TRY_TIMEOUT: Duration = Duration::from_secs(15);

/// A request to send: the URL and the Standard Webhooks headers' values.
pub struct Request<'a> {
    pub url: &'a str,
    pub id: &'a str,
    pub timestamp: i64,
    pub signature: String,
    pub body: String,
}

/// Why a try did not reach a receiver at all, and whether trying again may help.
#[derive(Debug)]
pub enum Unsent {
    /// The URL or its address is not allowed: trying again will not help.
    Refused(Refused),
}

/// Sends deliveries; one per process (it keeps connections to receivers).
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    policy: Arc<Policy>,
}

/// Resolves with the system's resolver and keeps only allowed addresses.
struct Checked(Arc<Policy>);

impl Resolve for Checked {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let addrs = lookup(name.as_str(), 0).await?;
            let allowed: Vec<SocketAddr> = addrs
                .into_iter()
                .filter(|a| policy.check(a.ip()).is_ok())
                .collect();
            if allowed.is_empty() {
                return Err("no allowed address".into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The system resolver, within [`TRY_TIMEOUT`].
async fn lookup(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    match tokio::time::timeout(TRY_TIMEOUT, tokio::net::lookup_host((host, port))).await {
        Ok(found) => Ok(found?.collect()),
        Err(_) => Err(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "no DNS answer in time",
        )),
    }
}

/// Checks `url` and every address its host has now: what a job's
/// `webhook_url` must pass at submission, and every delivery before it is sent.
pub async fn check(url: &str, policy: &Policy) -> Result<Url, CheckError> {
    let url = check_url(url).map_err(CheckError::Refused)?;
    let port = url.port_or_known_default().unwrap_or(443);
    let ips: Vec<IpAddr> = match url.host() {
        Some(Host::Ipv4(ip)) => vec![IpAddr::V4(ip)],
        Some(Host::Ipv6(ip)) => vec![IpAddr::V6(ip)],
        Some(Host::Domain(name)) => lookup(name, port)
            .await
            .map_err(|e| CheckError::Unresolved(format!("{name}: {e}")))?
            .into_iter()
            .map(|a| a.ip())
            .collect(),
        None => return Err(CheckError::Refused(Refused::NoHost)),
    };
    if ips.is_empty() {
        return Err(CheckError::Unresolved("no address".into()));
    }
    for ip in ips {
        policy.check(ip).map_err(CheckError::Refused)?;
    }
    Ok(url)
}

#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    #[error(transparent)]
    Refused(Refused),
    #[error("webhook_url's host does not resolve ({0})")]
    Unresolved(String),
}

impl Client {
    pub fn new(policy: Policy) -> Result<Client, String> {
        let policy = Arc::new(policy);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(TRY_TIMEOUT)
            .connect_timeout(TRY_TIMEOUT)
            .dns_resolver(Arc::new(Checked(policy.clone())))
            .user_agent(concat!("imgpipe-webhooks/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the webhook HTTP client: {e}"))?;
        Ok(Client { http, policy })
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// One try. `Err` only when the URL is refused outright.
    pub async fn send(&self, request: Request<'_>) -> Result<Attempt, Unsent> {
        let url = match check(request.url, &self.policy).await {
            Ok(url) => url,
            Err(CheckError::Refused(r)) => return Err(Unsent::Refused(r)),
            Err(CheckError::Unresolved(e)) => return Ok(Attempt::Failed(format!("DNS: {e}"))),
        };
        let sent = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("webhook-id", request.id)
            .header("webhook-timestamp", request.timestamp.to_string())
            .header("webhook-signature", request.signature)
            .body(request.body)
            .send()
            .await;
        match sent {
            Ok(answer) => Ok(Attempt::Answered {
                status: answer.status().as_u16(),
                retry_after: answer
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(retry_after),
            }),
            Err(e) if e.is_timeout() => Ok(Attempt::Failed(format!(
                "no answer within {} s",
                TRY_TIMEOUT.as_secs()
            ))),
            Err(e) if e.is_connect() => Ok(Attempt::Failed(format!(
                "cannot connect: {}",
                innermost(&e)
            ))),
            Err(e) => Ok(Attempt::Failed(innermost(&e))),
        }
    }
}

/// The most specific message of an error chain (reqwest's own is generic).
fn innermost(e: &(dyn std::error::Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    last.to_string()
}

/// `Retry-After`: seconds, or an HTTP date.
fn retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
        .to_std()
        .ok()
        .or(Some(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds_or_as_a_date() {
        assert_eq!(retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon"), None);
    }

    #[tokio::test]
    async fn private_addresses_are_refused_unless_allowed() {
        let closed = Policy::default();
        let refused = check("http://127.0.0.1:9/hook", &closed).await;
        assert!(
            matches!(refused, Err(CheckError::Refused(Refused::Address { .. }))),
            "{refused:?}"
        );
        let refused = check("http://localhost:9/hook", &closed).await;
        assert!(
            matches!(refused, Err(CheckError::Refused(_))),
            "{refused:?}"
        );
        let open = Policy::parse("127.0.0.0/8,::1").expect("valid");
        assert!(check("http://localhost:9/hook", &open).await.is_ok());
        let bad = check("ftp://example.com/", &open).await;
        assert!(matches!(bad, Err(CheckError::Refused(Refused::Scheme(_)))));
    }
}
