//! Admission checks for uploaded files: format sniffed from the bytes, size
//! and pixel limits read from the header, and a structural check that the file
//! is complete — all without decoding pixels (TIFF excepted, see below).
//! Blocking file I/O: callers run [`inspect`] on a blocking thread.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use image::ImageReader;

use super::tiff_check::{self, TiffProblem};
use crate::codec::{self, InputFormat};

/// Request-level limits, from configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_file_bytes: u64,
    pub max_pixels: u64,
    pub max_files: usize,
    /// Estimated work per image (see `jobs::admission`).
    pub cost: crate::jobs::admission::CostLimits,
    /// Submissions per minute per tenant (or client address in open mode).
    pub quota: crate::jobs::admission::Quotas,
    /// ZIP downloads streamed at once (overall, and of one tenant's jobs),
    /// and how fast each must be read.
    pub max_downloads: usize,
    pub max_downloads_per_tenant: usize,
    /// Submissions received at once per tenant (or client address in open
    /// mode), in each API process.
    pub max_submissions_per_tenant: usize,
    pub download_pace: crate::jobs::admission::Pace,
    /// Images of one tenant waiting in the queue at once (see `jobs::pacing`).
    pub queued_per_tenant: usize,
    /// Who may use the priority lane (see `jobs::pacing::lane`).
    pub priority: crate::jobs::pacing::PriorityLimits,
}

/// Why one uploaded file was refused. The caller adds the file's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileProblem {
    #[error("the file is empty")]
    Empty,
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("not a supported image (accepted formats: jpeg, png, webp, gif, bmp, tiff; detected from the bytes, not the name)")]
    UnsupportedFormat,
    #[error("the {format} image is {width}x{height} = {pixels} pixels, over the limit of {limit} pixels")]
    TooManyPixels {
        format: &'static str,
        width: u32,
        height: u32,
        pixels: u64,
        limit: u64,
    },
    #[error("the {format} image is truncated or incomplete")]
    Truncated { format: &'static str },
    #[error("the {format} image is corrupt: {reason}")]
    Corrupt {
        format: &'static str,
        reason: String,
    },
    /// Its decoder crashed on it: a layout or encoding it does not handle
    /// (what it said is logged, never answered).
    #[error("the {format} image could not be read: its decoder does not handle this file's layout or encoding")]
    Unreadable { format: &'static str },
}

/// What admission learned about an accepted file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inspected {
    pub format: InputFormat,
    pub width: u32,
    pub height: u32,
    pub size_bytes: u64,
}

/// Checks one spooled upload against the limits.
pub fn inspect(path: &Path, limits: &Limits) -> Result<Inspected, FileProblem> {
    let cannot_read = |e: std::io::Error| FileProblem::Corrupt {
        format: "upload",
        reason: format!("cannot read spooled upload: {e}"),
    };
    let file = File::open(path).map_err(cannot_read)?;
    let size_bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    if size_bytes == 0 {
        return Err(FileProblem::Empty);
    }
    if size_bytes > limits.max_file_bytes {
        return Err(FileProblem::TooLarge {
            limit: limits.max_file_bytes,
        });
    }
    // An upload of usual size is read whole, straight from the disk: it was
    // spooled past the page cache, and reading it through the cache would
    // cost what writing it that way saved (see `direct_io`).
    if size_bytes <= READ_WHOLE {
        drop(file);
        let bytes = crate::direct_io::read_all(path).map_err(cannot_read)?;
        return inspect_bytes(&bytes, limits);
    }
    inspect_reader(file, size_bytes, limits)
}

/// Where an upload is examined from: a file too large to read whole, or
/// the bytes of one in memory. The other formats' checks seek and read a
/// few bytes at a time, which either does well unbuffered; a JPEG's end is
/// searched for through its data, in place in memory, and through a buffer
/// ([`SCAN_BUFFER`]) on disk.
trait Upload: Read + Seek {
    fn jpeg_complete(&mut self, dims: &mut Option<(u32, u32)>) -> bool;
}

impl Upload for std::io::Cursor<&[u8]> {
    fn jpeg_complete(&mut self, dims: &mut Option<(u32, u32)>) -> bool {
        jpeg_complete(self, dims)
    }
}

