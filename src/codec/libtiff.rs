//! A small, safe wrapper over the system libtiff (the library Pillow reads
//! TIFF with): open a file from any `Read + Seek` source with a per-file
//! memory cap and its error messages captured (never printed), read tags,
//! and read encoded strips, tiles or libtiff's RGBA rendering. It knows
//! nothing of modes or Pillow's rules (that is `tiff`), and every `unsafe`
//! block of the TIFF path lives here.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, c_void, CStr};
use std::io::{Read, Seek, SeekFrom};

#[repr(C)]
struct RawTiff {
    _private: [u8; 0],
}
#[repr(C)]
struct RawOptions {
    _private: [u8; 0],
}

type Handle = *mut c_void;
type ErrorHandler = unsafe extern "C" fn(
    *mut RawTiff,
    *mut c_void,
    *const c_char,
    *const c_char,
    *mut c_void,
) -> c_int;

#[link(name = "tiff")]
unsafe extern "C" {
    fn TIFFOpenOptionsAlloc() -> *mut RawOptions;
    fn TIFFOpenOptionsFree(opts: *mut RawOptions);
    fn TIFFOpenOptionsSetMaxSingleMemAlloc(opts: *mut RawOptions, max: isize);
    fn TIFFOpenOptionsSetErrorHandlerExtR(
        opts: *mut RawOptions,
        handler: ErrorHandler,
        data: *mut c_void,
    );
    fn TIFFOpenOptionsSetWarningHandlerExtR(
        opts: *mut RawOptions,
        handler: ErrorHandler,
        data: *mut c_void,
    );
    fn TIFFClientOpenExt(
        name: *const c_char,
        mode: *const c_char,
        handle: Handle,
        read: unsafe extern "C" fn(Handle, *mut c_void, isize) -> isize,
        write: unsafe extern "C" fn(Handle, *mut c_void, isize) -> isize,
        seek: unsafe extern "C" fn(Handle, u64, c_int) -> u64,
        close: unsafe extern "C" fn(Handle) -> c_int,
        size: unsafe extern "C" fn(Handle) -> u64,
        map: unsafe extern "C" fn(Handle, *mut *mut c_void, *mut u64) -> c_int,
        unmap: unsafe extern "C" fn(Handle, *mut c_void, u64),
        opts: *mut RawOptions,
    ) -> *mut RawTiff;
    fn TIFFClose(tif: *mut RawTiff);
    fn TIFFGetField(tif: *mut RawTiff, tag: u32, ...) -> c_int;
    fn TIFFGetFieldDefaulted(tif: *mut RawTiff, tag: u32, ...) -> c_int;
    fn TIFFSetField(tif: *mut RawTiff, tag: u32, ...) -> c_int;
    fn TIFFIsTiled(tif: *mut RawTiff) -> c_int;
    fn TIFFNumberOfStrips(tif: *mut RawTiff) -> u32;
    fn TIFFNumberOfTiles(tif: *mut RawTiff) -> u32;
    fn TIFFComputeTile(tif: *mut RawTiff, x: u32, y: u32, z: u32, sample: u16) -> u32;
    fn TIFFReadEncodedStrip(tif: *mut RawTiff, strip: u32, buf: *mut c_void, size: isize) -> isize;
    fn TIFFReadEncodedTile(tif: *mut RawTiff, tile: u32, buf: *mut c_void, size: isize) -> isize;
    fn TIFFGetStrileOffset(tif: *mut RawTiff, strile: u32) -> u64;
    fn TIFFGetStrileByteCount(tif: *mut RawTiff, strile: u32) -> u64;
    fn TIFFReadRGBAImageOriented(
        tif: *mut RawTiff,
        width: u32,
        height: u32,
        raster: *mut u32,
        orientation: c_int,
        stop_on_error: c_int,
    ) -> c_int;
}

unsafe extern "C" {
    fn vsnprintf(buf: *mut c_char, size: usize, fmt: *const c_char, args: *mut c_void) -> c_int;
}

pub const IMAGEWIDTH: u32 = 256;
pub const IMAGELENGTH: u32 = 257;
pub const BITSPERSAMPLE: u32 = 258;
pub const COMPRESSION: u32 = 259;
pub const PHOTOMETRIC: u32 = 262;
pub const ORIENTATION: u32 = 274;
pub const SAMPLESPERPIXEL: u32 = 277;
pub const ROWSPERSTRIP: u32 = 278;
pub const PLANARCONFIG: u32 = 284;
pub const TILEWIDTH: u32 = 322;
pub const TILELENGTH: u32 = 323;
pub const COLORMAP: u32 = 320;
pub const EXTRASAMPLES: u32 = 338;
pub const SAMPLEFORMAT: u32 = 339;
pub const JPEGCOLORMODE: u32 = 65538;
pub const JPEGCOLORMODE_RGB: c_int = 1;
const ORIENTATION_TOPLEFT: c_int = 1;

