//! Where a webhook may be delivered. A URL is checked when a job names it
//! (http or https, a host, no credentials), and every address its host
//! resolves to is checked before each delivery: loopback, private,
//! link-local, cloud metadata and other non-public addresses are refused
//! unless an operator allows them (`IMGPIPE_WEBHOOK_ALLOW`, CIDRs), so a
//! submitter cannot make the server call into its own network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use url::Url;

/// Why a webhook URL or address is refused; the text names the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("webhook_url is not a valid absolute URL")]
    NotAUrl,
    #[error("webhook_url must use http or https, not {0:?}")]
    Scheme(String),
    #[error("webhook_url must not carry credentials (user:password@)")]
    Credentials,
    #[error("webhook_url has no host")]
    NoHost,
    #[error("webhook_url's host resolves to {ip}, a {rule} address, which is not allowed (IMGPIPE_WEBHOOK_ALLOW)")]
    Address { ip: IpAddr, rule: &'static str },
}

/// Checks the form of a webhook URL (not where it points: see [`Policy`]).
pub fn check_url(text: &str) -> Result<Url, Refused> {
    let url = Url::parse(text).map_err(|_| Refused::NotAUrl)?;
    match url.scheme() {
        "http" | "https" => {}
        other => return Err(Refused::Scheme(other.to_string())),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused::Credentials);
    }
    if url.host().is_none() {
        return Err(Refused::NoHost);
    }
    Ok(url)
}

/// Which addresses deliveries may reach: every public address, and the
/// non-public ones inside an allowed network.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    allow: Vec<IpNet>,
}

impl Policy {
    /// `IMGPIPE_WEBHOOK_ALLOW`: comma-separated CIDRs (a bare address is
    /// one host), e.g. `127.0.0.1/32,10.0.0.0/8`.
    pub fn parse(list: &str) -> Result<Policy, String> {
        let allow = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| format!("{s:?} is not a CIDR (e.g. 10.0.0.0/8) or an address"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Policy { allow })
    }

    /// Checks one resolved address.
    pub fn check(&self, ip: IpAddr) -> Result<(), Refused> {
        let ip = canonical(ip);
        match restricted(ip) {
            Some(rule) if !self.allow.iter().any(|net| net.contains(&ip)) => {
                Err(Refused::Address { ip, rule })
            }
            _ => Ok(()),
        }
    }
}

/// IPv4 written as IPv6 (`::ffff:10.0.0.1`) is checked as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// The kind of non-public address `ip` is, if it is one.
fn restricted(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => restricted_v4(v4),
        IpAddr::V6(v6) => restricted_v6(v6),
    }
}

fn restricted_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, ..] = ip.octets();
    Some(match () {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() || a == 0 => "unspecified",
        _ if ip == Ipv4Addr::new(169, 254, 169, 254) => "cloud metadata",
        _ if ip.is_link_local() => "link-local",
        _ if ip.is_private() => "private",
        _ if a == 100 && (64..128).contains(&b) => "shared (carrier-grade NAT)",
        _ if ip.is_broadcast() || ip.is_multicast() || a >= 240 => {
            "broadcast, multicast or reserved"
        }
        _ if a == 192 && b == 0 && ip.octets()[2] == 0 => "IETF protocol assignment",
        _ if (a == 198 && (b == 18 || b == 19)) => "benchmarking",
        _ => return None,
    })
}

fn restricted_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let first = ip.segments()[0];
    Some(match () {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        // fd00:ec2::254, AWS's IPv6 metadata address.
        _ if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) => "cloud metadata",
        _ if first & 0xffc0 == 0xfe80 => "link-local",
        _ if first & 0xfe00 == 0xfc00 => "private (unique local)",
        _ if ip.is_multicast() => "broadcast, multicast or reserved",
        // 64:ff9b::/96 translates to IPv4: refuse what it might reach.
        _ if first == 0x64 && ip.segments()[1] == 0xff9b => "NAT64",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn urls_need_http_a_host_and_no_credentials() {
        assert!(check_url("https://hooks.example.com/imgpipe?x=1").is_ok());
        assert!(check_url("http://127.0.0.1:9000/hook").is_ok());
        assert_eq!(
            check_url("ftp://example.com/"),
            Err(Refused::Scheme("ftp".into()))
        );
        assert_eq!(
            check_url("file:///etc/passwd"),
            Err(Refused::Scheme("file".into()))
        );
        assert_eq!(
            check_url("https://user:pw@example.com/"),
            Err(Refused::Credentials)
        );
        assert_eq!(
            check_url("https://user@example.com/"),
            Err(Refused::Credentials)
        );
        assert_eq!(check_url("/relative"), Err(Refused::NotAUrl));
        assert_eq!(check_url(""), Err(Refused::NotAUrl));
    }

    #[test]
    fn non_public_addresses_are_refused_with_their_rule() {
        let policy = Policy::default();
        for (addr, rule) in [
            ("127.0.0.1", "loopback"),
            ("::1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "cloud metadata"),
            ("169.254.1.1", "link-local"),
            ("100.64.0.1", "shared (carrier-grade NAT)"),
            ("0.0.0.0", "unspecified"),
            ("::ffff:10.0.0.1", "private"),
            ("fe80::1", "link-local"),
            ("fd12::1", "private (unique local)"),
            ("fd00:ec2::254", "cloud metadata"),
            ("64:ff9b::a00:1", "NAT64"),
        ] {
            match policy.check(ip(addr)) {
                Err(Refused::Address { rule: got, .. }) => assert_eq!(got, rule, "{addr}"),
                other => panic!("{addr}: {other:?}"),
            }
        }
        for public in ["93.184.216.34", "8.8.8.8", "2606:2800:220:1::1"] {
            assert_eq!(policy.check(ip(public)), Ok(()), "{public}");
        }
    }

    #[test]
    fn allowed_networks_open_only_themselves() {
        let policy = Policy::parse("127.0.0.1, 10.0.0.0/8,").unwrap();
        assert_eq!(policy.check(ip("127.0.0.1")), Ok(()));
        assert_eq!(policy.check(ip("10.200.0.9")), Ok(()));
        assert_eq!(policy.check(ip("::ffff:127.0.0.1")), Ok(()));
        assert!(policy.check(ip("127.0.0.2")).is_err());
        assert!(policy.check(ip("192.168.0.1")).is_err());
        assert!(Policy::parse("10.0.0.0/33").is_err());
        assert!(Policy::parse("localhost").is_err());
        assert_eq!(Policy::parse("").unwrap(), Policy::default());
        let refused = Policy::default()
            .check(ip("10.0.0.1"))
            .unwrap_err()
            .to_string();
        assert!(
            refused.contains("private") && refused.contains("IMGPIPE_WEBHOOK_ALLOW"),
            "{refused}"
        );
    }
}