impl Upload for File {
    fn jpeg_complete(&mut self, dims: &mut Option<(u32, u32)>) -> bool {
        jpeg_complete(&mut BufReader::with_capacity(SCAN_BUFFER, self), dims)
    }
}

/// How much of a JPEG too large to read whole is read at a time.
const SCAN_BUFFER: usize = 64 * 1024;

/// [`inspect`] for an upload held in memory.
pub fn inspect_bytes(bytes: &[u8], limits: &Limits) -> Result<Inspected, FileProblem> {
    let size_bytes = bytes.len() as u64;
    if size_bytes > limits.max_file_bytes {
        return Err(FileProblem::TooLarge {
            limit: limits.max_file_bytes,
        });
    }
    inspect_reader(std::io::Cursor::new(bytes), size_bytes, limits)
}

/// Uploads up to this size are inspected from memory.
const READ_WHOLE: u64 = 16 << 20;

fn inspect_reader<R: Upload>(
    mut file: R,
    size_bytes: u64,
    limits: &Limits,
) -> Result<Inspected, FileProblem> {
    if size_bytes == 0 {
        return Err(FileProblem::Empty);
    }
    let mut head = [0u8; 64];
    let n = read_up_to(&mut file, &mut head);
    let format = InputFormat::sniff(&head[..n]).ok_or(FileProblem::UnsupportedFormat)?;
    // Header readers and decoders are third-party code fed untrusted bytes:
    // a panic in one is a file it cannot read, answered as such.
    let head = &head[..n];
    crate::panic_guard::catch(|| inspect_as(&mut file, format, head, size_bytes, limits))
        .unwrap_or_else(|detail| {
            log::warn!(
                "the {} decoder panicked on an upload: {detail}",
                format.name()
            );
            Err(FileProblem::Unreadable {
                format: format.name(),
            })
        })
}

/// [`inspect`] once the format is known: each format's own reader gives
/// the size and whether the file is whole; the checks after are common.
fn inspect_as<R: Upload>(
    file: &mut R,
    format: InputFormat,
    head: &[u8],
    size_bytes: u64,
    limits: &Limits,
) -> Result<Inspected, FileProblem> {
    let corrupt = |reason: String| FileProblem::Corrupt {
        format: format.name(),
        reason,
    };
    let truncated = || FileProblem::Truncated {
        format: format.name(),
    };
    let _ = file.seek(SeekFrom::Start(0));
    let (width, height, complete) = match format {
        InputFormat::Jpeg => {
            // Size and completeness from one walk over the segments,
            // tolerant of junk between them as Pillow is.
            let mut dims = None;
            let complete = file.jpeg_complete(&mut dims);
            let Some((width, height)) = dims else {
                return Err(if complete {
                    corrupt("it has no frame header".into())
                } else {
                    truncated()
                });
            };
            (width, height, complete)
        }
        InputFormat::Bmp => {
            // Pillow's header reading (OS/2, every Windows version,
            // headerless DIB), which the image crate's does not all know.
            let mut head = [0u8; 512];
            let n = read_up_to(&mut *file, &mut head);
            codec::inspect_bmp(&head[..n], size_bytes).map_err(|e| corrupt(e.to_string()))?
        }
        InputFormat::Tiff => {
            // libtiff reads the directory once for size and structure alike.
            let (width, height) = match tiff_check::check(&mut *file, size_bytes) {
                Ok(dims) => dims,
                Err(TiffProblem::Truncated) => return Err(truncated()),
                Err(TiffProblem::Corrupt(reason)) => return Err(corrupt(reason)),
                Err(TiffProblem::Unreadable) => {
                    return Err(FileProblem::Unreadable {
                        format: format.name(),
                    })
                }
            };
            (width, height, true)
        }
        InputFormat::Png | InputFormat::Gif | InputFormat::Webp => {
            // A PNG's size is read from IHDR first: the png decoder refuses
            // a header whose dimensions overflow its buffer arithmetic
            // ("memory limit"), and those are exactly the bombs the pixel
            // limit must name.
            if let Some((width, height)) =
                png_dimensions(head).filter(|_| format == InputFormat::Png)
            {
                check_pixels(format, width, height, limits)?;
            }
            let (width, height) =
                ImageReader::with_format(BufReader::new(&mut *file), format.image_format())
                    .into_dimensions()
                    .map_err(|e| match e {
                        image::ImageError::IoError(_) => truncated(),
                        other => corrupt(other.to_string()),
                    })?;
            let _ = file.seek(SeekFrom::Start(0));
            let complete = match format {
                InputFormat::Png => png_complete(file, size_bytes),
                InputFormat::Gif => last_byte(file, size_bytes) == Some(0x3B),
                _ => riff_complete(head, size_bytes),
            };
            (width, height, complete)
        }
    };
    if width == 0 || height == 0 {
        return Err(corrupt(format!("zero-sized image ({width}x{height})")));
    }
    check_pixels(format, width, height, limits)?;
    if !complete {
        return Err(truncated());
    }
    Ok(Inspected {
        format,
        width,
        height,
        size_bytes,
    })
}

