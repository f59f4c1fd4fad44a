//! TIFF read as Pillow 13 reads it: libtiff decodes (every compression it
//! has: LZW, Deflate, JPEG and old-style JPEG, PackBits, CCITT fax, LZMA,
//! ZSTD, WebP; strips or tiles; chunky or planar; classic or BigTIFF), and
//! the samples become pixels by Pillow's `TiffImagePlugin` table of
//! (photometric, sample format, bits, extra samples) → mode, then imgpipe's
//! mode rules (README, Modes). A layout Pillow refuses is refused here too.
//! Orientation is returned, not applied (the caller does that for every
//! format alike).

use image::{DynamicImage, RgbaImage};

use super::libtiff::{self as lt, Source, Tiff, TiffError};

/// The tags that decide how samples become pixels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub width: u32,
    pub height: u32,
    pub bits: u16,
    /// Samples per pixel, extra samples included.
    pub samples: u16,
    pub photometric: u16,
    pub compression: u16,
    pub planar: bool,
    pub sample_format: u16,
    pub extra: Vec<u16>,
    pub orientation: u16,
}

/// Pillow's modes for a TIFF layout, reduced to what imgpipe makes of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// 1, 2, 4 or 8-bit grey (min-is-white inverted): Pillow's 1 and L.
    Grey { invert: bool },
    /// 12 or 16-bit unsigned grey: Pillow's I;16; imgpipe keeps the high byte.
    Grey16,
    /// Signed 16 or 32-bit, or unsigned 32-bit: Pillow's I, clipped to L.
    Int,
    /// 32-bit float: Pillow's F, clipped to L.
    Float,
    /// Grey plus one extra sample: ignored (LX), premultiplied (La) or alpha (LA).
    GreyExtra(Extra),
    /// RGB, optionally with an alpha; further extra samples are dropped.
    Rgb(Extra),
    /// Palette, optionally with an ignored (PX) or alpha (PA) second sample.
    Palette(Extra),
    /// CMYK (extra samples dropped), converted with Pillow's `cmyk2rgb`.
    Cmyk,
    /// YCbCr (and old-style JPEG): libjpeg's or libtiff's RGB, as Pillow.
    YCbCr,
    /// 8-bit CIELab: Pillow's LAB, converted to RGB through LittleCMS.
    Lab,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Extra {
    None,
    Ignored,
    Premultiplied,
    Alpha,
}

const OJPEG: u16 = 6;
const JPEG: u16 = 7;

impl Layout {
    pub fn read(tiff: &mut Tiff) -> Result<Layout, TiffError> {
        let width = tiff.u32_defaulted(lt::IMAGEWIDTH).unwrap_or(0);
        let height = tiff.u32_defaulted(lt::IMAGELENGTH).unwrap_or(0);
        if width == 0 || height == 0 {
            return Err(TiffError("the image has no width or height".into()));
        }
        let compression = tiff.u16_defaulted(lt::COMPRESSION).unwrap_or(1);
        // Pillow: old-style JPEG images "most certainly are YCbCr".
        let photometric = if compression == OJPEG {
            6
        } else {
            tiff.u16_field(lt::PHOTOMETRIC).unwrap_or(0)
        };
        Ok(Layout {
            width,
            height,
            bits: tiff.u16_defaulted(lt::BITSPERSAMPLE).unwrap_or(1),
            samples: tiff.u16_defaulted(lt::SAMPLESPERPIXEL).unwrap_or(1),
            photometric,
            compression,
            planar: tiff.u16_defaulted(lt::PLANARCONFIG) == Some(2),
            sample_format: tiff.u16_defaulted(lt::SAMPLEFORMAT).unwrap_or(1),
            extra: stored_extra_samples(tiff),
            orientation: tiff.u16_field(lt::ORIENTATION).unwrap_or(1),
        })
    }

