//! Integration tests: the real binary, over HTTP, in both deployments: the
//! embedded one (SQLite and a data directory) and the distributed one (the
//! real Redis and S3 servers that `scripts/test.sh` starts).

mod admin;
mod admission;
mod cli;
mod contract;
mod helpers;

/// Runs each listed `async fn(Backend)` test once per deployment, as
/// `embedded::<name>` and `distributed::<name>`: one test body, both configurations.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Embedded).await
                }
            )*
        }
        mod distributed {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Distributed).await
                }
            )*
        }
    };
}

mod durability;
mod events;
mod fairness;
mod metrics;
mod outages;
mod pipeline;
mod processes;
mod quotas;
mod rejections;
mod retention;
mod system;
mod tenants;
mod waiting;
mod webhooks;