fn check_pixels(
    format: InputFormat,
    width: u32,
    height: u32,
    limits: &Limits,
) -> Result<(), FileProblem> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(FileProblem::TooManyPixels {
            format: format.name(),
            width,
            height,
            pixels,
            limit: limits.max_pixels,
        });
    }
    Ok(())
}

/// Width and height from a PNG's leading IHDR chunk (signature, length, type, w, h).
fn png_dimensions(head: &[u8]) -> Option<(u32, u32)> {
    if head.get(12..16)? != b"IHDR" {
        return None;
    }
    let be = |at: usize| Some(u32::from_be_bytes(head.get(at..at + 4)?.try_into().ok()?));
    Some((be(16)?, be(20)?))
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => filled += n,
        }
    }
    filled
}

fn read_byte(r: &mut impl Read) -> Option<u8> {
    let mut b = [0u8; 1];
    r.read_exact(&mut b).ok().map(|_| b[0])
}

/// Walks the marker segments up to the first scan (skipping thumbnails inside
/// APP segments by their lengths), then looks for the End Of Image marker in
/// the entropy-coded data, where `FF D9` cannot occur otherwise.
fn jpeg_complete(r: &mut impl BufRead, dims: &mut Option<(u32, u32)>) -> bool {
    let mut soi = [0u8; 2];
    if r.read_exact(&mut soi).is_err() || soi != [0xFF, 0xD8] {
        return false;
    }
    loop {
        // Pillow (and libjpeg, with a warning) skips junk between segments.
        let mut marker = 0u8;
        while marker != 0xFF {
            let Some(b) = read_byte(r) else { return false };
            marker = b;
        }
        while marker == 0xFF {
            let Some(m) = read_byte(r) else { return false };
            marker = m;
        }
        match marker {
            0xD9 => return true,
            0x00 | 0x01 | 0xD0..=0xD7 => continue,
            0xDA => break,
            _ => {
                let mut len = [0u8; 2];
                if r.read_exact(&mut len).is_err() {
                    return false;
                }
                let len = u16::from_be_bytes(len) as u64;
                if len < 2 {
                    return false;
                }
                let mut segment = r.take(len - 2);
                // Start of frame (not DHT, JPG or DAC): precision, height, width.
                if matches!(marker, 0xC0..=0xCF) && !matches!(marker, 0xC4 | 0xC8 | 0xCC) {
                    let mut sof = [0u8; 5];
                    if segment.read_exact(&mut sof).is_err() {
                        return false;
                    }
                    let height = u32::from(u16::from_be_bytes([sof[1], sof[2]]));
                    let width = u32::from(u16::from_be_bytes([sof[3], sof[4]]));
                    dims.get_or_insert((width, height));
                }
                let rest = segment.limit();
                if std::io::copy(&mut segment, &mut std::io::sink()).ok() != Some(rest) {
                    return false;
                }
            }
        }
    }
    // Entropy-coded data stuffs every 0xFF with 0x00 or an RST marker, so
    // the first FF D9 is the end. Searched for as a pair, in place: a lone
    // D9 comes every 256 bytes or so, and a copy cost as much as the search.
    let mut prev_ff = false;
    loop {
        let chunk = match r.fill_buf() {
            Ok([]) | Err(_) => return false,
            Ok(chunk) => chunk,
        };
        if (prev_ff && chunk[0] == 0xD9) || memchr::memmem::find(chunk, &[0xFF, 0xD9]).is_some() {
            return true;
        }
        prev_ff = chunk[chunk.len() - 1] == 0xFF;
        let n = chunk.len();
        r.consume(n);
    }
}

