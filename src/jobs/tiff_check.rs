//! TIFF intake: whether an uploaded TIFF is whole, without decoding its
//! image in this process unless it is small. A TIFF scatters its strips (or
//! tiles) through the file, so no trailing marker says it is complete.
//! Instead, the first directory's chunk table must point inside the file;
//! then a small image (up to a million pixels and 16 MiB of file) is decoded
//! whole by the worker's own decoder, and a bigger one only its first chunk
//! (which exercises the compression and layout the worker will meet) when
//! that fits 16 MiB. Memory and time stay bounded whatever the image's size.
//!
//! Must not decode the whole image: that is the worker's job, under its
//! memory budget. Runs under intake's panic guard (the decoder is
//! third-party code fed untrusted bytes).

use std::io::{Read, Seek};

use crate::codec::{self, CodecError, TiffProblem as Structure};

/// Most bytes intake lets libtiff allocate at once and decode for one
/// chunk; also the largest file it decodes whole.
const CHUNK_BUDGET: usize = 16 << 20;
/// The largest image intake decodes whole: at most 16 bytes a pixel (RGBA
/// of 32-bit floats) keeps it within the budget.
const SMALL_PIXELS: u64 = (CHUNK_BUDGET / 16) as u64;

#[derive(Debug, PartialEq, Eq)]
pub(super) enum TiffProblem {
    /// Some strip or tile lies past the end of the file.
    Truncated,
    /// The structure or the first chunk cannot be read; why.
    Corrupt(String),
    /// The decoder failed on it in a way that says nothing about the file
    /// (it panicked); intake logs nothing more of it.
    Unreadable,
}

/// Checks the TIFF read from `reader`, `size_bytes` long; its stored width
/// and height.
pub(super) fn check<R: Read + Seek>(
    reader: &mut R,
    size_bytes: u64,
) -> Result<(u32, u32), TiffProblem> {
    let shape = codec::check_tiff(&mut *reader, size_bytes, CHUNK_BUDGET).map_err(|p| match p {
        Structure::Truncated => TiffProblem::Truncated,
        Structure::Corrupt(why) => TiffProblem::Corrupt(why),
    })?;
    let dims = (shape.width, shape.height);
    if u64::from(shape.width) * u64::from(shape.height) > SMALL_PIXELS
        || size_bytes > CHUNK_BUDGET as u64
    {
        return Ok(dims);
    }
    // Small: decoded whole by the worker's own decoder (bounded by the
    // budget), so a file it cannot read is refused now, not after upload.
    let mut bytes = Vec::new();
    reader
        .rewind()
        .and_then(|()| reader.read_to_end(&mut bytes))
        .map_err(|e| TiffProblem::Corrupt(e.to_string()))?;
    match codec::decode(&bytes, SMALL_PIXELS) {
        Ok(_) => Ok(dims),
        Err(CodecError::Unreadable { .. }) => Err(TiffProblem::Unreadable),
        Err(e) => Err(TiffProblem::Corrupt(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use image::{DynamicImage, ImageFormat, RgbImage};

    use super::*;

    fn tiff(width: u32, height: u32) -> Vec<u8> {
        let img = RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 251) as u8, (y % 241) as u8, ((x + y) % 239) as u8])
        });
        let mut out = Cursor::new(Vec::new());
        DynamicImage::ImageRgb8(img)
            .write_to(&mut out, ImageFormat::Tiff)
            .expect("encode TIFF");
        out.into_inner()
    }

    #[test]
    fn a_whole_tiff_passes_and_a_cut_one_is_truncated() {
        let whole = tiff(64, 48);
        assert_eq!(
            check(&mut Cursor::new(&whole), whole.len() as u64),
            Ok((64, 48))
        );
        // Only the size says where the file ends: the table now points
        // past it, wherever the directory is.
        let half = whole.len() as u64 / 2;
        assert_eq!(
            check(&mut Cursor::new(&whole), half),
            Err(TiffProblem::Truncated)
        );
    }

    #[test]
    fn a_damaged_directory_is_corrupt() {
        let mut bad = tiff(16, 16);
        let len = bad.len();
        bad[4..8].copy_from_slice(&(len as u32 + 10).to_le_bytes());
        assert!(matches!(
            check(&mut Cursor::new(&bad), len as u64),
            Err(TiffProblem::Corrupt(_))
        ));
    }

    #[test]
    fn a_big_tiff_is_checked_without_decoding_it() {
        // 3000×2000 RGB: 18 MB decoded, over the budget. The image crate
        // writes strips of a few rows, so the first one is decoded alone.
        let big = tiff(3000, 2000);
        let started = std::time::Instant::now();
        assert_eq!(
            check(&mut Cursor::new(&big), big.len() as u64),
            Ok((3000, 2000))
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
