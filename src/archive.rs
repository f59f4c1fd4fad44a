//! Streams a job's results as a ZIP without building it in memory.
//!
//! The `zip` writer is synchronous, so it runs on a blocking thread, pulls each
//! object from storage chunk by chunk and pushes 256 KiB pieces into a
//! bounded channel that the HTTP body drains: a slow client slows the writer
//! down instead of growing a buffer. Pieces are large because each is a
//! hand-off between threads, which costs more than copying its bytes (see
//! the README's Performance section). A client that reads too slowly on average,
//! or for too long (the `Pace` given), or not at all for a minute, is cut
//! off rather than holding the thread; so is a storage read that stalls.
//! The caller's permit (the cap on concurrent downloads) is held until the
//! writer ends. Entries are stored, not deflated: images are already
//! compressed.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, Datelike, Timelike, Utc};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{CompressionMethod, ZipWriter};

use crate::jobs::admission::Pace;
use crate::store::ObjectStore;

const CHUNK: usize = 256 * 1024;
const CHANNEL_DEPTH: usize = 2;
/// How long a download may stall (client reading nothing) before it is cut.
const CLIENT_STALL_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// One archive entry backed by a stored object.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub key: String,
    /// Shown as the entry's date by unzip tools (UTC: ZIP has no time zone).
    pub modified: DateTime<Utc>,
}

/// Returns the ZIP as a stream of chunks: each entry in order, then `manifest`
/// as `manifest_name` (dated now). Any failure ends the stream with an error
/// (the client sees a broken transfer, never a silently short archive).
pub fn stream(
    store: Arc<dyn ObjectStore>,
    entries: Vec<Entry>,
    manifest_name: String,
    manifest: Vec<u8>,
    pace: Pace,
    permit: impl Send + 'static,
) -> impl Stream<Item = io::Result<Bytes>> {
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(CHANNEL_DEPTH);
    let runtime = tokio::runtime::Handle::current();
    // Set only once the central directory is out: the body ends cleanly iff
    // the archive is whole (whatever way the writer stops: error, panic...).
    let complete = Arc::new(AtomicBool::new(false));
    let writer_complete = complete.clone();
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let result = write_archive(
            &runtime,
            store.as_ref(),
            &entries,
            (&manifest_name, &manifest),
            ChannelWriter::new(tx.clone(), runtime.clone(), pace),
            tx,
            &writer_complete,
        );
        match result {
            Ok(()) => {}
            // BrokenPipe means the client went away: nothing worth logging.
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {}
            Err(e) => log::error!("ZIP stream aborted: {e}"),
        }
    });
    futures::stream::unfold(Some(rx), move |rx| {
        let complete = complete.clone();
        async move {
            let mut rx = rx?;
            match rx.recv().await {
                Some(item) => Some((item, Some(rx))),
                None if complete.load(Ordering::Acquire) => None,
                None => Some((Err(io::Error::other("ZIP archive incomplete")), None)),
            }
        }
    })
}

fn write_archive(
    runtime: &tokio::runtime::Handle,
    store: &dyn ObjectStore,
    entries: &[Entry],
    (manifest_name, manifest): (&str, &[u8]),
    writer: ChannelWriter,
    error_tx: mpsc::Sender<io::Result<Bytes>>,
    complete: &AtomicBool,
) -> io::Result<()> {
    let mut zip = ZipWriter::new_stream(writer);
    match write_entries(&mut zip, runtime, store, entries, manifest_name, manifest) {
        Ok(()) => {
            let mut writer = zip.finish().map_err(io::Error::other)?;
            writer.flush()?;
            // Before the writer (the channel's last sender) is dropped, so the
            // body sees "complete" by the time it sees the channel close.
            complete.store(true, Ordering::Release);
            drop(writer);
            Ok(())
        }
        Err(e) => {
            // The error must reach the client before `zip` is dropped: dropping
            // a ZipWriter finalises it, which would otherwise hand the client a
            // well-formed but silently short archive.
            if !matches!(
                e.kind(),
                io::ErrorKind::BrokenPipe | io::ErrorKind::TimedOut
            ) {
                let _ = send_bounded(
                    runtime,
                    &error_tx,
                    Err(io::Error::new(e.kind(), e.to_string())),
                    CLIENT_STALL_LIMIT,
                );
            }
            Err(e)
        }
    }
}