    /// Samples per pixel that carry data: Pillow drops unspecified extra
    /// samples stored as planes of their own.
    fn used_samples(&self) -> (u16, &[u16]) {
        if self.planar && !self.extra.is_empty() && self.extra.iter().all(|&e| e == 0) {
            let n = self.samples.saturating_sub(self.extra.len() as u16);
            (n, &[])
        } else {
            (self.samples, &self.extra)
        }
    }

    /// Pillow's OPEN_INFO table, by meaning rather than by row.
    pub fn kind(&self) -> Result<Kind, String> {
        let (samples, extra) = self.used_samples();
        let (bits, format) = (self.bits, self.sample_format);
        // The extra samples must be listed, one per sample beyond `base`;
        // the first decides, the rest must be unspecified (Pillow's rows).
        let with_extra = |base: u16| -> Option<Extra> {
            if samples < base || extra.len() != usize::from(samples - base) {
                return None;
            }
            match extra {
                [] => Some(Extra::None),
                [first, rest @ ..] if rest.iter().all(|&e| e == 0) => match first {
                    0 => Some(Extra::Ignored),
                    1 => Some(Extra::Premultiplied),
                    2 | 999 => Some(Extra::Alpha),
                    _ => None,
                },
                _ => None,
            }
        };
        let rgb = |max_samples: u16| -> Option<Kind> {
            if samples == 4 && extra.is_empty() {
                // Pillow: RGBA "missing ExtraSamples".
                Some(Kind::Rgb(Extra::Alpha))
            } else if samples <= max_samples {
                with_extra(3).map(Kind::Rgb)
            } else {
                None
            }
        };
        let kind = match (self.photometric, format, bits, samples) {
            (6, _, _, _) => Some(Kind::YCbCr),
            (0 | 1, 1, 1 | 2 | 4 | 8, 1) => Some(Kind::Grey {
                invert: self.photometric == 0,
            }),
            (1, 2, 8, 1) => Some(Kind::Grey { invert: false }),
            (1, 1, 12, 1) | (0 | 1, 1, 16, 1) => Some(Kind::Grey16),
            (1, 2, 16 | 32, 1) | (1, 1, 32, 1) => Some(Kind::Int),
            (0 | 1, 3, 32, 1) => Some(Kind::Float),
            (1, 1, 8, 2) => with_extra(1).map(Kind::GreyExtra),
            (2, 1, 8, 3..=6) => rgb(6),
            (2, 1, 16, 3 | 4) => rgb(4),
            (3, 1, 1 | 2 | 4 | 8, 1) => Some(Kind::Palette(Extra::None)),
            (3, 1, 8, 2) => match extra {
                [0] => Some(Kind::Palette(Extra::Ignored)),
                [2] => Some(Kind::Palette(Extra::Alpha)),
                _ => None,
            },
            (5, 1, 8, 4..=6) if extra.iter().all(|&e| e == 0) => Some(Kind::Cmyk),
            (5, 1, 16, 4) => Some(Kind::Cmyk),
            (8, 1, 8, 3) => Some(Kind::Lab),
            _ => None,
        };
        kind.ok_or_else(|| {
            format!(
                "unsupported TIFF layout: photometric interpretation {}, {} sample(s) of {} bits, sample format {}",
                self.photometric,
                self.samples,
                bits,
                format,
            )
        })
    }
}

/// ExtraSamples as the file has it: libtiff invents unspecified extra
/// samples when SamplesPerPixel exceeds the colour channels and the tag is
/// missing, where Pillow sees none (and reads RGB + 1 as RGBA).
fn stored_extra_samples(tiff: &mut Tiff) -> Vec<u16> {
    let extra = tiff.extra_samples();
    if !extra.is_empty() && tiff.ifd0_has_tag(lt::EXTRASAMPLES as u16) == Some(false) {
        return Vec::new();
    }
    extra
}

