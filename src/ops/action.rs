//! What an operation does once its arguments are checked and typed: the
//! [`Action`] each table entry's builder makes, the size it gives for an
//! input size, and the pixel work itself (handed to the modules that hold
//! each operation's arithmetic).

use image::DynamicImage;

use super::kernel::Kernel;
use super::rank::{self, Rank};
use super::raster::Raster;
use super::resample::Resample;
use super::{adjust, blur, geometry, grayscale};

/// How `resize` treats the aspect ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ResizeMode {
    /// `img.resize`: exactly the target size.
    Exact,
    /// `ImageOps.contain`: the largest size inside the target, aspect kept.
    Fit,
    /// `ImageOps.fit`: covers the target, aspect kept, centred crop.
    Fill,
}

/// What an operation does, with its arguments checked and typed.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Action {
    Kernel(&'static Kernel),
    Grayscale,
    Invert,
    Solarize(u16),
    Autocontrast(f64),
    Equalize,
    Posterize(u8),
    Mirror,
    Flip,
    GaussianBlur(f32),
    BoxBlur(f32),
    UnsharpMask {
        radius: f32,
        percent: i32,
        threshold: i32,
    },
    Rank(usize, Rank),
    Mode(usize),
    Rotate(f64, Resample),
    Crop {
        x: i64,
        y: i64,
        width: usize,
        height: usize,
    },
    Resize {
        width: usize,
        height: usize,
        mode: ResizeMode,
        resample: Resample,
    },
    Thumbnail {
        width: usize,
        height: usize,
        resample: Resample,
    },
}

impl Action {
    /// The size of the result for a `w` × `h` input, known before any pixel is touched.
    pub(super) fn output_size(&self, w: usize, h: usize) -> (usize, usize) {
        match *self {
            Action::Rotate(degrees, _) => geometry::rotated_size(w, h, degrees),
            Action::Resize {
                width,
                height,
                mode: ResizeMode::Fit,
                ..
            } => geometry::contain_size(w, h, width, height),
            Action::Thumbnail { width, height, .. } => {
                geometry::thumbnail_size(w, h, width, height).unwrap_or((w, h))
            }
            _ => self.target_size().unwrap_or((w, h)),
        }
    }

    /// The size of the result whatever the input, where the arguments fix
    /// it: crop regions and exact or fill resize targets. A `fit` or
    /// thumbnail target is only an upper bound, so it is not one.
    pub(super) fn target_size(&self) -> Option<(usize, usize)> {
        match *self {
            Action::Resize {
                mode: ResizeMode::Fit,
                ..
            } => None,
            Action::Crop { width, height, .. } | Action::Resize { width, height, .. } => {
                Some((width, height))
            }
            _ => None,
        }
    }

    /// Does the work. The result is 8-bit L, LA, RGB or RGBA, like the input
    /// (L for `grayscale`), and `output_size` big.
    pub(super) fn apply(&self, img: Raster) -> Raster {
        match *self {
            Action::Kernel(k) => k.apply(&img),
            Action::Grayscale => grayscale::to_luma(&img),
            Action::Invert => via_dynamic(img, adjust::invert),
            Action::Solarize(t) => via_dynamic(img, |d| adjust::solarize(d, t)),
            Action::Autocontrast(cutoff) => via_dynamic(img, |d| adjust::autocontrast(d, cutoff)),
            Action::Equalize => via_dynamic(img, adjust::equalize),
            Action::Posterize(bits) => via_dynamic(img, |d| adjust::posterize(d, bits)),
            Action::Mirror => via_dynamic(img, DynamicImage::fliph),
            Action::Flip => via_dynamic(img, DynamicImage::flipv),
            Action::GaussianBlur(r) => blur::gaussian_blur(&img, r),
            Action::BoxBlur(r) => blur::box_blur(&img, r),
            Action::UnsharpMask {
                radius,
                percent,
                threshold,
            } => blur::unsharp_mask(&img, radius, percent, threshold),
            Action::Rank(size, which) => rank::rank_filter(&img, size, which),
            Action::Mode(size) => rank::mode_filter(&img, size),
            Action::Rotate(degrees, resample) => geometry::rotate(&img, degrees, resample),
            Action::Crop {
                x,
                y,
                width,
                height,
            } => geometry::crop(&img, x, y, width, height),
            Action::Resize {
                width,
                height,
                mode,
                resample,
            } => match mode {
                ResizeMode::Exact => geometry::resize(&img, width, height, resample, None),
                ResizeMode::Fit => geometry::contain(&img, width, height, resample),
                ResizeMode::Fill => geometry::cover(&img, width, height, resample),
            },
            Action::Thumbnail {
                width,
                height,
                resample,
            } => geometry::thumbnail(&img, width, height, resample),
        }
    }
}

fn via_dynamic(img: Raster, f: impl FnOnce(&DynamicImage) -> DynamicImage) -> Raster {
    Raster::from_dynamic(f(&img.into_dynamic()))
}
