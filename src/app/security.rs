//! Start-up decisions about access: whether requests need keys (and
//! refusing to start open, or keyless, where anyone could reach the port),
//! the bootstrap key, and the secret that signs links. The decision itself
//! is [`plan`], a pure function; the rest reads and writes the data it needs.

use std::net::SocketAddr;
use std::path::Path;

use super::AppError;
use crate::auth::links::{LinkSigner, MIN_SECRET_LEN};
use crate::config::{AuthSetting, Config};
use crate::service::keys::Bootstrap;
use crate::service::{KeyService, Secrets};
use crate::webhooks::signing::Secret as WebhookSecret;

/// How the API will treat requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthPlan {
    /// No keys: every caller may do everything.
    Open,
    /// Keys required; `none_yet`: no key exists, say how to make one.
    Keys { none_yet: bool },
}

const CREATE_HINT: &str =
    "create one with `imgpipe keys create --tenant NAME --scopes submit,read` \
(same IMGPIPE_DATA_DIR or REDIS_URL as the server; it works while the server runs), \
or set IMGPIPE_BOOTSTRAP_KEY to an admin key of at least 32 characters";

/// The decision: `auto` is open only on a loopback address with no key made
/// yet; open mode on any other address needs IMGPIPE_ALLOW_OPEN=1; keys on
/// a reachable address with none made yet is refused (nobody could use it).
pub fn plan(
    setting: AuthSetting,
    bind: SocketAddr,
    allow_open: bool,
    have_keys: bool,
) -> Result<AuthPlan, String> {
    let loopback = bind.ip().is_loopback();
    let wants_keys = match setting {
        AuthSetting::On => true,
        AuthSetting::Off => false,
        AuthSetting::Auto => !loopback || have_keys,
    };
    match (wants_keys, have_keys, loopback) {
        (false, _, true) => Ok(AuthPlan::Open),
        (false, _, false) if allow_open => Ok(AuthPlan::Open),
        (false, _, false) => Err(format!(
            "refusing to start without API keys on {bind}, which is not a loopback address: \
             anyone who can reach it could submit, read and delete every job. \
             Use keys (unset IMGPIPE_AUTH, or IMGPIPE_AUTH=on, and {CREATE_HINT}), \
             or if this network is trusted, set IMGPIPE_ALLOW_OPEN=1 with IMGPIPE_AUTH=off"
        )),
        (true, true, _) => Ok(AuthPlan::Keys { none_yet: false }),
        (true, false, true) => Ok(AuthPlan::Keys { none_yet: true }),
        (true, false, false) => Err(format!(
            "refusing to start on {bind}: API keys are required there and none exists yet, \
             so nobody could use this server. To fix it, {CREATE_HINT}; \
             or run on 127.0.0.1 for local use without keys"
        )),
    }
}

/// Applies IMGPIPE_BOOTSTRAP_KEY, then decides. Logs what it chose.
pub async fn resolve(config: &Config, keys: &KeyService) -> Result<AuthPlan, AppError> {
    if let Some(token) = &config.bootstrap_key {
        match keys.bootstrap(token.expose()).await {
            Ok(Bootstrap::Created) => log::info!("bootstrap admin key created"),
            Ok(Bootstrap::Existed) => {}
            Ok(Bootstrap::Revoked) => log::warn!(
                "IMGPIPE_BOOTSTRAP_KEY names a revoked key; it stays revoked (set another one)"
            ),
            Err(e) => return Err(AppError::Runtime(e.to_string())),
        }
    }
    let have_keys = keys
        .any_active()
        .await
        .map_err(|e| AppError::Runtime(format!("cannot read API keys: {e}")))?;
    let plan =
        plan(config.auth, config.bind, config.allow_open, have_keys).map_err(AppError::Runtime)?;
    match plan {
        AuthPlan::Open => {
            log::warn!("auth is off: every caller may submit, read and delete every job")
        }
        AuthPlan::Keys { none_yet: true } => {
            println!("imgpipe: API keys are required and none exists yet; {CREATE_HINT}")
        }
        AuthPlan::Keys { none_yet: false } => log::info!("API keys required"),
    }
    Ok(plan)
}

/// The link-signing secret: IMGPIPE_SIGNING_KEY, or (embedded only) one
/// generated once and kept in the data directory.
pub fn signer(config: &Config) -> Result<LinkSigner, AppError> {
    if let Some(secret) = &config.signing_key {
        let secret = secret.expose();
        if secret.len() < MIN_SECRET_LEN {
            return Err(AppError::Runtime(format!(
                "IMGPIPE_SIGNING_KEY must be at least {MIN_SECRET_LEN} characters (e.g. `openssl rand -hex 32`)"
            )));
        }
        return Ok(LinkSigner::new(secret.as_bytes()));
    }
    if config.redis_url.is_some() {
        return Err(AppError::Runtime(
            "IMGPIPE_SIGNING_KEY is required with REDIS_URL: every API process must sign \
             download links with the same secret (e.g. `openssl rand -hex 32`)"
                .to_string(),
        ));
    }
    let secret = kept_secret(&config.data_dir.join("signing.key"))
        .map_err(|e| AppError::Embedded(format!("link-signing key: {e}")))?;
    Ok(LinkSigner::new(secret.as_bytes()))
}

