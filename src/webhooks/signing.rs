//! Standard Webhooks signing: a delivery carries `webhook-id`,
//! `webhook-timestamp` (Unix seconds) and `webhook-signature`, which is
//! `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` under the
//! secret's bytes. Secrets are written `whsec_` + base64.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "whsec_";

fn keyed(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"))
}

/// A webhook signing secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a webhook secret is \"whsec_\" followed by base64 of 24 to 64 random bytes")]
pub struct BadSecret;

impl Secret {
    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Secret, BadSecret> {
        let encoded = text.trim().strip_prefix(PREFIX).ok_or(BadSecret)?;
        let bytes = STANDARD.decode(encoded).map_err(|_| BadSecret)?;
        if !(24..=64).contains(&bytes.len()) {
            return Err(BadSecret);
        }
        Ok(Secret(bytes))
    }

    /// The key's bytes (what a tenant's secret is derived from).
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }

    /// A tenant's secret, derived from the server's master key: the same in
    /// every process, shown by `imgpipe keys`, never stored.
    pub fn derive(master: &[u8], tenant: &str) -> Secret {
        let mut mac = keyed(master);
        mac.update(b"imgpipe webhook secret\0");
        mac.update(tenant.as_bytes());
        Secret(mac.finalize().into_bytes().to_vec())
    }

    /// As clients configure it: `whsec_<base64>`.
    pub fn to_text(&self) -> String {
        format!("{PREFIX}{}", STANDARD.encode(&self.0))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        let mut mac = keyed(&self.0);
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `webhook-signature` header's value.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let digest = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(digest))
    }

    /// Whether any `v1,` signature of a `webhook-signature` header (several
    /// may be given, space-separated, while a secret is rotated) is this
    /// secret's; compared in constant time.
    pub fn verify(&self, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
        header.split(' ').any(|signature| {
            let Some(encoded) = signature.strip_prefix("v1,") else {
                return false;
            };
            let Ok(given) = STANDARD.decode(encoded) else {
                return false;
            };
            self.mac(id, timestamp, body).verify_slice(&given).is_ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vector of the Standard Webhooks specification's libraries.
    #[test]
    fn standard_webhooks_test_vector() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let (id, timestamp, body) = (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        );
        let expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(secret.sign(id, timestamp, body), expected);
        assert!(secret.verify(id, timestamp, body, expected));
        assert!(secret.verify(id, timestamp, body, &format!("v1,bm90IGl0 {expected}")));
        assert!(!secret.verify(id, timestamp + 1, body, expected));
        assert!(!secret.verify(id, timestamp, b"{}", expected));
        assert!(!secret.verify(id, timestamp, body, "v2,whatever"));
    }

    #[test]
    fn secrets_round_trip_and_bad_ones_are_refused() {
        let derived = Secret::derive(b"master key", "acme");
        assert_eq!(Secret::parse(&derived.to_text()), Ok(derived.clone()));
        assert_ne!(derived, Secret::derive(b"master key", "globex"));
        assert_ne!(derived, Secret::derive(b"other key", "acme"));
        for bad in [
            "",
            "whsec_",
            "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "whsec_!!!",
            "whsec_c2hvcnQ=",
        ] {
            assert_eq!(Secret::parse(bad), Err(BadSecret), "{bad:?}");
        }
        assert_eq!(format!("{derived:?}"), "Secret(…)");
    }
}
