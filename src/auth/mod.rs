//! Who is calling and what they may do: tenants, API keys and their scopes,
//! and the access rules over jobs. Pure: no I/O, no clock, nothing of actix.
//! Keys are looked up by `service::keys`; the HTTP layer reads the header.
//!
//! - this file       [`Scope`], [`Scopes`], [`Tenant`], [`Caller`], the access rules
//! - `keys`          API keys: generating one, hashing a presented token
//! - `links`         signed links: a read of one path, until an expiry, without a key
//! - `idempotency`   what a repeated `Idempotency-Key` gets back

pub mod idempotency;
pub mod keys;
pub mod links;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use keys::{ApiKey, KeyId, NewKey, QuotaSettings};

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Create jobs (and delete the tenant's own).
    Submit,
    /// Status, results and downloads of the tenant's jobs.
    Read,
    /// Every tenant's jobs, dependency details, monitoring.
    Admin,
}

impl Scope {
    pub const ALL: [Scope; 3] = [Scope::Submit, Scope::Read, Scope::Admin];

    pub fn name(self) -> &'static str {
        match self {
            Scope::Submit => "submit",
            Scope::Read => "read",
            Scope::Admin => "admin",
        }
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of scopes, written `submit,read`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(into = "Vec<Scope>", from = "Vec<Scope>")]
pub struct Scopes {
    submit: bool,
    read: bool,
    admin: bool,
}

impl Scopes {
    pub fn all() -> Self {
        Scopes {
            submit: true,
            read: true,
            admin: true,
        }
    }

    pub fn contains(&self, scope: Scope) -> bool {
        match scope {
            Scope::Submit => self.submit,
            Scope::Read => self.read,
            Scope::Admin => self.admin,
        }
    }

    fn insert(&mut self, scope: Scope) {
        match scope {
            Scope::Submit => self.submit = true,
            Scope::Read => self.read = true,
            Scope::Admin => self.admin = true,
        }
    }

    pub fn is_empty(&self) -> bool {
        !(self.submit || self.read || self.admin)
    }
}

impl From<Vec<Scope>> for Scopes {
    fn from(list: Vec<Scope>) -> Self {
        let mut scopes = Scopes::default();
        for scope in list {
            scopes.insert(scope);
        }
        scopes
    }
}

impl From<Scopes> for Vec<Scope> {
    fn from(scopes: Scopes) -> Self {
        Scope::ALL
            .into_iter()
            .filter(|s| scopes.contains(*s))
            .collect()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = Vec::<Scope>::from(*self)
            .into_iter()
            .map(Scope::name)
            .collect();
        f.write_str(&names.join(","))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("unknown scope {0:?}; scopes are submit, read and admin")]
    UnknownScope(String),
    #[error("no scope given; scopes are submit, read and admin")]
    NoScope,
    #[error("tenant names are 1 to 64 characters of a-z, 0-9, '-', '_' and '.'; got {0:?}")]
    BadTenant(String),
}

impl FromStr for Scopes {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut scopes = Scopes::default();
        for piece in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let scope = Scope::ALL
                .into_iter()
                .find(|scope| scope.name() == piece)
                .ok_or_else(|| NameError::UnknownScope(piece.to_string()))?;
            scopes.insert(scope);
        }
        if scopes.is_empty() {
            return Err(NameError::NoScope);
        }
        Ok(scopes)
    }
}

/// The owner of jobs and keys: a short lowercase name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Tenant(String);

impl Tenant {
    /// The tenant of jobs submitted while auth is off (and of jobs recorded
    /// before tenants existed): only `admin` keys see them once auth is on.
    pub fn local() -> Self {
        Tenant("local".to_string())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Tenant {
    fn default() -> Self {
        Tenant::local()
    }
}

impl FromStr for Tenant {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = (1..=64).contains(&s.len())
            && s.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
            });
        if ok {
            Ok(Tenant(s.to_string()))
        } else {
            Err(NameError::BadTenant(s.to_string()))
        }
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The identity behind a request: a key's tenant and scopes, or everyone
/// when auth is off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub tenant: Tenant,
    pub scopes: Scopes,
    /// The key used (`None` when auth is off).
    pub key: Option<KeyId>,
    /// The key's own quota settings (none when auth is off).
    pub quotas: QuotaSettings,
}

impl Caller {
    /// Anyone, when auth is off: one tenant, every scope.
    pub fn open() -> Self {
        Caller {
            tenant: Tenant::local(),
            scopes: Scopes::all(),
            key: None,
            quotas: QuotaSettings::default(),
        }
    }

    pub fn of(key: &ApiKey) -> Self {
        Caller {
            tenant: key.tenant.clone(),
            scopes: key.scopes,
            key: Some(key.id.clone()),
            quotas: key.quotas,
        }
    }

    /// `admin` implies every other scope.
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(scope) || self.scopes.contains(Scope::Admin)
    }

    /// Which jobs this caller may see with `scope`.
    pub fn access(&self) -> Access {
        if self.scopes.contains(Scope::Admin) {
            Access::All
        } else {
            Access::Tenant(self.tenant.clone())
        }
    }
}

/// Which jobs an operation may touch. A job outside it must look exactly
/// like a job that does not exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Every tenant's jobs (an admin key, open mode, or a signed link whose
    /// signature already names the one path it may read).
    All,
    /// One tenant's jobs.
    Tenant(Tenant),
}

impl Access {
    pub fn covers(&self, owner: &Tenant) -> bool {
        match self {
            Access::All => true,
            Access::Tenant(tenant) => tenant == owner,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_print_and_refuse_unknown_names() {
        let scopes: Scopes = "read, submit".parse().unwrap();
        assert!(scopes.contains(Scope::Read) && scopes.contains(Scope::Submit));
        assert!(!scopes.contains(Scope::Admin));
        assert_eq!(scopes.to_string(), "submit,read");
        assert_eq!(
            "read,write".parse::<Scopes>(),
            Err(NameError::UnknownScope("write".into()))
        );
        assert_eq!(" , ".parse::<Scopes>(), Err(NameError::NoScope));
        let json = serde_json::to_string(&scopes).unwrap();
        assert_eq!(json, r#"["submit","read"]"#);
        assert_eq!(serde_json::from_str::<Scopes>(&json).unwrap(), scopes);
    }

    #[test]
    fn tenant_names_are_short_and_plain() {
        assert!("team-a.images_1".parse::<Tenant>().is_ok());
        for bad in ["", "Team", "a b", "a/b", &"x".repeat(65)] {
            assert!(bad.parse::<Tenant>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn admin_sees_all_and_others_their_own() {
        let a: Tenant = "a".parse().unwrap();
        let b: Tenant = "b".parse().unwrap();
        let reader = Caller {
            tenant: a.clone(),
            scopes: "read".parse().unwrap(),
            key: None,
            quotas: QuotaSettings::default(),
        };
        assert!(reader.may(Scope::Read) && !reader.may(Scope::Submit));
        assert!(reader.access().covers(&a) && !reader.access().covers(&b));
        let admin = Caller {
            scopes: "admin".parse().unwrap(),
            ..reader
        };
        assert!(admin.may(Scope::Submit) && admin.may(Scope::Read));
        assert!(admin.access().covers(&b));
        assert!(Caller::open().access().covers(&b));
    }
}