/// The secrets webhooks are signed with (see `service::Secrets`): tenant
/// `local`'s is IMGPIPE_WEBHOOK_SECRET as given; every tenant's is derived
/// from that, or else from the link-signing key (IMGPIPE_SIGNING_KEY, or the
/// embedded signing.key), so every process of a deployment derives the same.
/// A distributed worker with neither signs nothing: its deliveries fail
/// with a reason saying so.
pub fn webhook_secrets(config: &Config) -> Result<Secrets, AppError> {
    if let Some(text) = &config.webhooks.webhook_secret {
        let secret = WebhookSecret::parse(text.expose()).map_err(|_| {
            AppError::Runtime(
                "IMGPIPE_WEBHOOK_SECRET must be whsec_ followed by base64 of 24 to 64 bytes, \
                 e.g. whsec_$(openssl rand -base64 32)"
                    .into(),
            )
        })?;
        return Ok(Secrets {
            master: Some(secret.bytes().to_vec()),
            local: Some(secret),
        });
    }
    let master = match (&config.signing_key, &config.redis_url) {
        (Some(key), _) => Some(key.expose().as_bytes().to_vec()),
        (None, Some(_)) => None,
        (None, None) => Some(
            kept_secret(&config.data_dir.join("signing.key"))
                .map_err(|e| AppError::Embedded(format!("link-signing key: {e}")))?
                .into_bytes(),
        ),
    };
    Ok(Secrets {
        local: None,
        master,
    })
}

/// Reads the secret at `path`, creating it (readable by its owner only) on first use.
fn kept_secret(path: &Path) -> std::io::Result<String> {
    use std::io::Write;
    match std::fs::read_to_string(path) {
        Ok(secret) if secret.trim().len() >= MIN_SECRET_LEN => return Ok(secret.trim().into()),
        Ok(_) => {
            return Err(std::io::Error::other(format!(
                "{} is shorter than {MIN_SECRET_LEN} characters",
                path.display()
            )))
        }
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        Err(_) => {}
    }
    // First start: the data directory may not exist yet.
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut random = [0u8; 32];
    getrandom::fill(&mut random).map_err(|e| std::io::Error::other(e.to_string()))?;
    let secret = hex::encode(random);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(mut file) => {
            file.write_all(secret.as_bytes())?;
            file.sync_all()?;
            Ok(secret)
        }
        // Another process of this deployment made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::thread::sleep(std::time::Duration::from_millis(50));
            Ok(std::fs::read_to_string(path)?.trim().to_string())
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(addr: &str) -> SocketAddr {
        addr.parse().unwrap()
    }

    #[test]
    fn auto_is_open_only_on_loopback_before_any_key() {
        let local = at("127.0.0.1:8000");
        let public = at("0.0.0.0:8000");
        assert_eq!(
            plan(AuthSetting::Auto, local, false, false),
            Ok(AuthPlan::Open)
        );
        assert_eq!(
            plan(AuthSetting::Auto, local, false, true),
            Ok(AuthPlan::Keys { none_yet: false })
        );
        assert_eq!(
            plan(AuthSetting::Auto, public, false, true),
            Ok(AuthPlan::Keys { none_yet: false })
        );
        let refusal = plan(AuthSetting::Auto, public, false, false).unwrap_err();
        assert!(refusal.contains("imgpipe keys create"), "{refusal}");
        assert!(plan(AuthSetting::Auto, at("[::1]:80"), false, false) == Ok(AuthPlan::Open));
    }

    #[test]
    fn open_mode_on_a_reachable_address_needs_explicit_consent() {
        let public = at("10.1.2.3:8000");
        let refusal = plan(AuthSetting::Off, public, false, true).unwrap_err();
        assert!(refusal.contains("IMGPIPE_ALLOW_OPEN=1"), "{refusal}");
        assert_eq!(
            plan(AuthSetting::Off, public, true, false),
            Ok(AuthPlan::Open)
        );
        assert_eq!(
            plan(AuthSetting::Off, at("127.0.0.1:1"), false, true),
            Ok(AuthPlan::Open)
        );
    }

    #[test]
    fn keys_on_without_any_key_say_how_to_make_one() {
        assert_eq!(
            plan(AuthSetting::On, at("127.0.0.1:1"), false, false),
            Ok(AuthPlan::Keys { none_yet: true })
        );
        assert!(plan(AuthSetting::On, at("0.0.0.0:1"), true, false).is_err());
    }

    #[test]
    fn the_embedded_secret_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        // In a data directory that does not exist yet, as on a first start.
        let path = dir.path().join("data").join("signing.key");
        let first = kept_secret(&path).unwrap();
        assert_eq!(first.len(), 64);
        assert_eq!(kept_secret(&path).unwrap(), first);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
