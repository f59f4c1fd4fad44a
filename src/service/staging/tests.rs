//! `Staging` over the memory store.

use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;

use super::*;
use crate::jobs::intake::TEST_LIMITS;
use crate::store::memory::MemoryStore;

fn png(seed: u8) -> Upload {
    let img = image::RgbImage::from_fn(40, 30, |x, y| image::Rgb([x as u8, y as u8, seed]));
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png)
        .expect("a PNG");
    upload(&format!("{seed}.png"), out.into_inner())
}

fn upload(name: &str, bytes: Vec<u8>) -> Upload {
    Upload {
        filename: name.to_string(),
        content: Content::Memory(Bytes::from(bytes)),
    }
}

fn keep() -> Keep {
    Arc::new(())
}

fn staging(store: &Arc<MemoryStore>, early: bool) -> Staging {
    Staging {
        job_id: JobId::new(),
        store: store.clone(),
        limits: TEST_LIMITS,
        hash: false,
        early,
        permits: Arc::new(Semaphore::new(STORE_CONCURRENCY)),
        ledger: Arc::default(),
        received: Vec::new(),
        settled: false,
    }
}

/// Polls `store` until it holds `count` objects (within 5 s).
async fn holds(store: &MemoryStore, count: usize) -> bool {
    for _ in 0..500 {
        if store.keys().len() == count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    false
}

#[tokio::test]
async fn uploads_are_stored_as_they_pass_and_handed_over_whole() {
    let store = Arc::new(MemoryStore::default());
    let mut staged = staging(&store, true);
    staged.receive(png(1), keep());
    staged.receive(png(2), keep());
    // Stored before anyone asks for them: the write overlaps the upload.
    assert!(holds(&store, 2).await, "{:?}", store.keys());
    let examined = staged.examined().await.expect("both pass");
    assert_eq!(examined.len(), 2);
    staged.finish().await.expect("handed over");
    let id = staged.job_id();
    drop(staged);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(store.keys(), vec![input_key(id, 0), input_key(id, 1)]);
}

#[tokio::test]
async fn a_bad_upload_is_never_stored_and_a_refusal_removes_the_others() {
    let store = Arc::new(MemoryStore::default());
    let mut staged = staging(&store, true);
    staged.receive(png(1), keep());
    staged.receive(upload("notes.png", b"just text".to_vec()), keep());
    staged.receive(png(3), keep());
    assert!(holds(&store, 2).await, "{:?}", store.keys());
    let refused = staged
        .examined()
        .await
        .map(|found| found.len())
        .expect_err("the second is bad");
    assert!(matches!(&refused, JobError::BadFile { file, .. } if file == "notes.png"));
    staged.abandon().await;
    // Removed before the refusal is answered, not eventually.
    assert!(store.keys().is_empty(), "{:?}", store.keys());
}

#[tokio::test]
async fn a_dropped_staging_removes_its_uploads_in_the_background() {
    let store = Arc::new(MemoryStore::default());
    let mut staged = staging(&store, true);
    staged.receive(png(1), keep());
    staged.receive(png(2), keep());
    assert!(holds(&store, 2).await);
    // The request was cancelled (its client went away).
    drop(staged);
    assert!(holds(&store, 0).await, "{:?}", store.keys());
}

/// A store whose writes take 200 ms, and the flag each write sets as it
/// starts.
fn slow_store() -> (Arc<MemoryStore>, Arc<AtomicBool>) {
    let store = Arc::new(MemoryStore::default());
    let writing = Arc::new(AtomicBool::new(false));
    let flag = writing.clone();
    store.on_put(move |_| {
        flag.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(200));
    });
    (store, writing)
}

async fn until_set(flag: &AtomicBool) {
    while !flag.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_ends_after_the_refusal_is_removed_too() {
    let (store, writing) = slow_store();
    let mut staged = staging(&store, true);
    staged.receive(png(1), keep());
    // The refusal comes while this write is under way.
    until_set(&writing).await;
    staged.abandon().await;
    assert!(store.keys().is_empty(), "{:?}", store.keys());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_is_kept_until_its_write_ends() {
    let (store, writing) = slow_store();
    let mut staged = staging(&store, true);
    let kept = Arc::new(());
    staged.receive(png(1), kept.clone());
    until_set(&writing).await;
    // The request is cancelled while its upload is being written: the
    // bytes stay counted (and a spooled file stays) until the write ends.
    drop(staged);
    assert!(Arc::strong_count(&kept) > 1, "let go under a write");
    assert!(holds(&store, 0).await, "{:?}", store.keys());
    for _ in 0..500 {
        if Arc::strong_count(&kept) == 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("still kept after the write and its removal");
}

#[tokio::test]
async fn a_repeated_request_stores_nothing_unless_it_is_recorded() {
    let store = Arc::new(MemoryStore::default());
    let mut staged = staging(&store, false);
    staged.receive(png(1), keep());
    staged.receive(png(2), keep());
    staged.examined().await.expect("both pass");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(store.keys().is_empty(), "{:?}", store.keys());
    staged.finish().await.expect("stored now");
    assert_eq!(store.keys().len(), 2);
}

#[tokio::test]
async fn a_failed_write_fails_the_hand_over_and_leaves_nothing() {
    let store = Arc::new(MemoryStore::default());
    let mut staged = staging(&store, true);
    store.set_down(true);
    staged.receive(png(1), keep());
    staged.examined().await.expect("it passes");
    let failed = staged.finish().await.expect_err("the store is down");
    assert!(matches!(failed, JobError::Store(_)), "{failed:?}");
    store.set_down(false);
    drop(staged);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(store.keys().is_empty(), "{:?}", store.keys());
}
