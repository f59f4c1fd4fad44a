//! The decoders the worker uses (image's JPEG, PNG, WebP, GIF, BMP and TIFF
//! decoders behind `codec::decode`, with EXIF orientation and mode
//! conversion) on arbitrary bytes, under a small pixel limit: an image or a
//! `CodecError`, never a panic past the guard, a hang or runaway memory.
#![no_main]

use imgpipe::codec;
use libfuzzer_sys::fuzz_target;

#[path = "guarded.rs"]
mod guarded;

fuzz_target!(|data: &[u8]| {
    guarded::let_third_party_panics_reach_the_guard();
    if let Ok(image) = codec::decode(data, 1_000_000) {
        assert!(u64::from(image.width()) * u64::from(image.height()) <= 1_000_000);
    }
});
