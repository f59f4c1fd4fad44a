//! Pillow-equivalent image operations and the chains that combine them: pure
//! functions from image to image.
//!
//! [`SPECS`] (`table.rs`) is the one list of what imgpipe can do: each
//! entry's arguments and the builder of the `Action` that does its work. Request
//! validation, `GET /filters`, the job record's text form and the docs all
//! read it. Nothing here does I/O or knows about jobs, queues or HTTP.

mod action;
mod adjust;
mod blur;
pub mod cancel;
mod cost;
mod geometry;
mod grayscale;
mod interpolate;
mod kernel;
mod parse;
mod rank;
mod raster;
mod resample;
pub mod spec;
mod stream;
mod table;

pub use cost::OpCost;
pub use parse::names;
pub use spec::SpecError;
pub use stream::RowStream;
pub use table::SPECS;

use std::fmt;
use std::str::FromStr;

use image::DynamicImage;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use action::Action;
use raster::Raster;

/// One operation: its canonical text (every argument written out) and what it does.
#[derive(Debug, Clone, PartialEq)]
pub struct Op {
    text: String,
    action: Action,
}

impl Op {
    pub fn name(&self) -> &str {
        self.text.split(':').next().unwrap_or_default()
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// Operations applied in order to every image of a job (`ops=a,b,c`).
/// Written and stored as its canonical text; parsing checks everything a
/// request can get wrong, so a stored chain never fails to parse.
#[derive(Debug, Clone, PartialEq)]
pub struct Chain(Vec<Op>);

/// An operation whose result the service will not make: larger than the
/// pixel limit, or empty (e.g. `resize:10x10:fit` of a 1000x1 image, as in
/// Pillow, which then cannot save it either).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SizeError {
    #[error(
        "{op}: the result would be {width}x{height} = {pixels} pixels, over the limit of {limit}"
    )]
    TooLarge {
        op: String,
        width: usize,
        height: usize,
        pixels: u64,
        limit: u64,
    },
    #[error("{op}: the result would be empty ({width}x{height} pixels)")]
    Empty {
        op: String,
        width: usize,
        height: usize,
    },
}

impl SizeError {
    /// The operation, in canonical form.
    pub fn op(&self) -> &str {
        match self {
            SizeError::TooLarge { op, .. } | SizeError::Empty { op, .. } => op,
        }
    }
}

impl Chain {
    pub fn ops(&self) -> &[Op] {
        &self.0
    }

    /// Checks the sizes the chain asks for that do not depend on the input
    /// (crop targets, exact and fill resize targets) against the pixel limit.
    /// A `fit` target is only an upper bound, so it is checked per image.
    pub fn check_sizes(&self, limit: u64) -> Result<(), SizeError> {
        for op in &self.0 {
            if let Some((width, height)) = op.action.target_size() {
                check(op, width, height, limit)?;
            }
        }
        Ok(())
    }

    /// The most pixels any stage holds for a `w` × `h` input (the input
    /// included): what the memory budget reserves for one image.
    pub fn peak_pixels(&self, w: usize, h: usize) -> u64 {
        let mut size = (w, h);
        let mut peak = w as u64 * h as u64;
        for op in &self.0 {
            size = op.action.output_size(size.0, size.1);
            peak = peak.max(size.0 as u64 * size.1 as u64);
        }
        peak
    }

    /// The size of the final image for a `w` × `h` input.
    pub fn output_size(&self, w: usize, h: usize) -> (usize, usize) {
        self.0
            .iter()
            .fold((w, h), |(w, h), op| op.action.output_size(w, h))
    }

    /// Applies every operation in order. Each intermediate size is checked
    /// against `limit` before its pixels are allocated.
    pub fn apply(&self, img: DynamicImage, limit: u64) -> Result<DynamicImage, SizeError> {
        let mut raster = Raster::from_dynamic(img);
        for op in &self.0 {
            if cancel::cancelled() {
                break;
            }
            let (w, h) = op.action.output_size(raster.width, raster.height);
            check(op, w, h, limit)?;
            raster = op.action.apply(raster);
        }
        Ok(raster.into_dynamic())
    }
}

fn check(op: &Op, width: usize, height: usize, limit: u64) -> Result<(), SizeError> {
    let pixels = width as u64 * height as u64;
    if pixels > limit {
        return Err(SizeError::TooLarge {
            op: op.to_string(),
            width,
            height,
            pixels,
            limit,
        });
    }
    if pixels == 0 {
        return Err(SizeError::Empty {
            op: op.to_string(),
            width,
            height,
        });
    }
    Ok(())
}

impl FromStr for Chain {
    type Err = SpecError;

    fn from_str(text: &str) -> Result<Chain, SpecError> {
        let mut ops = Vec::new();
        for (spec, raw) in parse::split(text)? {
            let values = parse::values(spec, &raw)?;
            ops.push(Op {
                action: spec.build(&values)?,
                text: parse::canonical(spec, &values),
            });
        }
        Ok(Chain(ops))
    }
}

impl fmt::Display for Chain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, op) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(&op.text)?;
        }
        Ok(())
    }
}