/// Decodes the first image of a TIFF into one of imgpipe's four 8-bit
/// layouts; returns it with its orientation tag (1 when absent).
pub fn decode(
    source: impl Source,
    size: u64,
    max_pixels: u64,
) -> Result<(DynamicImage, u16), DecodeError> {
    let mut tiff = Tiff::open(source, size, alloc_cap(max_pixels)).map_err(DecodeError::Tiff)?;
    let layout = Layout::read(&mut tiff).map_err(DecodeError::Tiff)?;
    let pixels = u64::from(layout.width) * u64::from(layout.height);
    if pixels > max_pixels {
        return Err(DecodeError::TooManyPixels(layout.width, layout.height));
    }
    let kind = layout.kind().map_err(DecodeError::Unsupported)?;
    // Pillow's TiffDecode.c: YCbCr goes through libtiff's RGBA interface,
    // except JPEG in one plane, which libjpeg converts to RGB.
    let img = if kind == Kind::YCbCr && (layout.compression != JPEG || layout.planar) {
        let rgba = tiff
            .read_rgba(layout.width, layout.height)
            .map_err(DecodeError::Tiff)?;
        let mut img = RgbaImage::from_raw(layout.width, layout.height, rgba)
            .ok_or(DecodeError::Tiff(TiffError("short raster".into())))?;
        unflip(&mut img, layout.orientation);
        DynamicImage::ImageRgb8(DynamicImage::ImageRgba8(img).to_rgb8())
    } else {
        let mut layout = layout;
        if kind == Kind::YCbCr {
            if !tiff.jpeg_as_rgb() || layout.samples != 3 {
                return Err(DecodeError::Unsupported(
                    "unsupported TIFF layout: YCbCr JPEG".into(),
                ));
            }
            layout.photometric = 2;
        }
        let planes = read_planes(&mut tiff, &layout).map_err(DecodeError::Tiff)?;
        let kind = if kind == Kind::YCbCr {
            Kind::Rgb(Extra::None)
        } else {
            kind
        };
        let colormap = match kind {
            Kind::Palette(_) => Some(tiff.colormap(layout.bits).ok_or_else(|| {
                DecodeError::Tiff(TiffError("a palette image without a colour map".into()))
            })?),
            _ => None,
        };
        super::tiff_pixels::convert(&layout, kind, &planes, colormap.as_ref())
            .map_err(|why| DecodeError::Unsupported(why.into()))?
    };
    Ok((img, layout_orientation(&tiff)))
}

/// What intake learns from a TIFF's structure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Structure {
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, PartialEq, Eq)]
pub enum StructureProblem {
    /// Some strip or tile lies past the end of the file.
    Truncated,
    /// The directory, the layout or the first chunk cannot be read; why.
    Corrupt(String),
}

/// Reads the first directory (no allocation over `budget`), checks that
/// Pillow's table has a mode for its layout and that every strip or tile
/// lies inside the file, and decodes the first chunk when its buffer fits
/// `budget` (which exercises the compression the worker will meet).
pub fn check_structure(
    source: impl Source,
    size: u64,
    budget: usize,
) -> Result<Structure, StructureProblem> {
    let corrupt = |e: TiffError| StructureProblem::Corrupt(e.0);
    let mut tiff = Tiff::open(source, size, budget as u64).map_err(corrupt)?;
    let layout = Layout::read(&mut tiff).map_err(corrupt)?;
    let kind = layout.kind().map_err(StructureProblem::Corrupt)?;
    let chunks = tiff.chunk_count();
    if chunks == 0 {
        return Err(StructureProblem::Corrupt(
            "it has no strips or tiles".into(),
        ));
    }
    for i in 0..chunks {
        let (offset, count) = tiff.chunk_extent(i);
        if offset.checked_add(count).is_none_or(|end| end > size) {
            return Err(StructureProblem::Truncated);
        }
    }
    if kind == Kind::YCbCr && layout.compression == JPEG && !layout.planar {
        tiff.jpeg_as_rgb();
    }
    let per_plane = if layout.planar {
        1
    } else {
        u64::from(layout.samples)
    };
    let (cw, ch) = if tiff.is_tiled() {
        (
            tiff.u32_defaulted(lt::TILEWIDTH).unwrap_or(0),
            tiff.u32_defaulted(lt::TILELENGTH).unwrap_or(0),
        )
    } else {
        let rows = tiff
            .u32_defaulted(lt::ROWSPERSTRIP)
            .unwrap_or(layout.height);
        (layout.width, rows.clamp(1, layout.height))
    };
    let chunk_bytes = row_bytes(cw, per_plane, layout.bits).saturating_mul(ch as usize);
    if chunk_bytes > 0 && chunk_bytes <= budget {
        let mut buf = vec![0u8; chunk_bytes];
        tiff.read_chunk(0, &mut buf).map_err(corrupt)?;
    }
    Ok(Structure {
        width: layout.width,
        height: layout.height,
    })
}

