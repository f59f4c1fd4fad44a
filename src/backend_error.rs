//! The errors the three backends return (`StoreError`, `MetaError`,
//! `QueueError`: each is built on this module, which must not link to them,
//! as a link would count as an import cycle): an [`ErrorKind`] that says
//! what went wrong, the operation it hit, and the error that caused it.
//!
//! The kind decides everything downstream (retry or give up in the worker,
//! the HTTP status in the API); nothing may classify a backend error by
//! matching its message text. The message and source are for logs.

use std::fmt;

/// The underlying error (a driver's, an I/O error…), kept for logs.
pub type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Not reachable, timed out, or answered with a server error: worth retrying.
    Unavailable,
    /// What was asked for does not exist.
    NotFound,
    /// Reachable, but refused the request (credentials, permissions, a
    /// missing bucket, an invalid key): an operator's problem, and retrying
    /// does not help.
    Refused,
    /// Answered with something this build cannot read: a record that does not
    /// parse, or a backend layout that is not the one it was written for.
    Corrupt,
}

impl ErrorKind {
    pub fn is_transient(self) -> bool {
        self == ErrorKind::Unavailable
    }

    pub fn phrase(self) -> &'static str {
        match self {
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::NotFound => "has no such entry",
            ErrorKind::Refused => "refused the request",
            ErrorKind::Corrupt => "holds unreadable data",
        }
    }
}

/// Defines one backend's error type: same shape, its own name, so that each
/// layer converts it into its own error explicitly.
macro_rules! backend_error {
    ($(#[$doc:meta])* $name:ident, $backend:literal) => {
        $(#[$doc])*
        #[derive(Debug)]
        pub struct $name {
            kind: $crate::backend_error::ErrorKind,
            context: String,
            source: Option<$crate::backend_error::Source>,
        }

        impl $name {
            pub fn new(kind: $crate::backend_error::ErrorKind, context: impl Into<String>) -> Self {
                $name { kind, context: context.into(), source: None }
            }

            pub fn with_source(
                kind: $crate::backend_error::ErrorKind,
                context: impl Into<String>,
                source: impl Into<$crate::backend_error::Source>,
            ) -> Self {
                $name { kind, context: context.into(), source: Some(source.into()) }
            }

            /// Unreachable or failing: the common case of a driver error.
            pub fn unavailable(
                context: impl Into<String>,
                source: impl Into<$crate::backend_error::Source>,
            ) -> Self {
                Self::with_source($crate::backend_error::ErrorKind::Unavailable, context, source)
            }

            pub fn kind(&self) -> $crate::backend_error::ErrorKind {
                self.kind
            }

            pub fn is_transient(&self) -> bool {
                self.kind.is_transient()
            }

            /// What failed, without the details (no addresses, paths, keys
            /// or driver messages): for answers to clients and job records.
            #[allow(dead_code)] // not every backend's errors reach a job record
            pub fn summary(&self) -> String {
                format!("{} {}", $backend, self.kind.phrase())
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                $crate::backend_error::write_message(f, $backend, self.kind, &self.context, self.source.as_deref())
            }
        }

        impl std::error::Error for $name {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                self.source.as_deref().map(|e| e as &(dyn std::error::Error + 'static))
            }
        }
    };
}
pub(crate) use backend_error;

/// `object storage unavailable: get jobs/…: connection refused`. The source
/// chain is part of the message because most log lines print only `{e}`, and
/// some drivers' own messages hide the cause (minio's "Network error occurred").
pub(crate) fn write_message(
    f: &mut fmt::Formatter<'_>,
    backend: &str,
    kind: ErrorKind,
    context: &str,
    source: Option<&(dyn std::error::Error + Send + Sync + 'static)>,
) -> fmt::Result {
    write!(f, "{backend} {}: {context}", kind.phrase())?;
    let mut next: Option<&(dyn std::error::Error + 'static)> =
        source.map(|e| e as &(dyn std::error::Error + 'static));
    while let Some(e) = next {
        write!(f, ": {e}")?;
        next = e.source();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    backend_error!(
        /// A backend for the tests.
        TestError,
        "test store"
    );

    #[test]
    fn kind_decides_transience_and_source_is_kept() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let e = TestError::unavailable("get a/b", io);
        assert!(e.is_transient());
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(e.to_string(), "test store unavailable: get a/b: refused");
        let source = std::error::Error::source(&e).expect("source kept");
        assert_eq!(source.to_string(), "refused");
        for kind in [ErrorKind::NotFound, ErrorKind::Refused, ErrorKind::Corrupt] {
            let e = TestError::new(kind, "x");
            assert!(!e.is_transient(), "{kind:?}");
            assert!(std::error::Error::source(&e).is_none());
        }
    }
}
