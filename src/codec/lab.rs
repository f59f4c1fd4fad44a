//! CIELab to sRGB exactly as Pillow converts it: `Image.convert("RGB")` on
//! a LAB image goes through LittleCMS (`ImageCms`) from its built-in Lab
//! (D50) profile to its built-in sRGB profile, perceptual intent, no flags,
//! 8-bit Lab v2 samples padded to four bytes. The same calls on the
//! system's LittleCMS give Pillow's bytes. All of the colour-management
//! `unsafe` lives here; it knows nothing of TIFF.

use std::ffi::c_void;

#[link(name = "lcms2")]
unsafe extern "C" {
    fn cmsCreateLab2Profile(white_point: *const c_void) -> *mut c_void;
    fn cmsCreate_sRGBProfile() -> *mut c_void;
    fn cmsCloseProfile(profile: *mut c_void) -> i32;
    fn cmsCreateTransform(
        input: *mut c_void,
        input_format: u32,
        output: *mut c_void,
        output_format: u32,
        intent: u32,
        flags: u32,
    ) -> *mut c_void;
    fn cmsDoTransform(
        transform: *mut c_void,
        input: *const c_void,
        output: *mut c_void,
        pixels: u32,
    );
    fn cmsDeleteTransform(transform: *mut c_void);
}

// lcms2.h's format macros: colour space << 16, channels << 3, extra << 7, bytes.
const PT_RGB: u32 = 4;
const PT_LAB_V2: u32 = 30;
const fn format(space: u32) -> u32 {
    (space << 16) | (3 << 3) | (1 << 7) | 1
}

/// Converts pixels of (L, a, b) as Pillow holds them (a and b offset by
/// 128) to RGB. `None` when LittleCMS cannot build the transform.
pub fn to_rgb(lab: &[[u8; 3]]) -> Option<Vec<u8>> {
    let input: Vec<u8> = lab.iter().flat_map(|p| [p[0], p[1], p[2], 0]).collect();
    let mut output = vec![0u8; input.len()];
    // SAFETY: profiles and the transform are created, used and released
    // here; the buffers hold 4 bytes for each of `lab.len()` pixels, as the
    // formats say; chunks keep the count within u32.
    unsafe {
        let lab_profile = cmsCreateLab2Profile(std::ptr::null());
        let srgb = cmsCreate_sRGBProfile();
        let transform = if lab_profile.is_null() || srgb.is_null() {
            std::ptr::null_mut()
        } else {
            cmsCreateTransform(lab_profile, format(PT_LAB_V2), srgb, format(PT_RGB), 0, 0)
        };
        if !lab_profile.is_null() {
            cmsCloseProfile(lab_profile);
        }
        if !srgb.is_null() {
            cmsCloseProfile(srgb);
        }
        if transform.is_null() {
            return None;
        }
        for (src, dst) in input.chunks(4 << 20).zip(output.chunks_mut(4 << 20)) {
            cmsDoTransform(
                transform,
                src.as_ptr().cast(),
                dst.as_mut_ptr().cast(),
                (src.len() / 4) as u32,
            );
        }
        cmsDeleteTransform(transform);
    }
    Some(
        output
            .chunks_exact(4)
            .flat_map(|p| [p[0], p[1], p[2]])
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn pillows_own_answers() {
        // Pillow 13: Image.frombytes("LAB", (3, 1), bytes([0, 0, 0, 255, 0, 0,
        // 150, 40, 200])).convert("RGB"); its unpacker offsets a and b by 128.
        let rgb =
            super::to_rgb(&[[0, 128, 128], [255, 128, 128], [150, 168, 72]]).expect("transform");
        assert_eq!(rgb, [1, 0, 1, 254, 255, 254, 169, 117, 241]);
    }
}
