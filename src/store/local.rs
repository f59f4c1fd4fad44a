//! Object storage in a local directory: the embedded default, and what
//! `imgpipe api` and `imgpipe worker` share when they run on one host.
//!
//! An object is a file at `<root>/<key>`. Writes go to a temporary file in
//! one of `<root>/.tmp/<0-f>/` and are renamed into place, so a reader never
//! sees half an object, and a process killed mid-write leaves its debris
//! outside the jobs' directories (swept at start-up). Keys are checked: none
//! may leave the root.

use std::io;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use super::{ObjectStore, ObjectStream, StoreError};
use crate::backend_error::ErrorKind;
use crate::direct_io::on_blocking_threads;

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

/// Temporary files older than this were left by a process killed mid-write
/// (a live write takes seconds at most); younger ones may be another
/// process's write in progress.
const STALE_TMP: std::time::Duration = std::time::Duration::from_secs(3600);

/// Temporary files are spread over this many directories. Creating a file
/// holds its directory's lock while the file system looks for a free inode,
/// which ext4 without a journal makes slow (it skips every inode freed in
/// the last minute, one lookup each): with one directory, concurrent writes
/// queued on its lock, and the kernel's waiters spin.
const TMP_SHARDS: u128 = 16;

impl LocalStore {
    /// Creates the root directory if needed, and removes stale temporary files.
    pub async fn open(root: PathBuf) -> Result<Self, StoreError> {
        let store = LocalStore { root };
        for shard in 0..TMP_SHARDS {
            let dir = store.tmp_dir().join(format!("{shard:x}"));
            tokio::fs::create_dir_all(dir).await.map_err(|e| {
                StoreError::with_source(
                    ErrorKind::Refused,
                    format!("cannot create {}", store.root.display()),
                    e,
                )
            })?;
        }
        let tmp = store.tmp_dir();
        // Files directly in `.tmp/` were written by an earlier version.
        let _ = on_blocking_threads(move || {
            sweep_stale_tmp(&tmp);
            Ok(())
        })
        .await;
        Ok(store)
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join(".tmp")
    }

    /// A new temporary file's path, in a shard picked at random.
    fn tmp_file(&self) -> PathBuf {
        let id = ulid::Ulid::new();
        let shard = id.random() % TMP_SHARDS;
        self.tmp_dir()
            .join(format!("{shard:x}"))
            .join(id.to_string())
    }

    /// The file of `key`, refusing keys that are empty, absolute, or climb out
    /// of the root (`..`): the job domain never makes such keys, so one is a bug.
    fn path(&self, key: &str) -> Result<PathBuf, StoreError> {
        let relative = Path::new(key.trim_end_matches('/'));
        let normal = relative
            .components()
            .all(|c| matches!(c, Component::Normal(_)));
        if key.is_empty() || !normal {
            return Err(StoreError::new(
                ErrorKind::Refused,
                format!("invalid object key {key:?}"),
            ));
        }
        Ok(self.root.join(relative))
    }

    /// Writes `bytes` (or links or copies `source`) to a temporary file,
    /// then renames it into place: all of it in one trip to the blocking
    /// threads (each `tokio::fs` call would be a trip of its own).
    async fn write(&self, key: &str, content: Content) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let dir = path.parent().unwrap_or(&self.root).to_path_buf();
        let tmp = self.tmp_file();
        blocking(key, move || {
            let written = place(&content, &tmp, &dir, &path);
            if written.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            written
        })
        .await
    }
}

/// Removes the files under `dir` (and one level of directories down) last
/// modified over [`STALE_TMP`] ago.
fn sweep_stale_tmp(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            if dir.file_name() == Some(std::ffi::OsStr::new(".tmp")) {
                sweep_stale_tmp(&entry.path());
            }
            continue;
        }
        let stale = meta
            .modified()
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > STALE_TMP);
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// `content` to `tmp`, then `tmp` renamed to `path` (in `dir`).
fn place(content: &Content, tmp: &Path, dir: &Path, path: &Path) -> io::Result<()> {
    match create(content, tmp) {
        // Its shard of `.tmp/` went (removed by hand): made again.
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(tmp.parent().unwrap_or(dir))?;
            create(content, tmp)?;
        }
        other => other?,
    }
    // The object's directory usually exists (a job's first object made
    // it), so the rename is tried first and the directories made only when
    // it says they are missing. A delete elsewhere removes directories it
    // leaves empty, which may include a parent this write has just created
    // (`jobs/` when the last other job goes): create them again and retry.
    let mut attempt = 0;
    loop {
        attempt += 1;
        let placed = match std::fs::rename(tmp, path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir).and_then(|()| std::fs::rename(tmp, path))
            }
            other => other,
        };
        match placed {
            // NotFound: a parent went before the rename; AlreadyExists:
            // create_dir_all found a directory that went before it looked.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::AlreadyExists
                ) && attempt < 5 => {}
            other => return other,
        }
    }
}

