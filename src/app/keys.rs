//! `imgpipe keys create | list | revoke | webhook-secret`: key management against the
//! configured metadata store (the data directory's SQLite, or Redis), also
//! while a server uses it. `create` prints the key alone on its last line.

use super::backends::tenant_store;
use super::AppError;
use crate::auth::QuotaSettings;
use crate::config::{Config, KeysCommand};
use crate::service::KeyService;

pub(super) async fn run(config: &Config, action: &KeysCommand) -> Result<(), AppError> {
    if let KeysCommand::WebhookSecret { tenant } = action {
        let secrets = super::security::webhook_secrets(config)?;
        let secret = secrets.of(tenant).ok_or_else(|| {
            AppError::Runtime(
                "no webhook secret: set IMGPIPE_WEBHOOK_SECRET or IMGPIPE_SIGNING_KEY".into(),
            )
        })?;
        println!("{}", secret.to_text());
        return Ok(());
    }
    let keys = KeyService::new(tenant_store(config).await?);
    let failed = |e: crate::service::KeyError| AppError::Runtime(e.to_string());
    match action {
        KeysCommand::Create {
            tenant,
            scopes,
            label,
            jobs_per_minute,
            active_images,
            stored_bytes,
        } => {
            let quotas = QuotaSettings {
                jobs_per_minute: *jobs_per_minute,
                active_images: *active_images,
                stored_bytes: *stored_bytes,
            };
            let new = keys
                .create(tenant, scopes, label.clone(), quotas)
                .await
                .map_err(failed)?;
            println!(
                "created key {} for tenant {} with scopes {} and quotas {}",
                new.key.id, new.key.tenant, new.key.scopes, new.key.quotas
            );
            println!("this is the only time the key is shown; store it now:");
            println!("{}", new.token);
        }
        KeysCommand::List => {
            let all = keys.list().await.map_err(failed)?;
            println!("ID\tTENANT\tSCOPES\tQUOTAS\tCREATED\tREVOKED\tLABEL");
            for key in all {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    key.id,
                    key.tenant,
                    key.scopes,
                    key.quotas,
                    key.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    key.revoked_at.map_or("-".to_string(), |t| t
                        .format("%Y-%m-%dT%H:%M:%SZ")
                        .to_string()),
                    key.label.as_deref().unwrap_or("-"),
                );
            }
        }
        KeysCommand::Revoke { id } => {
            keys.revoke(id).await.map_err(failed)?;
            println!("revoked key {id}; requests with it are refused from now on");
        }
        KeysCommand::WebhookSecret { .. } => {}
    }
    Ok(())
}
