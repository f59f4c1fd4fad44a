//! The `TenantStore` contract (API keys and idempotency records), checked on
//! both implementations: the real Redis that `scripts/test.sh` starts and a
//! SQLite file. Keys are found by hash only; claims are exclusive, even
//! under concurrent requests; completed records replay until forgotten.

use std::sync::Arc;

use chrono::{Duration, Utc};
use imgpipe::auth::idempotency::{Claim, Completed, Fingerprint, IdempotencyKey};
use imgpipe::auth::keys::hash_token;
use imgpipe::auth::{NewKey, QuotaSettings, Tenant};
use imgpipe::meta::{RedisMeta, SqliteMeta, TenantStore};

async fn stores() -> Vec<(
    &'static str,
    Arc<dyn TenantStore>,
    Option<tempfile::TempDir>,
)> {
    let dir = tempfile::tempdir().unwrap();
    let sqlite = SqliteMeta::open(&dir.path().join("jobs.sqlite3"))
        .await
        .expect("open SQLite metadata");
    let url = std::env::var("IMGPIPE_TEST_REDIS_URL")
        .expect("IMGPIPE_TEST_REDIS_URL is not set: run the tests through scripts/test.sh");
    let conn = redis::Client::open(url)
        .expect("valid Redis URL")
        .get_connection_manager()
        .await
        .expect("Redis from scripts/test.sh is reachable");
    let redis = RedisMeta::new(
        conn,
        &format!("test-tenants-{}", uuid::Uuid::new_v4().simple()),
    );
    vec![
        ("redis", Arc::new(redis), None),
        ("sqlite", Arc::new(sqlite), Some(dir)),
    ]
}

fn new_key(seed: u8, tenant: &str) -> NewKey {
    NewKey::from_random(
        [seed; 38],
        tenant.parse().unwrap(),
        "submit,read".parse().unwrap(),
        Some(format!("label {seed}")),
        QuotaSettings {
            jobs_per_minute: Some(u64::from(seed)),
            ..QuotaSettings::default()
        },
        Utc::now(),
    )
}

#[tokio::test]
async fn keys_are_found_by_hash_listed_and_revoked() {
    for (name, store, _guard) in stores().await {
        let a = new_key(1, "team-a");
        let b = new_key(2, "team-b");
        assert!(store.add_key(&a.key).await.unwrap(), "{name}");
        assert!(store.add_key(&b.key).await.unwrap(), "{name}");
        assert!(
            !store.add_key(&a.key).await.unwrap(),
            "{name}: same key twice"
        );

        let found = store.key_by_hash(&hash_token(&a.token)).await.unwrap();
        assert_eq!(found.as_ref(), Some(&a.key), "{name}");
        assert_eq!(
            store.key_by_hash(&hash_token("ipk_other")).await.unwrap(),
            None
        );

        let listed = store.keys().await.unwrap();
        assert_eq!(listed.len(), 2, "{name}");
        assert!(listed.iter().all(|k| k.is_active()), "{name}");

        assert!(
            store.revoke_key(&a.key.id, Utc::now()).await.unwrap(),
            "{name}"
        );
        assert!(
            !store.revoke_key(&a.key.id, Utc::now()).await.unwrap(),
            "{name}: already revoked"
        );
        let revoked = store
            .key_by_hash(&a.key.hash)
            .await
            .unwrap()
            .expect("still listed");
        assert!(!revoked.is_active(), "{name}");
        assert_eq!(
            revoked.scopes, a.key.scopes,
            "{name}: the rest is unchanged"
        );
        assert_eq!(revoked.label, a.key.label, "{name}");
        assert_eq!(revoked.quotas, a.key.quotas, "{name}: quota settings kept");
        let b_now = store.key_by_hash(&b.key.hash).await.unwrap().unwrap();
        assert!(b_now.is_active(), "{name}: only that key");
    }
}

