//! Whole-file I/O that bypasses the page cache (`O_DIRECT`), for the
//! local object store, the upload spool and the inspection of uploads.
//! Blocking calls: async callers run them through [`on_blocking_threads`].
//! Nothing here knows about keys or jobs.
//!
//! Why: an object is written once and read once or twice soon after, so
//! caching it buys little, and a buffered write or a cold buffered read
//! costs the kernel fresh page-cache pages, which on a VM that hands freed
//! memory back to its host is most of the cost of the copy (see the
//! README's Performance section for the measurement). Direct I/O moves the
//! bytes between the disk and our own (already warm) buffers. MinIO writes
//! its objects the same way.
//!
//! Direct I/O needs the buffer, the file offset and the length aligned to
//! the device's block size; [`ALIGN`] is a multiple of every usual one. The
//! unaligned tail of a write goes through the page cache (one page at
//! most), and a file system that refuses `O_DIRECT` (tmpfs, some FUSE) gets
//! plain buffered I/O: the result is the same bytes either way.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

use bytes::Bytes;

/// Runs `f`'s file system calls on tokio's blocking threads, as one trip
/// (each `tokio::fs` call would be a trip of its own); a panic in `f` is an
/// error like any other.
pub async fn on_blocking_threads<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(io::Error::other(format!("file system call crashed: {e}"))))
}

/// Alignment of buffers, offsets and lengths for direct I/O.
pub const ALIGN: usize = 4096;

/// A byte buffer whose contents start at an [`ALIGN`]-aligned address.
pub struct AlignedBuf {
    buf: Vec<u8>,
    start: usize,
}

impl AlignedBuf {
    /// An empty buffer with room for `capacity` bytes without moving.
    pub fn with_capacity(capacity: usize) -> Self {
        let buf: Vec<u8> = Vec::with_capacity(capacity + ALIGN);
        let start = buf.as_ptr().align_offset(ALIGN).min(ALIGN);
        let mut aligned = AlignedBuf { buf, start };
        aligned.buf.resize(start, 0);
        aligned
    }

    pub fn len(&self) -> usize {
        self.buf.len() - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes it holds without moving, from its aligned start.
    pub fn capacity(&self) -> usize {
        self.buf.capacity() - self.start
    }

    /// Room left before the buffer would have to move (and lose its alignment).
    pub fn spare(&self) -> usize {
        self.buf.capacity() - self.buf.len()
    }

    pub fn as_slice(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    /// Appends `bytes`; the caller keeps within [`Self::spare`].
    pub fn extend(&mut self, bytes: &[u8]) {
        debug_assert!(bytes.len() <= self.spare());
        self.buf.extend_from_slice(bytes);
    }

    /// Drops the first `n` bytes, moving the rest to the front.
    pub fn consume(&mut self, n: usize) {
        self.buf.drain(self.start..self.start + n);
    }

    /// The contents as `Bytes`, without a copy.
    pub fn into_bytes(self) -> Bytes {
        let start = self.start;
        Bytes::from(self.buf).slice(start..)
    }
}

/// Switches an open file to direct I/O; `false` where the file system
/// refuses it (the file then stays buffered, which works the same).
pub fn try_direct(file: &File) -> bool {
    set_direct(file, true).is_ok()
}

/// Opens a new file (it must not exist) for writing, direct if the file
/// system allows it; the flag says which.
pub fn create(path: &Path) -> io::Result<(File, bool)> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    match open_direct(&options, path) {
        Ok(file) => Ok((file, true)),
        Err(e) if refused_direct(&e) => options.open(path).map(|f| (f, false)),
        Err(e) => Err(e),
    }
}

/// Writes the [`ALIGN`]-multiple prefix of `buf` to `file` (direct when
/// `direct`) and returns how many bytes that was; the rest stays for later.
pub fn write_aligned(file: &mut File, buf: &AlignedBuf, direct: bool) -> io::Result<usize> {
    let whole = if direct {
        buf.len() / ALIGN * ALIGN
    } else {
        buf.len()
    };
    file.write_all(&buf.as_slice()[..whole])?;
    Ok(whole)
}

/// Writes what is left of `buf` (less than [`ALIGN`] bytes when direct)
/// through the page cache, which takes any length.
pub fn write_tail(file: &mut File, buf: &AlignedBuf, direct: bool) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    if direct {
        set_direct(file, false)?;
    }
    file.write_all(buf.as_slice())
}

/// Writes `bytes` as the new file `path`.
pub fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let (mut file, direct) = create(path)?;
    if !direct {
        return file.write_all(bytes);
    }
    let whole = bytes.len() / ALIGN * ALIGN;
    if whole > 0 {
        // Bytes that came from an `AlignedBuf` are written as they are.
        if bytes.as_ptr().align_offset(ALIGN) == 0 {
            file.write_all(&bytes[..whole])?;
        } else {
            let mut aligned = AlignedBuf::with_capacity(whole);
            aligned.extend(&bytes[..whole]);
            file.write_all(aligned.as_slice())?;
        }
    }
    let mut tail = AlignedBuf::with_capacity(bytes.len() - whole);
    tail.extend(&bytes[whole..]);
    write_tail(&mut file, &tail, true)
}

/// Opens `path` for reading, direct if the file system allows it.
pub fn open_read(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.read(true);
    match open_direct(&options, path) {
        Err(e) if refused_direct(&e) => options.open(path),
        other => other,
    }
}