/// What the TIFF reads from: a whole file in memory or an open file.
pub trait Source: Read + Seek {}
impl<T: Read + Seek> Source for T {}

struct Client<'a> {
    source: Box<dyn Source + 'a>,
    size: u64,
    /// libtiff's messages for this file, first error first.
    errors: RefCell<Vec<String>>,
}

/// An open TIFF. Dropping it closes it.
pub struct Tiff<'a> {
    raw: *mut RawTiff,
    client: Box<Client<'a>>,
}

/// libtiff refused the file or a part of it; the text is libtiff's own
/// message (it names tags and values, never a path: files are opened by
/// handle under a fixed name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TiffError(pub String);

impl std::fmt::Display for TiffError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'a> Tiff<'a> {
    /// Opens the first directory of a TIFF (classic or BigTIFF). No single
    /// allocation inside libtiff may exceed `max_alloc` bytes.
    pub fn open(
        source: impl Source + 'a,
        size: u64,
        max_alloc: u64,
    ) -> Result<Tiff<'a>, TiffError> {
        let client = Box::new(Client {
            source: Box::new(source),
            size,
            errors: RefCell::new(Vec::new()),
        });
        let data = &*client as *const Client as *mut c_void;
        // SAFETY: the options live until TIFFClientOpenExt returns (libtiff
        // copies them); `client` is boxed, so `data` stays valid for as long
        // as the returned handle, which `Tiff` owns together with it.
        let raw = unsafe {
            let opts = TIFFOpenOptionsAlloc();
            if opts.is_null() {
                return Err(TiffError("out of memory".into()));
            }
            TIFFOpenOptionsSetMaxSingleMemAlloc(opts, max_alloc.min(isize::MAX as u64) as isize);
            TIFFOpenOptionsSetErrorHandlerExtR(opts, on_error, data);
            TIFFOpenOptionsSetWarningHandlerExtR(opts, on_warning, data);
            // "C": strip chopping, as Pillow opens (big uncompressed strips
            // are read a few rows at a time).
            let raw = TIFFClientOpenExt(
                c"image.tif".as_ptr(),
                c"rC".as_ptr(),
                data,
                read_proc,
                write_proc,
                seek_proc,
                close_proc,
                size_proc,
                map_proc,
                unmap_proc,
                opts,
            );
            TIFFOpenOptionsFree(opts);
            raw
        };
        let tiff = Tiff { raw, client };
        if raw.is_null() {
            return Err(tiff.error("not a readable TIFF"));
        }
        Ok(tiff)
    }

    /// The first error libtiff reported, or `fallback`.
    pub fn error(&self, fallback: &str) -> TiffError {
        let errors = self.client.errors.borrow();
        TiffError(
            errors
                .first()
                .cloned()
                .unwrap_or_else(|| fallback.to_string()),
        )
    }

    /// A tag holding one 16-bit value, with libtiff's default when absent.
    pub fn u16_defaulted(&self, tag: u32) -> Option<u16> {
        let mut v: u16 = 0;
        // SAFETY: these tags are documented to take one uint16_t*.
        let ok = unsafe { TIFFGetFieldDefaulted(self.raw, tag, &mut v as *mut u16) };
        (ok == 1).then_some(v)
    }

    /// A tag holding one 16-bit value, if present.
    pub fn u16_field(&self, tag: u32) -> Option<u16> {
        let mut v: u16 = 0;
        // SAFETY: as above.
        let ok = unsafe { TIFFGetField(self.raw, tag, &mut v as *mut u16) };
        (ok == 1).then_some(v)
    }

    /// A tag holding one 32-bit value (width, height, rows per strip, tile sizes).
    pub fn u32_defaulted(&self, tag: u32) -> Option<u32> {
        let mut v: u32 = 0;
        // SAFETY: these tags are documented to take one uint32_t*.
        let ok = unsafe { TIFFGetFieldDefaulted(self.raw, tag, &mut v as *mut u32) };
        (ok == 1).then_some(v)
    }

    /// ExtraSamples: the kind of each extra sample (0 unspecified, 1
    /// associated alpha, 2 unassociated alpha).
    pub fn extra_samples(&self) -> Vec<u16> {
        let mut count: u16 = 0;
        let mut values: *const u16 = std::ptr::null();
        // SAFETY: ExtraSamples takes (uint16_t*, uint16_t**); libtiff owns
        // the array, which stays valid until the directory changes.
        let ok = unsafe {
            TIFFGetFieldDefaulted(
                self.raw,
                EXTRASAMPLES,
                &mut count as *mut u16,
                &mut values as *mut *const u16,
            )
        };
        if ok != 1 || values.is_null() {
            return Vec::new();
        }
        // SAFETY: libtiff returned `count` values at `values`.
        unsafe { std::slice::from_raw_parts(values, usize::from(count)) }.to_vec()
    }

    /// The colour map (red, green, blue; 2^bits entries each, 16-bit).
    pub fn colormap(&self, bits: u16) -> Option<[Vec<u16>; 3]> {
        let (mut r, mut g, mut b): (*const u16, *const u16, *const u16) =
            (std::ptr::null(), std::ptr::null(), std::ptr::null());
        // SAFETY: ColorMap takes three uint16_t** whose arrays hold
        // 1 << BitsPerSample entries, owned by libtiff.
        let ok = unsafe {
            TIFFGetField(
                self.raw,
                COLORMAP,
                &mut r as *mut *const u16,
                &mut g as *mut *const u16,
                &mut b as *mut *const u16,
            )
        };
        if ok != 1 || r.is_null() || g.is_null() || b.is_null() || bits > 16 {
            return None;
        }
        let n = 1usize << bits;
        // SAFETY: each array holds `n` entries (see above).
        Some(unsafe {
            [
                std::slice::from_raw_parts(r, n).to_vec(),
                std::slice::from_raw_parts(g, n).to_vec(),
                std::slice::from_raw_parts(b, n).to_vec(),
            ]
        })
    }

    /// Whether the first directory of a classic TIFF really holds `tag`, as
    /// stored (libtiff fills some tags in when they are missing; Pillow
    /// reads the tags as written). `None` for BigTIFF or an unreadable
    /// directory.
    pub fn ifd0_has_tag(&mut self, tag: u16) -> Option<bool> {
        let source = &mut self.client.source;
        let mut head = [0u8; 8];
        source.seek(SeekFrom::Start(0)).ok()?;
        source.read_exact(&mut head).ok()?;
        let big_endian = match &head[..4] {
            b"II\x2a\0" => false,
            b"MM\0\x2a" => true,
            _ => return None,
        };
        let u16_of = |b: [u8; 2]| {
            if big_endian {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }
        };
        let ifd = [head[4], head[5], head[6], head[7]];
        let ifd = if big_endian {
            u32::from_be_bytes(ifd)
        } else {
            u32::from_le_bytes(ifd)
        };
        source.seek(SeekFrom::Start(u64::from(ifd))).ok()?;
        let mut count = [0u8; 2];
        source.read_exact(&mut count).ok()?;
        let count = usize::from(u16_of(count));
        let mut entries = vec![0u8; count * 12];
        source.read_exact(&mut entries).ok()?;
        Some(
            entries
                .chunks_exact(12)
                .any(|e| u16_of([e[0], e[1]]) == tag),
        )
    }

    /// Asks libjpeg to deliver YCbCr JPEG data as RGB.
    pub fn jpeg_as_rgb(&mut self) -> bool {
        // SAFETY: JPEGColorMode takes one int.
        unsafe { TIFFSetField(self.raw, JPEGCOLORMODE, JPEGCOLORMODE_RGB) == 1 }
    }

    pub fn is_tiled(&self) -> bool {
        // SAFETY: a plain query on an open handle.
        unsafe { TIFFIsTiled(self.raw) != 0 }
    }

    /// Strips or tiles, whichever the file has.
    pub fn chunk_count(&self) -> u32 {
        // SAFETY: plain queries on an open handle.
        unsafe {
            if self.is_tiled() {
                TIFFNumberOfTiles(self.raw)
            } else {
                TIFFNumberOfStrips(self.raw)
            }
        }
    }

    /// Where strip or tile `i` lies in the file: (offset, byte count).
    pub fn chunk_extent(&self, i: u32) -> (u64, u64) {
        // SAFETY: plain queries; libtiff checks `i` against its table.
        unsafe {
            (
                TIFFGetStrileOffset(self.raw, i),
                TIFFGetStrileByteCount(self.raw, i),
            )
        }
    }

    pub fn tile_index(&self, x: u32, y: u32, plane: u16) -> u32 {
        // SAFETY: a pure computation on the open directory.
        unsafe { TIFFComputeTile(self.raw, x, y, 0, plane) }
    }

    /// Decodes strip or tile `i` into `buf`; the number of bytes written.
    pub fn read_chunk(&mut self, i: u32, buf: &mut [u8]) -> Result<usize, TiffError> {
        let len = buf.len().min(isize::MAX as usize) as isize;
        // SAFETY: libtiff writes at most `len` bytes into `buf`.
        let n = unsafe {
            if self.is_tiled() {
                TIFFReadEncodedTile(self.raw, i, buf.as_mut_ptr().cast(), len)
            } else {
                TIFFReadEncodedStrip(self.raw, i, buf.as_mut_ptr().cast(), len)
            }
        };
        if n < 0 {
            return Err(self.error("a strip or tile could not be decoded"));
        }
        Ok(n as usize)
    }

    /// libtiff's own rendering to 8-bit RGBA (R, G, B, A bytes per pixel),
    /// rows top to bottom in stored order.
    pub fn read_rgba(&mut self, width: u32, height: u32) -> Result<Vec<u8>, TiffError> {
        let pixels = usize::try_from(u64::from(width) * u64::from(height))
            .map_err(|_| TiffError("image too large".into()))?;
        let mut raster = vec![0u32; pixels];
        // SAFETY: the raster holds width * height pixels, as libtiff expects.
        let ok = unsafe {
            TIFFReadRGBAImageOriented(
                self.raw,
                width,
                height,
                raster.as_mut_ptr(),
                ORIENTATION_TOPLEFT,
                1,
            )
        };
        if ok != 1 {
            return Err(self.error("libtiff could not render the image"));
        }
        Ok(raster.iter().flat_map(|p| p.to_le_bytes()).collect())
    }
}

