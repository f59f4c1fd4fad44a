//! What a PNG says outside its pixels that changes how Pillow shows them:
//! the colour type (Pillow keeps L and RGB with a `tRNS` colour as L and
//! RGB), the `eXIf` chunk, ImageMagick's "Raw profile type exif" and the XMP
//! packet (`XML:com.adobe.xmp`) in text chunks. A chunk walk over bytes
//! already in memory; compressed text is inflated up to a small cap.

/// Inflated text beyond this is ignored (a text chunk is metadata, not a
/// place for a decompression bomb).
const TEXT_CAP: usize = 4 << 20;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct PngMeta {
    pub color_type: Option<u8>,
    pub exif: Option<Vec<u8>>,
    pub raw_profile_exif: Option<Vec<u8>>,
    pub xmp: Option<Vec<u8>>,
}

pub fn read(bytes: &[u8]) -> PngMeta {
    let mut meta = PngMeta::default();
    let mut at = 8;
    while let Some(header) = bytes.get(at..at + 8) {
        let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]) as usize;
        let kind = &header[4..8];
        let Some(data) = bytes.get(at + 8..(at + 8).saturating_add(len)) else {
            break;
        };
        match kind {
            b"IHDR" => meta.color_type = data.get(9).copied(),
            b"eXIf" if meta.exif.is_none() => meta.exif = Some(data.to_vec()),
            b"tEXt" | b"zTXt" | b"iTXt" => {
                if let Some((key, text)) = text_chunk(kind, data) {
                    match key {
                        b"Raw profile type exif" => meta.raw_profile_exif = Some(text),
                        b"XML:com.adobe.xmp" => meta.xmp = Some(text),
                        _ => {}
                    }
                }
            }
            b"IEND" => break,
            _ => {}
        }
        at += 12 + len;
    }
    meta
}

/// (keyword, text) of a tEXt, zTXt or iTXt chunk, inflated if compressed.
fn text_chunk<'a>(kind: &[u8], data: &'a [u8]) -> Option<(&'a [u8], Vec<u8>)> {
    let nul = data.iter().position(|&b| b == 0)?;
    let (key, rest) = (&data[..nul], &data[nul + 1..]);
    let text = match kind {
        b"tEXt" => rest.to_vec(),
        b"zTXt" => inflate(rest.get(1..)?)?,
        _ => {
            let (&compressed, rest) = rest.split_first()?;
            let rest = rest.get(1..)?; // compression method
            let lang_end = rest.iter().position(|&b| b == 0)?;
            let rest = &rest[lang_end + 1..];
            let key_end = rest.iter().position(|&b| b == 0)?;
            let rest = &rest[key_end + 1..];
            if compressed == 1 {
                inflate(rest)?
            } else {
                rest.to_vec()
            }
        }
    };
    Some((key, text))
}

fn inflate(data: &[u8]) -> Option<Vec<u8>> {
    miniz_oxide::inflate::decompress_to_vec_zlib_with_limit(data, TEXT_CAP).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        out.extend(kind);
        out.extend(data);
        out.extend([0; 4]); // the CRC is not checked here
        out
    }

    #[test]
    fn colour_type_exif_and_text_chunks() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]));
        png.extend(chunk(b"eXIf", b"II*\0"));
        let squeezed = miniz_oxide::deflate::compress_to_vec_zlib(b"\nexif\n 6\n457869660000\n", 6);
        let mut ztxt = b"Raw profile type exif\0\0".to_vec();
        ztxt.extend(&squeezed);
        png.extend(chunk(b"zTXt", &ztxt));
        png.extend(chunk(
            b"iTXt",
            b"XML:com.adobe.xmp\0\0\0\0\0<tiff:Orientation>6<",
        ));
        png.extend(chunk(b"IEND", b""));
        let meta = read(&png);
        assert_eq!(meta.color_type, Some(2));
        assert_eq!(meta.exif.as_deref(), Some(&b"II*\0"[..]));
        assert_eq!(
            meta.raw_profile_exif.as_deref(),
            Some(&b"\nexif\n 6\n457869660000\n"[..])
        );
        assert_eq!(meta.xmp.as_deref(), Some(&b"<tiff:Orientation>6<"[..]));
    }

    #[test]
    fn a_cut_file_stops_the_walk() {
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(&chunk(b"IHDR", &[0; 13])[..10]);
        assert_eq!(read(&png), PngMeta::default());
    }
}