fn layout_orientation(tiff: &Tiff) -> u16 {
    tiff.u16_field(lt::ORIENTATION).unwrap_or(1)
}

/// What went wrong, for the caller to map onto its own errors.
#[derive(Debug)]
pub enum DecodeError {
    Tiff(TiffError),
    Unsupported(String),
    TooManyPixels(u32, u32),
}

/// The largest single allocation libtiff may make for an image within the
/// pixel limit (a strip or tile of up to 16 bytes per pixel, or the RGBA
/// raster) plus slack for its tables.
pub fn alloc_cap(max_pixels: u64) -> u64 {
    max_pixels.saturating_mul(16).saturating_add(64 << 20)
}

/// Pillow reads YCbCr through libtiff's RGBA interface with the orientation
/// forced to top-left (orientation is exif_transpose's business); libtiff's
/// `TIFFReadRGBAImageOriented` flips by the tag instead, so undo its flip.
fn unflip(img: &mut RgbaImage, orientation: u16) {
    let (horizontal, vertical) = match orientation {
        2 | 6 => (true, false),
        3 | 7 => (true, true),
        4 | 8 => (false, true),
        _ => (false, false),
    };
    if horizontal {
        image::imageops::flip_horizontal_in_place(img);
    }
    if vertical {
        image::imageops::flip_vertical_in_place(img);
    }
}

/// Every sample of the image, decoded, one buffer per plane (one in all
/// for chunky files): rows of `ceil(width × samples-in-plane × bits / 8)`
/// bytes, 16 and 32-bit samples in native byte order (libtiff swaps them).
pub fn read_planes(tiff: &mut Tiff, layout: &Layout) -> Result<Vec<Vec<u8>>, TiffError> {
    let (used, _) = layout.used_samples();
    let (planes, per_plane) = if layout.planar {
        (used as usize, 1u64)
    } else {
        (1, u64::from(layout.samples))
    };
    let stride = row_bytes(layout.width, per_plane, layout.bits);
    let h = layout.height as usize;
    let total = stride
        .checked_mul(h)
        .ok_or_else(|| TiffError("image too large".into()))?;
    let mut out = vec![vec![0u8; total]; planes];
    if tiff.is_tiled() {
        let tw = tiff.u32_defaulted(lt::TILEWIDTH).unwrap_or(0);
        let th = tiff.u32_defaulted(lt::TILELENGTH).unwrap_or(0);
        if tw == 0 || th == 0 {
            return Err(TiffError("a tiled image without a tile size".into()));
        }
        let tile_row = row_bytes(tw, per_plane, layout.bits);
        let mut buf = vec![0u8; tile_row * th as usize];
        for (p, plane) in out.iter_mut().enumerate() {
            for ty in (0..layout.height).step_by(th as usize) {
                for tx in (0..layout.width).step_by(tw as usize) {
                    let index = tiff.tile_index(tx, ty, p as u16);
                    tiff.read_chunk(index, &mut buf)?;
                    let x_off = row_bytes(tx, per_plane, layout.bits);
                    let len = tile_row.min(stride.saturating_sub(x_off));
                    let rows = (th as usize).min(h - ty as usize);
                    for r in 0..rows {
                        let dst = (ty as usize + r) * stride + x_off;
                        plane[dst..dst + len]
                            .copy_from_slice(&buf[r * tile_row..r * tile_row + len]);
                    }
                }
            }
        }
    } else {
        let rps = tiff
            .u32_defaulted(lt::ROWSPERSTRIP)
            .unwrap_or(layout.height)
            .clamp(1, layout.height) as usize;
        let strips_per_plane = h.div_ceil(rps);
        let mut buf = vec![0u8; rps * stride];
        for (p, plane) in out.iter_mut().enumerate() {
            for s in 0..strips_per_plane {
                let index = (p * strips_per_plane + s) as u32;
                let rows = rps.min(h - s * rps);
                let n = tiff.read_chunk(index, &mut buf[..rows * stride])?;
                let start = s * rps * stride;
                plane[start..start + n].copy_from_slice(&buf[..n]);
            }
        }
    }
    Ok(out)
}