impl Drop for Tiff<'_> {
    fn drop(&mut self) {
        if !self.raw.is_null() {
            // SAFETY: the handle is open and closed once; `client` outlives it.
            unsafe { TIFFClose(self.raw) };
        }
    }
}

/// Formats a libtiff message (printf-style with a `va_list`).
unsafe fn message(module: *const c_char, fmt: *const c_char, args: *mut c_void) -> String {
    let mut buf = [0 as c_char; 512];
    // SAFETY: on x86-64 and AArch64 Linux a `va_list` argument is passed as
    // a pointer, which `args` is; vsnprintf writes at most `buf.len()` bytes.
    let text = unsafe {
        vsnprintf(buf.as_mut_ptr(), buf.len(), fmt, args);
        CStr::from_ptr(buf.as_ptr()).to_string_lossy().into_owned()
    };
    let module = if module.is_null() {
        String::new()
    } else {
        // SAFETY: libtiff passes a NUL-terminated module name.
        unsafe { CStr::from_ptr(module) }
            .to_string_lossy()
            .into_owned()
    };
    if module.is_empty() || module == "image.tif" {
        text
    } else {
        format!("{module}: {text}")
    }
}

unsafe extern "C" fn on_error(
    _tif: *mut RawTiff,
    data: *mut c_void,
    module: *const c_char,
    fmt: *const c_char,
    args: *mut c_void,
) -> c_int {
    // SAFETY: `data` is the `Client` registered with the handle.
    let client = unsafe { &*(data as *const Client) };
    let text = unsafe { message(module, fmt, args) };
    if let Ok(mut errors) = client.errors.try_borrow_mut() {
        errors.push(text);
    }
    1
}

