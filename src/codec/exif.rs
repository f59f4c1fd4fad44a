//! Reads the EXIF Orientation tag the way Pillow's `getexif()` does: any
//! integer type (SHORT per the spec, but LONG and BYTE occur in the wild), and
//! with or without the `Exif\0\0` prefix some writers leave in PNG/WebP chunks.
//! Parsing only; applying the orientation is the decoder's business.

#[cfg(test)]
use image::metadata::Orientation;

const ORIENTATION_TAG: u16 = 0x0112;

/// The orientation in IFD0 of an EXIF block, if it holds one valid value (1–8).
#[cfg(test)]
pub fn orientation(exif: &[u8]) -> Option<Orientation> {
    Orientation::from_exif(u8::try_from(orientation_value(exif)?).ok()?)
}

/// The Orientation tag's value in IFD0, valid or not: Pillow looks no
/// further (at XMP) once the tag is there.
pub fn orientation_value(exif: &[u8]) -> Option<u32> {
    let tiff = exif.strip_prefix(b"Exif\0\0").unwrap_or(exif);
    let big_endian = match tiff.get(..4)? {
        [b'I', b'I', 42, 0] => false,
        [b'M', b'M', 0, 42] => true,
        _ => return None,
    };
    let u16_at = |at: usize| -> Option<u16> {
        let b: [u8; 2] = tiff.get(at..at + 2)?.try_into().ok()?;
        Some(if big_endian {
            u16::from_be_bytes(b)
        } else {
            u16::from_le_bytes(b)
        })
    };
    let u32_at = |at: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(at..at + 4)?.try_into().ok()?;
        Some(if big_endian {
            u32::from_be_bytes(b)
        } else {
            u32::from_le_bytes(b)
        })
    };
    let ifd = u32_at(4)? as usize;
    let entries = u16_at(ifd)? as usize;
    (0..entries).find_map(|i| {
        let entry = ifd.checked_add(2 + 12 * i)?;
        // Pillow drops an entry cut short by the end of the block, even when
        // the bytes of a SHORT value happen to be there.
        tiff.get(entry..entry.checked_add(12)?)?;
        if u16_at(entry)? != ORIENTATION_TAG || u32_at(entry + 4)? != 1 {
            return None;
        }
        // A single value sits left-justified in the entry's 4-byte value field.
        match u16_at(entry + 2)? {
            1 | 6 => Some(u32::from(*tiff.get(entry + 8)?)), // BYTE, SBYTE
            3 | 8 => Some(u32::from(u16_at(entry + 8)?)),    // SHORT, SSHORT
            4 | 9 => u32_at(entry + 8),                      // LONG, SLONG
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An EXIF block with one IFD0 entry: (tag, type, count, value bytes).
    fn exif(big_endian: bool, tag: u16, kind: u16, count: u32, value: [u8; 4]) -> Vec<u8> {
        let u16b = |v: u16| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let u32b = |v: u32| {
            if big_endian {
                v.to_be_bytes()
            } else {
                v.to_le_bytes()
            }
        };
        let mut out = if big_endian {
            b"MM\0\x2a".to_vec()
        } else {
            b"II\x2a\0".to_vec()
        };
        out.extend(u32b(8));
        out.extend(u16b(1));
        out.extend(u16b(tag));
        out.extend(u16b(kind));
        out.extend(u32b(count));
        out.extend(value);
        out.extend(u32b(0));
        out
    }

    #[test]
    fn short_long_and_byte_values_in_both_byte_orders() {
        assert_eq!(
            orientation(&exif(false, 0x112, 3, 1, [6, 0, 0, 0])),
            Some(Orientation::Rotate90)
        );
        assert_eq!(
            orientation(&exif(true, 0x112, 3, 1, [0, 3, 0, 0])),
            Some(Orientation::Rotate180)
        );
        assert_eq!(
            orientation(&exif(false, 0x112, 4, 1, [8, 0, 0, 0])),
            Some(Orientation::Rotate270)
        );
        assert_eq!(
            orientation(&exif(true, 0x112, 4, 1, [0, 0, 0, 2])),
            Some(Orientation::FlipHorizontal)
        );
        assert_eq!(
            orientation(&exif(false, 0x112, 1, 1, [5, 0, 0, 0])),
            Some(Orientation::Rotate90FlipH)
        );
    }

    #[test]
    fn the_exif_prefix_is_tolerated() {
        let mut block = b"Exif\0\0".to_vec();
        block.extend(exif(false, 0x112, 3, 1, [6, 0, 0, 0]));
        assert_eq!(orientation(&block), Some(Orientation::Rotate90));
    }

    #[test]
    fn invalid_or_absent_values_mean_no_orientation() {
        assert_eq!(orientation(&exif(false, 0x112, 3, 1, [9, 0, 0, 0])), None);
        assert_eq!(orientation(&exif(false, 0x112, 3, 2, [6, 0, 6, 0])), None);
        assert_eq!(orientation(&exif(false, 0x110, 3, 1, [6, 0, 0, 0])), None);
        assert_eq!(
            orientation(&exif(false, 0x112, 2, 1, [b'6', 0, 0, 0])),
            None
        );
        assert_eq!(orientation(b"II\x2a\0\xff\xff\xff\xff"), None);
        let mut cut = exif(false, 0x112, 3, 1, [6, 0, 0, 0]);
        cut.truncate(8 + 2 + 10);
        assert_eq!(orientation(&cut), None);
        assert_eq!(orientation(b""), None);
    }
}
