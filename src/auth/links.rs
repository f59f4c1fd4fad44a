//! Signed links: `?expires=UNIX&sig=HEX` on a path grants one read of that
//! path, without a key, until `expires` (like S3 presigned GETs or imgproxy's
//! signed URLs). The signature is HMAC-SHA256 over the path and the expiry,
//! so a changed byte anywhere — path, expiry or signature — voids it.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The query parameters of a signed link.
pub const EXPIRES_PARAM: &str = "expires";
pub const SIGNATURE_PARAM: &str = "sig";

/// Shortest accepted signing secret, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this link has expired; ask the job's status for a fresh one")]
    Expired,
    #[error("this link's signature does not match its address; it was altered or is not from this server")]
    BadSignature,
}

/// Signs and checks links with the server's secret.
#[derive(Clone)]
pub struct LinkSigner {
    secret: Vec<u8>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(***)")
    }
}

impl LinkSigner {
    pub fn new(secret: &[u8]) -> Self {
        LinkSigner {
            secret: secret.to_vec(),
        }
    }

    fn mac(&self, path: &str, expires: i64) -> Hmac<Sha256> {
        // HMAC accepts keys of any length.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// `path` with the query that lets anyone read it until `expires` (Unix s).
    pub fn sign(&self, path: &str, expires: i64) -> String {
        let sig = hex::encode(self.mac(path, expires).finalize().into_bytes());
        format!("{path}?{EXPIRES_PARAM}={expires}&{SIGNATURE_PARAM}={sig}")
    }

    /// Checks a presented link (constant-time comparison), then its expiry.
    pub fn verify(&self, path: &str, expires: &str, sig: &str, now: i64) -> Result<(), LinkError> {
        // One spelling per link: the exact decimal text that was signed, and
        // the signature in lowercase hex (an uppercase or otherwise re-spelt
        // copy is a changed link, refused like any other).
        let expires_at: i64 = expires.parse().map_err(|_| LinkError::BadSignature)?;
        let lowercase_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if expires_at.to_string() != expires || sig.len() != 64 || !lowercase_hex(sig) {
            return Err(LinkError::BadSignature);
        }
        let sig = hex::decode(sig).map_err(|_| LinkError::BadSignature)?;
        self.mac(path, expires_at)
            .verify_slice(&sig)
            .map_err(|_| LinkError::BadSignature)?;
        if expires_at <= now {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(link: &str) -> (String, String, String) {
        let (path, query) = link.split_once('?').unwrap();
        let mut expires = String::new();
        let mut sig = String::new();
        for pair in query.split('&') {
            let (k, v) = pair.split_once('=').unwrap();
            match k {
                EXPIRES_PARAM => expires = v.to_string(),
                SIGNATURE_PARAM => sig = v.to_string(),
                _ => panic!("{k}"),
            }
        }
        (path.to_string(), expires, sig)
    }

    #[test]
    fn a_link_reads_its_path_until_it_expires() {
        let signer = LinkSigner::new(&[1; 32]);
        let (path, expires, sig) = parts(&signer.sign("/download/abc", 1000));
        assert_eq!(path, "/download/abc");
        assert_eq!(signer.verify(&path, &expires, &sig, 999), Ok(()));
        assert_eq!(
            signer.verify(&path, &expires, &sig, 1000),
            Err(LinkError::Expired)
        );
    }

    #[test]
    fn any_changed_byte_voids_the_link() {
        let signer = LinkSigner::new(&[1; 32]);
        let (path, expires, sig) = parts(&signer.sign("/images/abc/0", 1000));
        let bad = |p: &str, e: &str, s: &str| signer.verify(p, e, s, 0);
        assert_eq!(
            bad("/images/abc/1", &expires, &sig),
            Err(LinkError::BadSignature)
        );
        assert_eq!(bad(&path, "1001", &sig), Err(LinkError::BadSignature));
        assert_eq!(bad(&path, "01000", &sig), Err(LinkError::BadSignature));
        let mut flipped = sig.clone().into_bytes();
        flipped[10] = if flipped[10] == b'0' { b'1' } else { b'0' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(bad(&path, &expires, &flipped), Err(LinkError::BadSignature));
        assert_eq!(
            bad(&path, &expires, &sig[..60]),
            Err(LinkError::BadSignature)
        );
        assert_eq!(
            bad(&path, &expires, &sig.to_uppercase()),
            Err(LinkError::BadSignature)
        );
        assert_eq!(bad(&path, "+1000", &sig), Err(LinkError::BadSignature));
        let other = LinkSigner::new(&[2; 32]);
        assert_eq!(
            other.verify(&path, &expires, &sig, 0),
            Err(LinkError::BadSignature)
        );
    }
}