unsafe extern "C" fn on_warning(
    _tif: *mut RawTiff,
    _data: *mut c_void,
    _module: *const c_char,
    _fmt: *const c_char,
    _args: *mut c_void,
) -> c_int {
    // Warnings (unknown tags, odd values libtiff works around) are not
    // failures and Pillow silences them too.
    1
}

fn client<'c>(handle: Handle) -> &'c mut Client<'c> {
    // SAFETY: libtiff hands back the pointer given to TIFFClientOpenExt,
    // a live, boxed `Client`; libtiff calls the procs one at a time.
    unsafe { &mut *(handle as *mut Client) }
}

unsafe extern "C" fn read_proc(handle: Handle, buf: *mut c_void, size: isize) -> isize {
    let client = client(handle);
    if size <= 0 {
        return 0;
    }
    // SAFETY: libtiff passes a buffer of `size` writable bytes.
    let buf = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, size as usize) };
    let mut filled = 0;
    while filled < buf.len() {
        match client.source.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => return -1,
        }
    }
    filled as isize
}

unsafe extern "C" fn write_proc(_: Handle, _: *mut c_void, _: isize) -> isize {
    -1
}

unsafe extern "C" fn seek_proc(handle: Handle, offset: u64, whence: c_int) -> u64 {
    let client = client(handle);
    let pos = match whence {
        0 => SeekFrom::Start(offset),
        1 => SeekFrom::Current(offset as i64),
        _ => SeekFrom::End(offset as i64),
    };
    client.source.seek(pos).unwrap_or(u64::MAX)
}

unsafe extern "C" fn close_proc(_: Handle) -> c_int {
    0
}

unsafe extern "C" fn size_proc(handle: Handle) -> u64 {
    client(handle).size
}

unsafe extern "C" fn map_proc(_: Handle, _: *mut *mut c_void, _: *mut u64) -> c_int {
    0
}

unsafe extern "C" fn unmap_proc(_: Handle, _: *mut c_void, _: u64) {}