pub fn row_bytes(width: u32, samples: u64, bits: u16) -> usize {
    (u64::from(width) * samples * u64::from(bits)).div_ceil(8) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(photometric: u16, bits: u16, samples: u16, extra: &[u16], format: u16) -> Layout {
        Layout {
            width: 1,
            height: 1,
            bits,
            samples,
            photometric,
            compression: 1,
            planar: false,
            sample_format: format,
            extra: extra.to_vec(),
            orientation: 1,
        }
    }

    #[test]
    fn pillows_table_decides_the_mode() {
        let k = |p, b, s, e: &[u16], f| layout(p, b, s, e, f).kind();
        assert_eq!(k(0, 1, 1, &[], 1), Ok(Kind::Grey { invert: true }));
        assert_eq!(k(1, 4, 1, &[], 1), Ok(Kind::Grey { invert: false }));
        assert_eq!(k(1, 16, 1, &[], 1), Ok(Kind::Grey16));
        assert_eq!(k(1, 16, 1, &[], 2), Ok(Kind::Int));
        assert_eq!(k(1, 32, 1, &[], 3), Ok(Kind::Float));
        assert_eq!(
            k(1, 8, 2, &[1], 1),
            Ok(Kind::GreyExtra(Extra::Premultiplied))
        );
        assert_eq!(k(2, 8, 3, &[], 1), Ok(Kind::Rgb(Extra::None)));
        assert_eq!(k(2, 8, 4, &[], 1), Ok(Kind::Rgb(Extra::Alpha)));
        assert_eq!(k(2, 8, 4, &[0], 1), Ok(Kind::Rgb(Extra::Ignored)));
        assert_eq!(k(2, 8, 5, &[1, 0], 1), Ok(Kind::Rgb(Extra::Premultiplied)));
        assert_eq!(k(2, 16, 4, &[1], 1), Ok(Kind::Rgb(Extra::Premultiplied)));
        assert_eq!(k(3, 4, 1, &[], 1), Ok(Kind::Palette(Extra::None)));
        assert_eq!(k(3, 8, 2, &[2], 1), Ok(Kind::Palette(Extra::Alpha)));
        assert_eq!(k(5, 8, 4, &[], 1), Ok(Kind::Cmyk));
        assert_eq!(k(6, 8, 3, &[], 1), Ok(Kind::YCbCr));
        assert!(k(2, 16, 5, &[1, 0], 1).is_err());
        assert!(k(3, 16, 1, &[], 1).is_err());
        assert_eq!(k(8, 8, 3, &[], 1), Ok(Kind::Lab));
        assert!(k(8, 16, 3, &[], 1).is_err());
        assert!(k(2, 12, 3, &[], 1).is_err());
    }

    #[test]
    fn planar_unspecified_extras_are_dropped() {
        let mut l = layout(2, 8, 4, &[0], 1);
        l.planar = true;
        assert_eq!(l.kind(), Ok(Kind::Rgb(Extra::None)));
    }
}
