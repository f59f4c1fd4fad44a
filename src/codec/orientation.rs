//! Where Pillow's `ImageOps.exif_transpose` finds an image's orientation,
//! in its order: the EXIF block (a JPEG's first `Exif` APP1, a PNG's `eXIf`
//! chunk or else ImageMagick's "Raw profile type exif" text chunk, a WebP's
//! `EXIF` chunk); only when that has no Orientation tag, the first
//! `tiff:Orientation` in the XMP packet, as an attribute or an element.
//! Parsing only, no pixels.

use image::metadata::Orientation;

/// The orientation to apply, given the EXIF block and XMP packet found.
pub fn resolve(exif: Option<&[u8]>, xmp: Option<&[u8]>) -> Orientation {
    let value = exif
        .and_then(super::exif::orientation_value)
        .or_else(|| xmp.and_then(xmp_orientation));
    value
        .and_then(|v| u8::try_from(v).ok())
        .and_then(Orientation::from_exif)
        .unwrap_or(Orientation::NoTransforms)
}

/// Pillow's `tiff:Orientation(="|>)([0-9])`: the first occurrence followed
/// by `="` or `>` and a digit.
pub fn xmp_orientation(xmp: &[u8]) -> Option<u32> {
    const NAME: &[u8] = b"tiff:Orientation";
    let mut rest = xmp;
    while let Some(at) = find(rest, NAME) {
        let after = &rest[at + NAME.len()..];
        let digit = match after {
            [b'=', b'"', d, ..] | [b'>', d, ..] if d.is_ascii_digit() => Some(d),
            _ => None,
        };
        if let Some(d) = digit {
            return Some(u32::from(d - b'0'));
        }
        rest = &rest[at + 1..];
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// ImageMagick's "Raw profile type exif" text: a header of three lines
/// (empty, "exif", the length), then the block in hex over many lines.
/// Pillow joins the lines from the fourth on and reads them as hex.
pub fn raw_profile_exif(text: &[u8]) -> Option<Vec<u8>> {
    let body: Vec<u8> = text
        .split(|&b| b == b'\n')
        .skip(3)
        .flatten()
        .copied()
        .filter(|b| !b.is_ascii_whitespace())
        .collect();
    if !body.len().is_multiple_of(2) {
        return None;
    }
    body.chunks(2)
        .map(|pair| {
            let hex = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(hex, 16).ok()
        })
        .collect()
}

/// A WebP's chunk of this kind: `EXIF` (Pillow's `info["exif"]`) or
/// `XMP ` (`info["xmp"]`).
pub fn webp_chunk<'a>(bytes: &'a [u8], fourcc: &[u8; 4]) -> Option<&'a [u8]> {
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let kind = &bytes[at..at + 4];
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?) as usize;
        let data = bytes.get(at + 8..at + 8 + len)?;
        if kind == fourcc {
            return Some(data);
        }
        at += 8 + len + (len & 1);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xmp_as_attribute_or_element() {
        assert_eq!(xmp_orientation(br#"<x tiff:Orientation="6"/>"#), Some(6));
        assert_eq!(
            xmp_orientation(b"<tiff:Orientation>3</tiff:Orientation>"),
            Some(3)
        );
        assert_eq!(
            xmp_orientation(br#"tiff:Orientation='6' tiff:Orientation="8""#),
            Some(8)
        );
        assert_eq!(xmp_orientation(b"tiff:Orientation=\"x\""), None);
        assert_eq!(xmp_orientation(b""), None);
    }

    #[test]
    fn exif_first_then_xmp() {
        let xmp: &[u8] = br#"tiff:Orientation="3""#;
        assert_eq!(resolve(None, Some(xmp)), Orientation::Rotate180);
        // An EXIF block saying 1 wins over the XMP.
        let exif = b"II\x2a\0\x08\0\0\0\x01\0\x12\x01\x03\0\x01\0\0\0\x01\0\0\0\0\0\0\0";
        assert_eq!(resolve(Some(exif), Some(xmp)), Orientation::NoTransforms);
        // An EXIF block without the tag does not.
        let empty = b"II\x2a\0\x08\0\0\0\0\0\0\0\0\0";
        assert_eq!(resolve(Some(empty), Some(xmp)), Orientation::Rotate180);
    }

    #[test]
    fn raw_profile_is_hex_after_three_lines() {
        let text = b"\nexif\n       6\n457869660000\n";
        assert_eq!(raw_profile_exif(text), Some(b"Exif\0\0".to_vec()));
        assert_eq!(raw_profile_exif(b"\nexif\n 1\nzz\n"), None);
    }
}