/// The temporary file `tmp`, holding `content`.
fn create(content: &Content, tmp: &Path) -> io::Result<()> {
    match content {
        Content::Bytes(bytes) => crate::direct_io::write_new(tmp, bytes),
        Content::File(source) => {
            // A spooled upload on the same filesystem is linked, not
            // copied (4 MB less to write per 8-image POST); the caller
            // still owns, and later removes, its own name.
            if std::fs::hard_link(source, tmp).is_err() {
                std::fs::copy(source, tmp)?;
            }
            Ok(())
        }
    }
}

/// [`on_blocking_threads`], its error that of the object `key`.
async fn blocking<T: Send + 'static>(
    key: &str,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> Result<T, StoreError> {
    on_blocking_threads(f).await.map_err(|e| io_error(key, e))
}

enum Content {
    Bytes(Bytes),
    File(PathBuf),
}

/// A missing file is a missing object; a full or failing disk may recover and
/// is worth retrying; a permission problem is the operator's to fix.
fn io_error(key: &str, e: io::Error) -> StoreError {
    let kind = match e.kind() {
        io::ErrorKind::NotFound => ErrorKind::NotFound,
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => ErrorKind::Refused,
        _ => ErrorKind::Unavailable,
    };
    StoreError::with_source(kind, key, e)
}

#[async_trait]
impl ObjectStore for LocalStore {
    async fn put_file(
        &self,
        key: &str,
        path: &Path,
        _content_type: &str,
    ) -> Result<(), StoreError> {
        self.write(key, Content::File(path.to_path_buf())).await
    }

    async fn put_bytes(
        &self,
        key: &str,
        bytes: Bytes,
        _content_type: &str,
    ) -> Result<(), StoreError> {
        self.write(key, Content::Bytes(bytes)).await
    }

    async fn get_bytes(&self, key: &str) -> Result<Bytes, StoreError> {
        let path = self.path(key)?;
        blocking(key, move || crate::direct_io::read_all(&path)).await
    }

    async fn get_stream(&self, key: &str) -> Result<ObjectStream, StoreError> {
        let path = self.path(key)?;
        super::file_stream::open(&path)
            .await
            .map_err(|e| io_error(key, e))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path(key)?;
        let root = self.root.clone();
        blocking(key, move || {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            // Leave no empty directories behind (a job's last object takes its
            // directories with it); one that is not empty stays.
            let mut dir = path.parent();
            while let Some(d) = dir.filter(|d| *d != root) {
                if std::fs::remove_dir(d).is_err() {
                    break;
                }
                dir = d.parent();
            }
            Ok(())
        })
        .await
    }