fn write_entries(
    zip: &mut ZipWriter<StreamWriter<ChannelWriter>>,
    runtime: &tokio::runtime::Handle,
    store: &dyn ObjectStore,
    entries: &[Entry],
    manifest_name: &str,
    manifest: &[u8],
) -> io::Result<()> {
    let stored = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Stored)
        .unix_permissions(0o644);
    for entry in entries {
        let mut object = runtime
            .block_on(store.get_stream(&entry.key))
            .map_err(|e| io::Error::other(format!("{}: {e}", entry.name)))?;
        // Sizes are not known to the writer ahead of time in stream mode; only
        // entries of 4 GiB and more need the ZIP64 form.
        let options = stored
            .large_file(object.size >= u32::MAX as u64)
            .last_modified_time(zip_time(entry.modified));
        zip.start_file(entry.name.as_str(), options)
            .map_err(io::Error::other)?;
        while let Some(chunk) = runtime.block_on(object.stream.next()) {
            zip.write_all(&chunk?)?;
        }
    }
    zip.start_file(
        manifest_name,
        stored.last_modified_time(zip_time(Utc::now())),
    )
    .map_err(io::Error::other)?;
    zip.write_all(manifest)
}

/// ZIP's DOS timestamps cover 1980–2107 at 2 s resolution; outside that range
/// the format's own default (1980-01-01) is the honest answer.
fn zip_time(t: DateTime<Utc>) -> zip::DateTime {
    let parts = (
        u16::try_from(t.year()).ok(),
        t.month() as u8,
        t.day() as u8,
        t.hour() as u8,
        t.minute() as u8,
        t.second() as u8,
    );
    match parts {
        (Some(year), month, day, hour, minute, second) => {
            zip::DateTime::from_date_and_time(year, month, day, hour, minute, second)
                .unwrap_or_default()
        }
        _ => zip::DateTime::default(),
    }
}

/// A `Write` that forwards fixed-size chunks into a bounded channel.
struct ChannelWriter {
    /// `None` once a send has failed: later writes (the finalisation a dropped
    /// ZipWriter attempts) fail at once instead of waiting on a dead client.
    tx: Option<mpsc::Sender<io::Result<Bytes>>>,
    buf: BytesMut,
    runtime: tokio::runtime::Handle,
    pace: Pace,
    started: Instant,
    /// Bytes handed to the client so far.
    sent: u64,
}

impl ChannelWriter {
    fn new(
        tx: mpsc::Sender<io::Result<Bytes>>,
        runtime: tokio::runtime::Handle,
        pace: Pace,
    ) -> Self {
        ChannelWriter {
            tx: Some(tx),
            buf: BytesMut::with_capacity(CHUNK),
            runtime,
            pace,
            started: Instant::now(),
            sent: 0,
        }
    }

    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = self.buf.split().freeze();
        let Some(tx) = &self.tx else {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "body already failed",
            ));
        };
        // Waits no longer than the client's pace allows: a reader that
        // stopped is cut when its average falls under the minimum.
        let len = chunk.len() as u64;
        let patience = self
            .pace
            .patience(self.sent, self.started.elapsed())
            .min(CLIENT_STALL_LIMIT);
        let sent = send_bounded(&self.runtime, tx, Ok(chunk), patience).and_then(|()| {
            self.sent += len;
            self.pace
                .check(self.sent, self.started.elapsed())
                .map_err(|e| io::Error::new(io::ErrorKind::TimedOut, format!("download {e}")))
        });
        if sent.is_err() {
            self.tx = None;
        }
        sent
    }
}