/// Reads the whole file at `path`.
pub fn read_all(path: &Path) -> io::Result<Bytes> {
    let mut file = open_read(path)?;
    let size = usize::try_from(file.metadata()?.len())
        .map_err(|_| io::Error::other("file too large for memory"))?;
    // One block more than the size: a file that grew meanwhile is read as
    // far as the room goes, and the end is seen without another read.
    read_chunk(&mut file, (size / ALIGN + 1) * ALIGN)
}

/// Reads up to `max` bytes (a multiple of [`ALIGN`]) from where `file`
/// stands; fewer only at the end of the file, and empty past it.
pub fn read_chunk(file: &mut File, max: usize) -> io::Result<Bytes> {
    let mut buf = AlignedBuf::with_capacity(max);
    while buf.len() < max {
        let want = max - buf.len();
        match read_into_spare(file, &mut buf.buf, want) {
            Ok(0) => break,
            // A short read is the end (the next offset would not even be
            // aligned for a direct read).
            Ok(_) if !buf.len().is_multiple_of(ALIGN) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(buf.into_bytes())
}

/// One `read(2)` of up to `max` bytes into `buf`'s spare capacity (which
/// must hold them), appended. The room is not zeroed first, as
/// `Read::read` would need: the kernel fills it, and zeroing a chunk cost
/// as much as reading it.
fn read_into_spare(file: &File, buf: &mut Vec<u8>, max: usize) -> io::Result<usize> {
    use std::os::fd::AsRawFd;
    if buf.capacity() - buf.len() < max {
        return Err(io::Error::other("a read larger than its buffer"));
    }
    let room = buf.spare_capacity_mut().as_mut_ptr().cast::<libc::c_void>();
    // SAFETY: `room` points at `max` bytes of `buf`'s own allocation past
    // its length (checked above), which the kernel writes and nothing else
    // reads meanwhile; `buf` grows by exactly the bytes it wrote.
    let n = unsafe { libc::read(file.as_raw_fd(), room, max) };
    let n = usize::try_from(n).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: the first `n` bytes past the length were just written.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

fn open_direct(options: &OpenOptions, path: &Path) -> io::Result<File> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        let mut options = options.clone();
        options.custom_flags(libc::O_DIRECT);
        options.open(path)
    }
    #[cfg(not(target_os = "linux"))]
    {
        options.open(path)
    }
}

/// Whether an open failed only because the file system refuses direct I/O.
fn refused_direct(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EINVAL)
}

/// Turns direct I/O on or off for an open file.
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: F_GETFL/F_SETFL on a file descriptor this `File` owns and
        // keeps open for the duration of the calls.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags < 0 {
                return Err(io::Error::last_os_error());
            }
            let flags = if on {
                flags | libc::O_DIRECT
            } else {
                flags & !libc::O_DIRECT
            };
            if libc::fcntl(fd, libc::F_SETFL, flags) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, on);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_reads_back_every_length_around_the_block_size() {
        let dir = tempfile::tempdir().unwrap();
        for len in [0, 1, ALIGN - 1, ALIGN, ALIGN + 1, 3 * ALIGN + 17, 300_001] {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 % 251) as u8).collect();
            let path = dir.path().join(format!("f{len}"));
            write_new(&path, &bytes).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), bytes, "written, {len} bytes");
            assert_eq!(read_all(&path).unwrap(), bytes, "read, {len} bytes");
            // The same bytes from an aligned buffer, written without a copy.
            let mut aligned = AlignedBuf::with_capacity(len);
            aligned.extend(&bytes);
            let aligned = aligned.into_bytes();
            assert_eq!(aligned.as_ptr().align_offset(ALIGN), 0);
            let path = dir.path().join(format!("a{len}"));
            write_new(&path, &aligned).unwrap();
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bytes,
                "written aligned, {len} bytes"
            );
        }
    }

    #[test]
    fn a_file_reads_back_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let bytes: Vec<u8> = (0..5 * ALIGN + 3).map(|i| (i % 253) as u8).collect();
        write_new(&path, &bytes).unwrap();
        let mut file = open_read(&path).unwrap();
        let mut back = Vec::new();
        loop {
            let chunk = read_chunk(&mut file, 2 * ALIGN).unwrap();
            if chunk.is_empty() {
                break;
            }
            back.extend_from_slice(&chunk);
        }
        assert_eq!(back, bytes);
    }

    #[test]
    fn a_buffered_file_takes_every_byte_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut file = File::create(&path).unwrap();
        let mut buf = AlignedBuf::with_capacity(ALIGN + 10);
        buf.extend(&[1u8; ALIGN + 10]);
        assert_eq!(write_aligned(&mut file, &buf, false).unwrap(), ALIGN + 10);
        assert_eq!(std::fs::read(&path).unwrap().len(), ALIGN + 10);
    }

    #[test]
    fn an_existing_file_is_not_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        write_new(&path, b"first").unwrap();
        assert!(write_new(&path, b"second").is_err());
        assert_eq!(read_all(&path).unwrap(), &b"first"[..]);
    }

    #[test]
    fn a_buffer_stays_aligned_as_it_is_filled_and_consumed() {
        let mut buf = AlignedBuf::with_capacity(3 * ALIGN);
        assert_eq!(buf.as_slice().as_ptr() as usize % ALIGN, 0);
        buf.extend(&vec![7u8; 2 * ALIGN + 5]);
        buf.consume(2 * ALIGN);
        assert_eq!(buf.as_slice(), &[7u8; 5]);
        assert_eq!(buf.as_slice().as_ptr() as usize % ALIGN, 0);
        assert!(buf.spare() >= 2 * ALIGN);
    }
}
