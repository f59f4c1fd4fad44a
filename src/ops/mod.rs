//! Pillow-equivalent image operations: pure functions from image to image.
//!
//! The [`Filter`] registry is the one list of what imgpipe can do; request
//! validation, `GET /filters` and the docs all read it. Nothing here does I/O
//! or knows about jobs, queues or HTTP.

mod adjust;
mod grayscale;
mod kernel;

use image::DynamicImage;
use serde::Serialize;

pub use kernel::Kernel;

/// One named operation, as accepted by `POST /process-job?filter=NAME`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Filter {
    Blur,
    Sharpen,
    Smooth,
    Edges,
    Grayscale,
    Contour,
    Detail,
    EdgeEnhance,
    EdgeEnhanceMore,
    Emboss,
    SmoothMore,
    Invert,
    Solarize,
    Autocontrast,
    Equalize,
    Mirror,
    Flip,
}

/// What `GET /filters` says about one filter.
#[derive(Debug, Clone, Serialize)]
pub struct FilterInfo {
    pub name: &'static str,
    pub pillow: &'static str,
    pub description: &'static str,
}

impl Filter {
    pub const ALL: [Filter; 17] = [
        Filter::Blur,
        Filter::Sharpen,
        Filter::Smooth,
        Filter::Edges,
        Filter::Grayscale,
        Filter::Contour,
        Filter::Detail,
        Filter::EdgeEnhance,
        Filter::EdgeEnhanceMore,
        Filter::Emboss,
        Filter::SmoothMore,
        Filter::Invert,
        Filter::Solarize,
        Filter::Autocontrast,
        Filter::Equalize,
        Filter::Mirror,
        Filter::Flip,
    ];

    pub fn name(self) -> &'static str {
        self.info().name
    }

    pub fn info(self) -> FilterInfo {
        let (name, pillow, description) = match self {
            Filter::Blur => ("blur", "ImageFilter.BLUR", "5x5 box-ring blur"),
            Filter::Sharpen => ("sharpen", "ImageFilter.SHARPEN", "3x3 sharpening kernel"),
            Filter::Smooth => ("smooth", "ImageFilter.SMOOTH", "3x3 smoothing kernel"),
            Filter::Edges => ("edges", "ImageFilter.FIND_EDGES", "3x3 edge detection"),
            Filter::Grayscale => (
                "grayscale",
                "ImageOps.grayscale",
                "ITU-R 601-2 luma; output is single-channel (L)",
            ),
            Filter::Contour => (
                "contour",
                "ImageFilter.CONTOUR",
                "3x3 contour tracing, offset 255",
            ),
            Filter::Detail => ("detail", "ImageFilter.DETAIL", "3x3 detail enhancement"),
            Filter::EdgeEnhance => (
                "edge_enhance",
                "ImageFilter.EDGE_ENHANCE",
                "3x3 edge enhancement",
            ),
            Filter::EdgeEnhanceMore => (
                "edge_enhance_more",
                "ImageFilter.EDGE_ENHANCE_MORE",
                "3x3 strong edge enhancement",
            ),
            Filter::Emboss => ("emboss", "ImageFilter.EMBOSS", "3x3 emboss, offset 128"),
            Filter::SmoothMore => (
                "smooth_more",
                "ImageFilter.SMOOTH_MORE",
                "5x5 strong smoothing kernel",
            ),
            Filter::Invert => ("invert", "ImageOps.invert", "negative; alpha kept"),
            Filter::Solarize => (
                "solarize",
                "ImageOps.solarize",
                "samples at or above 128 inverted; alpha kept",
            ),
            Filter::Autocontrast => (
                "autocontrast",
                "ImageOps.autocontrast",
                "each channel stretched to 0-255; alpha kept",
            ),
            Filter::Equalize => (
                "equalize",
                "ImageOps.equalize",
                "each channel's histogram equalized; alpha kept",
            ),
            Filter::Mirror => ("mirror", "ImageOps.mirror", "flipped left to right"),
            Filter::Flip => ("flip", "ImageOps.flip", "flipped top to bottom"),
        };
        FilterInfo {
            name,
            pillow,
            description,
        }
    }

    /// Looks a filter up by its public name (case-insensitive, surrounding blanks ignored).
    pub fn from_name(name: &str) -> Option<Filter> {
        let wanted = name.trim();
        Filter::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(wanted))
    }

    pub fn names() -> Vec<&'static str> {
        Filter::ALL.iter().map(|f| f.name()).collect()
    }

    /// Applies the filter. The input must already be one of L8, La8, Rgb8 or
    /// Rgba8 (see `codec::decode`); anything else is converted to RGB(A) first
    /// (mirror and flip keep any layout).
    pub fn apply(self, img: &DynamicImage) -> DynamicImage {
        match self {
            Filter::Blur => convolve(img, &Kernel::BLUR),
            Filter::Sharpen => convolve(img, &Kernel::SHARPEN),
            Filter::Smooth => convolve(img, &Kernel::SMOOTH),
            Filter::Edges => convolve(img, &Kernel::FIND_EDGES),
            Filter::Grayscale => DynamicImage::ImageLuma8(grayscale::to_luma(img)),
            Filter::Contour => convolve(img, &Kernel::CONTOUR),
            Filter::Detail => convolve(img, &Kernel::DETAIL),
            Filter::EdgeEnhance => convolve(img, &Kernel::EDGE_ENHANCE),
            Filter::EdgeEnhanceMore => convolve(img, &Kernel::EDGE_ENHANCE_MORE),
            Filter::Emboss => convolve(img, &Kernel::EMBOSS),
            Filter::SmoothMore => convolve(img, &Kernel::SMOOTH_MORE),
            Filter::Invert => adjust::invert(img),
            Filter::Solarize => adjust::solarize(img, 128),
            Filter::Autocontrast => adjust::autocontrast(img),
            Filter::Equalize => adjust::equalize(img),
            Filter::Mirror => img.fliph(),
            Filter::Flip => img.flipv(),
        }
    }
}