impl Serialize for Chain {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Chain {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Chain, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(text: &str) -> Chain {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn canonical_text_round_trips_through_serde() {
        let c = chain("resize:64x48:fill , unsharp_mask:1.5 ,grayscale");
        assert_eq!(
            c.to_string(),
            "resize:64x48:fill:bicubic,unsharp_mask:1.5,150,3,grayscale"
        );
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Chain>(&json).unwrap(), c);
        // A one-operation chain is just its name.
        assert_eq!(
            serde_json::from_str::<Chain>("\"blur\"").unwrap(),
            chain("blur")
        );
    }

    #[test]
    fn every_operation_keeps_a_valid_layout() {
        let rgba = DynamicImage::ImageRgba8(image::RgbaImage::from_fn(7, 6, |x, y| {
            image::Rgba([x as u8 * 30, y as u8 * 40, 9, 200])
        }));
        for spec in SPECS {
            let c = chain(spec.example);
            let out = c.apply(rgba.clone(), 1 << 20).unwrap();
            let expected_size = c.output_size(7, 6);
            assert_eq!(
                (out.width() as usize, out.height() as usize),
                expected_size,
                "{}",
                spec.name
            );
            let expected = if spec.name == "grayscale" {
                image::ColorType::L8
            } else {
                image::ColorType::Rgba8
            };
            assert_eq!(out.color(), expected, "{}", spec.name);
        }
    }

    /// Every operation with its arguments at their extremes, on images down
    /// to 1x1 in every layout: no panic, and the size is the one predicted.
    #[test]
    fn extreme_arguments_on_tiny_images_never_panic() {
        use spec::ArgKind;
        for spec in SPECS {
            let mut variants: Vec<Vec<String>> = vec![Vec::new()];
            for arg in spec.args {
                let values: Vec<String> = match arg.kind {
                    ArgKind::Integer { minimum, maximum } => {
                        vec![minimum.to_string(), maximum.to_string()]
                    }
                    ArgKind::OddInteger { minimum, maximum } => {
                        vec![minimum.to_string(), maximum.to_string()]
                    }
                    ArgKind::Number { minimum, maximum } => {
                        vec![minimum.to_string(), maximum.to_string(), "0.3".into()]
                    }
                    ArgKind::Size => vec!["1x1".into(), "9x2".into(), "1x40".into()],
                    ArgKind::Choice { choices } => choices.iter().map(|c| c.to_string()).collect(),
                };
                variants = variants
                    .iter()
                    .flat_map(|v| {
                        values.iter().map(move |x| {
                            let mut v = v.clone();
                            v.push(x.clone());
                            v
                        })
                    })
                    .collect();
            }
            for args in variants {
                let text = if args.is_empty() {
                    spec.name.to_string()
                } else {
                    format!("{}:{}", spec.name, args.join(","))
                };
                let c = chain(&text);
                for (w, h) in [(1, 1), (1, 5), (6, 1), (3, 2)] {
                    for img in [
                        DynamicImage::new_luma8(w, h),
                        DynamicImage::new_luma_a8(w, h),
                        DynamicImage::ImageRgb8(image::RgbImage::from_fn(w, h, |x, y| {
                            image::Rgb([(x * 40) as u8, (y * 50) as u8, 255])
                        })),
                        DynamicImage::new_rgba8(w, h),
                    ] {
                        let predicted = c.output_size(w as usize, h as usize);
                        match c.apply(img, 1 << 20) {
                            Ok(out) => assert_eq!(
                                (out.width() as usize, out.height() as usize),
                                predicted,
                                "{text} on {w}x{h}"
                            ),
                            Err(e) => assert!(
                                matches!(e, SizeError::TooLarge { pixels, .. } if pixels > 1 << 20)
                                    || matches!(e, SizeError::Empty { .. }),
                                "{text}: {e}"
                            ),
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn sizes_are_checked_before_pixels_exist() {
        assert!(chain("resize:60000x60000").check_sizes(50_000_000).is_err());
        assert!(chain("crop:0,0,100,100").check_sizes(50_000_000).is_ok());
        assert_eq!(
            chain("resize:200x100,thumbnail:10x10").peak_pixels(50, 50),
            20_000
        );
        assert_eq!(chain("blur").peak_pixels(50, 50), 2_500);
        let img = DynamicImage::new_rgb8(100, 100);
        let err = chain("rotate:45").apply(img, 10_000).unwrap_err();
        assert_eq!(err.op(), "rotate:45:nearest");
        // Pillow also makes 10x0 here; nothing can hold it, so it is refused.
        let flat = DynamicImage::new_rgb8(1000, 1);
        let err = chain("resize:10x10:fit,median")
            .apply(flat, 1 << 20)
            .unwrap_err();
        assert!(
            matches!(
                err,
                SizeError::Empty {
                    width: 10,
                    height: 0,
                    ..
                }
            ),
            "{err}"
        );
        assert!(chain("resize:9000x9000:fit")
            .check_sizes(50_000_000)
            .is_ok());
    }
}