/// Walks the chunk list until `IEND`; every chunk must fit inside the file.
fn png_complete(file: &mut (impl Read + Seek), size: u64) -> bool {
    let mut pos = 8u64;
    loop {
        if file.seek(SeekFrom::Start(pos)).is_err() {
            return false;
        }
        let mut header = [0u8; 8];
        if file.read_exact(&mut header).is_err() {
            return false;
        }
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as u64;
        let end = pos + 12 + len;
        if end > size {
            return false;
        }
        if &header[4..8] == b"IEND" {
            return true;
        }
        pos = end;
    }
}

fn last_byte(file: &mut (impl Read + Seek), size: u64) -> Option<u8> {
    file.seek(SeekFrom::Start(size - 1)).ok()?;
    read_byte(file)
}

fn riff_complete(head: &[u8], size: u64) -> bool {
    head.len() >= 12 && u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as u64 + 8 <= size
}

/// Small limits for unit tests.
#[cfg(test)]
pub(crate) const TEST_LIMITS: Limits = Limits {
    max_file_bytes: 1 << 20,
    max_pixels: 10_000,
    max_files: 10,
    cost: crate::jobs::admission::CostLimits {
        max_seconds: 60,
        max_upscale: 16,
    },
    quota: crate::jobs::admission::Quotas {
        jobs_per_minute: 600,
        active_images: 10_000,
        stored_bytes: 1 << 30,
    },
    max_downloads: 1,
    max_downloads_per_tenant: 1,
    max_submissions_per_tenant: 1,
    download_pace: crate::jobs::admission::Pace {
        timeout: std::time::Duration::from_secs(60),
        min_bytes_per_sec: 0,
        grace: std::time::Duration::from_secs(10),
    },
    queued_per_tenant: 2,
    priority: crate::jobs::pacing::PriorityLimits {
        images: 32,
        image_seconds: 2.0,
    },
};

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, ImageFormat, RgbImage};
    use std::io::Write;

    const LIMITS: Limits = TEST_LIMITS;

    fn encoded(format: ImageFormat, w: u32, h: u32) -> Vec<u8> {
        let img = DynamicImage::ImageRgb8(RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([x as u8, y as u8, 7])
        }));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, format).unwrap();
        out.into_inner()
    }

    /// Every case is inspected twice, as a spooled file and from memory
    /// (an upload the spool kept), and the two must agree.
    fn check(bytes: &[u8]) -> Result<Inspected, FileProblem> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let from_file = inspect(f.path(), &LIMITS);
        assert_eq!(
            from_file,
            inspect_bytes(bytes, &LIMITS),
            "file and memory agree"
        );
        from_file
    }

    /// Tiled TIFFs with one plane per channel made the tiff crate panic
    /// ("assertion failed: buf…"); libtiff reads them, so intake accepts
    /// them and the worker's decoder reads them whole.
    #[test]
    fn planar_tiled_tiffs_are_accepted_and_decoded() {
        for name in [
            "tiled-planar-raw.tif",
            "tiled-planar-lzw.tif",
            "tiled-planar-16bit-rgb.tif",
            "tiled-planar-16bit-rgba.tif",
        ] {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/foreign")
                .join(name);
            let bytes = std::fs::read(&path).expect("fixture (tests/fixtures/foreign/generate.py)");
            let inspected = check(&bytes).expect(name);
            assert_eq!((inspected.width, inspected.height), (37, 29), "{name}");
            let img = crate::codec::decode(&bytes, u64::MAX).expect(name);
            assert_eq!((img.width(), img.height()), (37, 29), "{name}");
        }
    }

    #[test]
    fn jpeg_end_marker_is_found_across_read_boundaries() {
        // Scan data starts after FF D8 FF DA. Read in pieces of every size
        // up to the data's, the marker's FF ends one piece and its D9 starts
        // the next for one of them; cut before the D9, no size finds it.
        let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xDA];
        bytes.extend_from_slice(&[0x12, 0xFF, 0x00, 0xD9, 0x34, 0x56, 0xFF, 0xD9]);
        for capacity in 1..=bytes.len() {
            let mut whole = BufReader::with_capacity(capacity, std::io::Cursor::new(&bytes));
            assert!(jpeg_complete(&mut whole, &mut None), "pieces of {capacity}");
            let cut = &bytes[..bytes.len() - 1];
            let mut cut = BufReader::with_capacity(capacity, std::io::Cursor::new(cut));
            assert!(
                !jpeg_complete(&mut cut, &mut None),
                "pieces of {capacity}, cut"
            );
        }
        // A stuffed FF 00 and a D9 not after FF are not the end.
        let mut open = vec![0xFF, 0xD8, 0xFF, 0xDA, 0x01, 0xD9, 0xFF, 0x00, 0xD9];
        assert!(!jpeg_complete(&mut std::io::Cursor::new(&open), &mut None));
        open.extend_from_slice(&[0xFF, 0xD9]);
        assert!(jpeg_complete(&mut std::io::Cursor::new(&open), &mut None));
    }

    #[test]
    fn accepts_every_supported_format_and_reads_dimensions() {
        for (fmt, expected) in [
            (ImageFormat::Jpeg, InputFormat::Jpeg),
            (ImageFormat::Png, InputFormat::Png),
            (ImageFormat::WebP, InputFormat::Webp),
            (ImageFormat::Gif, InputFormat::Gif),
            (ImageFormat::Bmp, InputFormat::Bmp),
            (ImageFormat::Tiff, InputFormat::Tiff),
        ] {
            let got = check(&encoded(fmt, 30, 20)).unwrap_or_else(|e| panic!("{fmt:?}: {e}"));
            assert_eq!(
                (got.format, got.width, got.height),
                (expected, 30, 20),
                "{fmt:?}"
            );
        }
    }

    #[test]
    fn truncated_files_are_refused_for_every_format() {
        for fmt in [
            ImageFormat::Jpeg,
            ImageFormat::Png,
            ImageFormat::WebP,
            ImageFormat::Gif,
            ImageFormat::Bmp,
            ImageFormat::Tiff,
        ] {
            let full = encoded(fmt, 60, 40);
            let cut = &full[..full.len() * 2 / 3];
            let err = check(cut).unwrap_err();
            assert!(
                matches!(
                    err,
                    FileProblem::Truncated { .. } | FileProblem::Corrupt { .. }
                ),
                "{fmt:?}: {err:?}"
            );
        }
    }

    #[test]
    fn text_empty_and_oversized_are_refused() {
        assert_eq!(
            check(b"just some text, named photo.jpg"),
            Err(FileProblem::UnsupportedFormat)
        );
        assert_eq!(check(b""), Err(FileProblem::Empty));
        let big = vec![0u8; (LIMITS.max_file_bytes + 1) as usize];
        assert_eq!(
            check(&big),
            Err(FileProblem::TooLarge {
                limit: LIMITS.max_file_bytes
            })
        );
    }

    #[test]
    fn pixel_bomb_is_refused_from_the_header() {
        let err = check(&encoded(ImageFormat::Png, 200, 100)).unwrap_err();
        assert!(matches!(
            err,
            FileProblem::TooManyPixels {
                width: 200,
                height: 100,
                pixels: 20_000,
                ..
            }
        ));
    }

    /// A PNG whose IHDR declares `w`x`h` (valid CRC), with no pixel data.
    fn png_header_only(w: u32, h: u32) -> Vec<u8> {
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&w.to_be_bytes());
        ihdr.extend_from_slice(&h.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32fast::hash(&ihdr).to_be_bytes());
        png
    }

    #[test]
    fn enormous_declared_dimensions_are_a_pixel_limit_refusal() {
        for (w, h) in [
            (2_000_000_000, 2_000_000_000),
            (1, 100_000_000),
            (20_000, 20_000),
        ] {
            let err = check(&png_header_only(w, h)).unwrap_err();
            assert!(
                matches!(err, FileProblem::TooManyPixels { width, height, .. } if (width, height) == (w, h)),
                "{w}x{h}: {err}"
            );
        }
    }

    #[test]
    fn jpeg_with_trailing_bytes_after_eoi_is_accepted() {
        let mut jpeg = encoded(ImageFormat::Jpeg, 16, 16);
        jpeg.extend_from_slice(&[0u8; 100]);
        assert!(check(&jpeg).is_ok());
    }
}