fn convolve(img: &DynamicImage, kernel: &Kernel) -> DynamicImage {
    match img {
        DynamicImage::ImageLuma8(b) => DynamicImage::ImageLuma8(kernel.apply(b)),
        DynamicImage::ImageLumaA8(b) => DynamicImage::ImageLumaA8(kernel.apply(b)),
        DynamicImage::ImageRgb8(b) => DynamicImage::ImageRgb8(kernel.apply(b)),
        DynamicImage::ImageRgba8(b) => DynamicImage::ImageRgba8(kernel.apply(b)),
        other if other.color().has_alpha() => {
            DynamicImage::ImageRgba8(kernel.apply(&other.to_rgba8()))
        }
        other => DynamicImage::ImageRgb8(kernel.apply(&other.to_rgb8())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for f in Filter::ALL {
            assert_eq!(Filter::from_name(f.name()), Some(f));
        }
        assert_eq!(Filter::from_name(" BLUR "), Some(Filter::Blur));
        assert_eq!(Filter::from_name("sepia"), None);
        assert_eq!(
            Filter::from_name("EDGE_ENHANCE_MORE"),
            Some(Filter::EdgeEnhanceMore)
        );
        assert_eq!(Filter::from_name(""), None);
    }

    #[test]
    fn serde_name_matches_public_name() {
        for f in Filter::ALL {
            assert_eq!(
                serde_json::to_string(&f).unwrap(),
                format!("\"{}\"", f.name())
            );
        }
    }

    #[test]
    fn every_filter_keeps_dimensions_and_mode() {
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_fn(7, 6, |x, y| {
            image::Rgba([x as u8 * 30, y as u8 * 40, 9, 200])
        }));
        for f in Filter::ALL {
            let out = f.apply(&rgba);
            assert_eq!((out.width(), out.height()), (7, 6), "{f:?}");
            let expected = if f == Filter::Grayscale {
                image::ColorType::L8
            } else {
                image::ColorType::Rgba8
            };
            assert_eq!(out.color(), expected, "{f:?}");
        }
    }
}