    async fn check(&self) -> Result<(), StoreError> {
        match tokio::fs::metadata(&self.root).await {
            Ok(meta) if meta.is_dir() => Ok(()),
            Ok(_) => Err(StoreError::new(
                ErrorKind::Refused,
                format!("{} is not a directory", self.root.display()),
            )),
            Err(e) => Err(StoreError::unavailable(self.root.display().to_string(), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::TryStreamExt;

    /// One job's delete removes the `jobs/` directory it leaves empty while
    /// another job's write is creating it: the write must still land.
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn writes_survive_deletes_that_empty_shared_parents() {
        let dir = tempfile::tempdir().unwrap();
        let store =
            std::sync::Arc::new(LocalStore::open(dir.path().join("objects")).await.unwrap());
        let tasks: Vec<_> = (0..8)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0..400 {
                        let key = format!("jobs/{t}-{i}/input/0");
                        store.put_bytes(&key, Bytes::from_static(b"x"), "x").await?;
                        store.delete(&key).await?;
                    }
                    Ok::<(), StoreError>(())
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().expect("every write lands");
        }
    }

    #[tokio::test]
    async fn objects_round_trip_and_deletes_leave_no_empty_directories() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path().join("objects")).await.unwrap();
        store
            .put_bytes(
                "jobs/a/output/0.png",
                Bytes::from_static(b"png"),
                "image/png",
            )
            .await
            .unwrap();
        let source = dir.path().join("upload");
        std::fs::write(&source, b"upload bytes").unwrap();
        store
            .put_file("jobs/a/input/0", &source, "image/png")
            .await
            .unwrap();
        store
            .put_bytes("jobs/b/input/0", Bytes::from_static(b"b"), "image/png")
            .await
            .unwrap();

        assert_eq!(
            &store.get_bytes("jobs/a/input/0").await.unwrap()[..],
            b"upload bytes"
        );
        let object = store.get_stream("jobs/a/output/0.png").await.unwrap();
        assert_eq!(object.size, 3);
        let streamed: Vec<u8> = object
            .stream
            .map_ok(|b| b.to_vec())
            .try_concat()
            .await
            .unwrap();
        assert_eq!(streamed, b"png");

        store.delete("jobs/a/input/0").await.unwrap();
        store.delete("jobs/a/output/0.png").await.unwrap();
        assert!(!dir.path().join("objects/jobs/a").exists());
        assert!(matches!(
            store.get_bytes("jobs/a/input/0").await,
            Err(e) if e.kind() == ErrorKind::NotFound
        ));
        assert_eq!(&store.get_bytes("jobs/b/input/0").await.unwrap()[..], b"b");
        store.delete("jobs/b/input/0").await.unwrap();
        store.delete("jobs/b/input/0").await.unwrap();
        // No temporary files or empty directories are left behind.
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("objects"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|name| name != ".tmp")
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("objects/.tmp"))
            .unwrap()
            .flat_map(|shard| std::fs::read_dir(shard.unwrap().path()).unwrap())
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }

    /// Debris of a killed process, in a shard or left directly in `.tmp/` by
    /// an earlier version, is swept at start-up once stale; a write in
    /// progress is not. A shard removed by hand is made again by a write.
    #[tokio::test]
    async fn stale_temporary_files_are_swept_and_missing_shards_remade() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("objects");
        LocalStore::open(root.clone()).await.unwrap();
        let old = std::time::SystemTime::now() - 2 * STALE_TMP;
        let file = |path: PathBuf, modified: Option<std::time::SystemTime>| {
            let f = std::fs::File::create(&path).unwrap();
            if let Some(t) = modified {
                f.set_modified(t).unwrap();
            }
            path
        };
        let legacy = file(root.join(".tmp/01ARZ3NDEKTSV4RRFFQ69G5FAV"), Some(old));
        let stale = file(root.join(".tmp/3/01ARZ3NDEKTSV4RRFFQ69G5FAW"), Some(old));
        let fresh = file(root.join(".tmp/4/01ARZ3NDEKTSV4RRFFQ69G5FAX"), None);
        let store = LocalStore::open(root.clone()).await.unwrap();
        assert!(!legacy.exists() && !stale.exists());
        assert!(fresh.exists());

        for shard in 0..TMP_SHARDS {
            std::fs::remove_dir_all(root.join(format!(".tmp/{shard:x}"))).ok();
        }
        store
            .put_bytes("jobs/a/input/0", Bytes::from_static(b"a"), "x")
            .await
            .unwrap();
        assert_eq!(&store.get_bytes("jobs/a/input/0").await.unwrap()[..], b"a");
    }

    #[tokio::test]
    async fn keys_cannot_leave_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalStore::open(dir.path().join("objects")).await.unwrap();
        for key in ["../x", "jobs/../../x", "/etc/passwd", "", "./x"] {
            assert!(
                matches!(
                    store.put_bytes(key, Bytes::new(), "x").await,
                    Err(e) if e.kind() == ErrorKind::Refused
                ),
                "{key:?} was accepted"
            );
        }
        assert!(!dir.path().join("x").exists());
    }
}