/// Sends into the body channel, giving up on a client that has stopped
/// reading: each archive holds a blocking thread, and a stalled download must
/// not hold one forever.
fn send_bounded(
    runtime: &tokio::runtime::Handle,
    tx: &mpsc::Sender<io::Result<Bytes>>,
    item: io::Result<Bytes>,
    patience: std::time::Duration,
) -> io::Result<()> {
    use mpsc::error::SendTimeoutError;
    match runtime.block_on(tx.send_timeout(item, patience)) {
        Ok(()) => Ok(()),
        Err(SendTimeoutError::Closed(_)) => Err(io::Error::new(
            io::ErrorKind::BrokenPipe,
            "client disconnected",
        )),
        Err(SendTimeoutError::Timeout(_)) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("client read nothing for {patience:?}"),
        )),
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let n = room.min(data.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send_buffer()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buffer()
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = self.send_buffer();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhurried() -> Pace {
        Pace {
            timeout: std::time::Duration::from_secs(60),
            min_bytes_per_sec: 0,
            grace: std::time::Duration::from_secs(10),
        }
    }

    fn permit() -> tokio::sync::OwnedSemaphorePermit {
        Arc::new(tokio::sync::Semaphore::new(1))
            .try_acquire_owned()
            .expect("a free permit")
    }
    use crate::store::{ObjectStream, StoreError};
    use async_trait::async_trait;
    use futures::TryStreamExt;

    /// Serves fixed objects; the object "broken" fails after its first chunk,
    /// as a storage connection dropping mid-transfer does.
    struct Objects;

    #[async_trait]
    impl ObjectStore for Objects {
        async fn put_file(&self, _: &str, _: &std::path::Path, _: &str) -> Result<(), StoreError> {
            unreachable!("the archive only reads")
        }
        async fn put_bytes(&self, _: &str, _: Bytes, _: &str) -> Result<(), StoreError> {
            unreachable!("the archive only reads")
        }
        async fn get_bytes(&self, _: &str) -> Result<Bytes, StoreError> {
            unreachable!("the archive streams")
        }
        async fn get_stream(&self, key: &str) -> Result<ObjectStream, StoreError> {
            let chunk = Ok(Bytes::from(vec![b'x'; 100_000]));
            let stream = match key {
                "broken" => {
                    futures::stream::iter(vec![chunk, Err(io::Error::other("connection reset"))])
                        .boxed()
                }
                _ => futures::stream::iter(vec![chunk]).boxed(),
            };
            Ok(ObjectStream {
                size: 200_000,
                stream,
            })
        }
        async fn delete(&self, _: &str) -> Result<(), StoreError> {
            unreachable!("the archive only reads")
        }
        async fn check(&self) -> Result<(), StoreError> {
            Ok(())
        }
    }

    fn entries(keys: &[&str]) -> Vec<Entry> {
        keys.iter()
            .map(|k| Entry {
                name: format!("{k}.bin"),
                key: k.to_string(),
                modified: Utc::now(),
            })
            .collect()
    }

    #[tokio::test]
    async fn a_whole_archive_ends_cleanly_and_unzips() {
        let body = stream(
            Arc::new(Objects),
            entries(&["a", "b"]),
            "manifest.json".into(),
            b"{}".to_vec(),
            unhurried(),
            permit(),
        );
        let chunks: Vec<Bytes> = body
            .try_collect()
            .await
            .expect("no error in a whole archive");
        let bytes: Vec<u8> = chunks.concat();
        let mut zip = zip::ZipArchive::new(io::Cursor::new(bytes)).expect("valid ZIP");
        let names: Vec<String> = (0..zip.len())
            .map(|i| zip.by_index(i).unwrap().name().unwrap().to_string())
            .collect();
        assert_eq!(names, ["a.bin", "b.bin", "manifest.json"]);
    }

    #[tokio::test]
    async fn a_storage_failure_mid_entry_ends_the_body_with_an_error() {
        let body = stream(
            Arc::new(Objects),
            entries(&["a", "broken", "c"]),
            "manifest.json".into(),
            b"{}".to_vec(),
            unhurried(),
            permit(),
        );
        let items: Vec<io::Result<Bytes>> = body.collect().await;
        let first_error = items
            .iter()
            .position(Result::is_err)
            .expect("the body must fail, not end cleanly");
        // Everything before the error is an unfinished archive: no central
        // directory, so no client can mistake it for a complete (short) one.
        let before: Vec<u8> = items[..first_error]
            .iter()
            .flat_map(|r| r.as_ref().unwrap().to_vec())
            .collect();
        assert!(zip::ZipArchive::new(io::Cursor::new(before)).is_err());
    }

    #[test]
    fn entry_dates_are_the_finish_times() {
        let t = DateTime::parse_from_rfc3339("2026-11-23T10:15:31Z")
            .unwrap()
            .with_timezone(&Utc);
        let z = zip_time(t);
        assert_eq!((z.year(), z.month(), z.day()), (2026, 11, 23));
        // DOS time keeps even seconds only.
        assert_eq!((z.hour(), z.minute(), z.second()), (10, 15, 30));
        let ancient = DateTime::parse_from_rfc3339("1970-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(zip_time(ancient), zip::DateTime::default());
    }
}