#[tokio::test]
async fn a_claim_is_exclusive_until_released_or_completed_by_its_holder() {
    for (name, store, _guard) in stores().await {
        let tenant: Tenant = "team-a".parse().unwrap();
        let other: Tenant = "team-b".parse().unwrap();
        let key = IdempotencyKey::parse("retry-1").unwrap();
        let now = Utc::now();
        let lease = now + Duration::minutes(15);
        let claim = |t: Tenant, nonce: &'static str| {
            let (store, key) = (store.clone(), key.clone());
            async move {
                store
                    .claim_submission(&t, &key, nonce, lease, Utc::now())
                    .await
                    .unwrap()
            }
        };
        assert_eq!(claim(tenant.clone(), "n1").await, Claim::Claimed, "{name}");
        assert_eq!(claim(tenant.clone(), "n2").await, Claim::Pending, "{name}");
        assert_eq!(
            claim(other.clone(), "n3").await,
            Claim::Claimed,
            "{name}: keys are per tenant"
        );

        // Only the holder releases its claim.
        store.release_submission(&tenant, &key, "n2").await.unwrap();
        assert_eq!(claim(tenant.clone(), "n4").await, Claim::Pending, "{name}");
        store.release_submission(&tenant, &key, "n1").await.unwrap();
        assert_eq!(claim(tenant.clone(), "n5").await, Claim::Claimed, "{name}");

        let done = Completed {
            fingerprint: Fingerprint::of("blur", &[]),
            job_id: "job-1".into(),
            response: r#"{"job_id":"job-1"}"#.into(),
        };
        let until = now + Duration::hours(1);
        let complete = |nonce: &'static str| {
            let (store, tenant, key, done) =
                (store.clone(), tenant.clone(), key.clone(), done.clone());
            async move {
                store
                    .complete_submission(&tenant, &key, nonce, &done, until)
                    .await
                    .unwrap()
            }
        };
        assert!(
            !complete("n1").await,
            "{name}: a lapsed claimant cannot complete over another's claim"
        );
        assert!(complete("n5").await, "{name}");
        assert!(!complete("n5").await, "{name}: completed once");
        assert_eq!(
            claim(tenant.clone(), "n6").await,
            Claim::Done(done.clone()),
            "{name}"
        );
        store.release_submission(&tenant, &key, "n5").await.unwrap();
        assert_eq!(
            claim(tenant.clone(), "n7").await,
            Claim::Done(done.clone()),
            "{name}: release leaves a completed record alone"
        );
        store
            .forget_submission(&tenant, &key, "another-job")
            .await
            .unwrap();
        assert_eq!(
            claim(tenant.clone(), "n8").await,
            Claim::Done(done),
            "{name}"
        );
        store
            .forget_submission(&tenant, &key, "job-1")
            .await
            .unwrap();
        assert_eq!(
            claim(tenant.clone(), "n9").await,
            Claim::Claimed,
            "{name}: forgotten with its job"
        );
    }
}

#[tokio::test]
async fn a_lapsed_lease_frees_the_key_and_racing_claims_have_one_winner() {
    for (name, store, _guard) in stores().await {
        let tenant: Tenant = "team-a".parse().unwrap();
        let key = IdempotencyKey::parse("crashed").unwrap();
        let now = Utc::now();
        let lapsed = now + Duration::milliseconds(200);
        let first = store
            .claim_submission(&tenant, &key, "first", lapsed, now)
            .await
            .unwrap();
        assert_eq!(first, Claim::Claimed, "{name}");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let later = Utc::now();
        let second = store
            .claim_submission(&tenant, &key, "second", later + Duration::minutes(1), later)
            .await
            .unwrap();
        assert_eq!(
            second,
            Claim::Claimed,
            "{name}: the first claimant died; its lease lapsed"
        );

        let race = IdempotencyKey::parse("race").unwrap();
        let claims = futures::future::join_all((0..16).map(|i| {
            let (store, tenant, race) = (store.clone(), tenant.clone(), race.clone());
            async move {
                let nonce = format!("racer-{i}");
                let now = Utc::now();
                store
                    .claim_submission(&tenant, &race, &nonce, now + Duration::minutes(1), now)
                    .await
                    .unwrap()
            }
        }))
        .await;
        let winners = claims.iter().filter(|c| **c == Claim::Claimed).count();
        assert_eq!(winners, 1, "{name}: {claims:?}");
    }
}

#[tokio::test]
async fn a_window_counts_up_to_its_limit_per_subject() {
    for (name, store, _guard) in stores().await {
        let window = 1_800_000_000_000;
        for expected in 1..=3 {
            assert_eq!(
                store
                    .count_in_window("tenant:a", window, 60_000, 3)
                    .await
                    .unwrap(),
                (true, expected),
                "{name}"
            );
        }
        assert_eq!(
            store
                .count_in_window("tenant:a", window, 60_000, 3)
                .await
                .unwrap(),
            (false, 3),
            "{name}: full"
        );
        assert_eq!(
            store
                .count_in_window("tenant:b", window, 60_000, 3)
                .await
                .unwrap(),
            (true, 1),
            "{name}: per subject"
        );
        assert_eq!(
            store
                .count_in_window("tenant:a", window + 60_000, 60_000, 3)
                .await
                .unwrap(),
            (true, 1),
            "{name}: a new window starts empty"
        );
    }
}
