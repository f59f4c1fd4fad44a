//! [`SPECS`], the one table of operations: each entry's name, category,
//! Pillow equivalent, description, example and arguments (type, range,
//! default), and next to them its builder, which turns the checked argument
//! values into the [`Action`] that does the work. Request validation,
//! `GET /filters`, the canonical text stored in job records and the docs
//! all read it; adding an operation is one entry here (plus, for new kinds
//! of work, an `Action` variant).

use super::action::{Action, ResizeMode};
use super::kernel::Kernel;
use super::rank::Rank;
use super::resample::Resample;
use super::spec::{ArgKind, ArgSpec, Builder, OpSpec, MAX_SIDE};

pub const RESAMPLE_ALL: &[&str] = &[
    "nearest", "box", "bilinear", "hamming", "bicubic", "lanczos",
];
pub const RESAMPLE_AFFINE: &[&str] = &["nearest", "bilinear", "bicubic"];
pub const RESIZE_MODES: &[&str] = &["exact", "fit", "fill"];

/// Pillow's `Image.Resampling` filter a word of `RESAMPLE_ALL` names.
fn resample(word: &str) -> Option<Resample> {
    Some(match word {
        "nearest" => Resample::Nearest,
        "box" => Resample::Box,
        "bilinear" => Resample::Bilinear,
        "hamming" => Resample::Hamming,
        "bicubic" => Resample::Bicubic,
        "lanczos" => Resample::Lanczos,
        _ => return None,
    })
}

/// The `ResizeMode` a word of `RESIZE_MODES` names.
fn resize_mode(word: &str) -> Option<ResizeMode> {
    Some(match word {
        "exact" => ResizeMode::Exact,
        "fit" => ResizeMode::Fit,
        "fill" => ResizeMode::Fill,
        _ => return None,
    })
}

const fn arg(
    name: &'static str,
    lead: char,
    kind: ArgKind,
    default: Option<&'static str>,
    description: &'static str,
) -> ArgSpec {
    ArgSpec {
        name,
        kind,
        default,
        description,
        lead,
    }
}

const fn op(
    name: &'static str,
    category: &'static str,
    pillow: &'static str,
    description: &'static str,
    example: &'static str,
    args: &'static [ArgSpec],
    builder: Builder,
) -> OpSpec {
    OpSpec {
        name,
        category,
        pillow,
        description,
        example,
        args,
        builder,
    }
}

const RADIUS: ArgSpec = arg(
    "radius",
    ':',
    ArgKind::Number {
        minimum: 0.0,
        maximum: 100.0,
    },
    Some("2"),
    "blur radius in pixels",
);
const RANK_SIZE: ArgSpec = arg(
    "size",
    ':',
    ArgKind::OddInteger {
        minimum: 1,
        maximum: 25,
    },
    Some("3"),
    "window width and height",
);
const SIZE: ArgSpec = arg("size", ':', ArgKind::Size, None, "target box, WIDTHxHEIGHT");
const RESAMPLE: ArgSpec = arg(
    "resample",
    ':',
    ArgKind::Choice {
        choices: RESAMPLE_ALL,
    },
    Some("bicubic"),
    "Pillow resampling filter",
);
const SIDE: ArgKind = ArgKind::Integer {
    minimum: 1,
    maximum: MAX_SIDE,
};
const OFFSET: ArgKind = ArgKind::Integer {
    minimum: 0,
    maximum: MAX_SIDE,
};

/// Every operation, in the order `GET /filters` lists them. Pillow hands
/// radii to C as float32, hence the `as f32` of radius arguments.
#[rustfmt::skip]
pub static SPECS: &[OpSpec] = &[
    op("blur", "filter", "img.filter(ImageFilter.BLUR)", "5x5 box-ring blur", "blur", &[],
        |_| Ok(Action::Kernel(&Kernel::BLUR))),
    op("sharpen", "filter", "img.filter(ImageFilter.SHARPEN)", "3x3 sharpening kernel", "sharpen", &[],
        |_| Ok(Action::Kernel(&Kernel::SHARPEN))),
    op("smooth", "filter", "img.filter(ImageFilter.SMOOTH)", "3x3 smoothing kernel", "smooth", &[],
        |_| Ok(Action::Kernel(&Kernel::SMOOTH))),
    op("edges", "filter", "img.filter(ImageFilter.FIND_EDGES)", "3x3 edge detection", "edges", &[],
        |_| Ok(Action::Kernel(&Kernel::FIND_EDGES))),
    op("grayscale", "imageops", "ImageOps.grayscale(img)", "ITU-R 601-2 luma; output is single-channel (L)", "grayscale", &[],
        |_| Ok(Action::Grayscale)),
    op("contour", "filter", "img.filter(ImageFilter.CONTOUR)", "3x3 contour tracing, offset 255", "contour", &[],
        |_| Ok(Action::Kernel(&Kernel::CONTOUR))),
    op("detail", "filter", "img.filter(ImageFilter.DETAIL)", "3x3 detail enhancement", "detail", &[],
        |_| Ok(Action::Kernel(&Kernel::DETAIL))),
    op("edge_enhance", "filter", "img.filter(ImageFilter.EDGE_ENHANCE)", "3x3 edge enhancement", "edge_enhance", &[],
        |_| Ok(Action::Kernel(&Kernel::EDGE_ENHANCE))),
    op("edge_enhance_more", "filter", "img.filter(ImageFilter.EDGE_ENHANCE_MORE)", "3x3 strong edge enhancement", "edge_enhance_more", &[],
        |_| Ok(Action::Kernel(&Kernel::EDGE_ENHANCE_MORE))),
    op("emboss", "filter", "img.filter(ImageFilter.EMBOSS)", "3x3 emboss, offset 128", "emboss", &[],
        |_| Ok(Action::Kernel(&Kernel::EMBOSS))),
    op("smooth_more", "filter", "img.filter(ImageFilter.SMOOTH_MORE)", "5x5 strong smoothing kernel", "smooth_more", &[],
        |_| Ok(Action::Kernel(&Kernel::SMOOTH_MORE))),
    op("invert", "imageops", "ImageOps.invert(img)", "negative; alpha kept", "invert", &[],
        |_| Ok(Action::Invert)),
    op(
        "solarize",
        "imageops",
        "ImageOps.solarize(img, threshold)",
        "samples at or above the threshold inverted; alpha kept",
        "solarize:100",
        &[arg("threshold", ':', ArgKind::Integer { minimum: 0, maximum: 256 }, Some("128"), "first inverted value")],
        |a| Ok(Action::Solarize(a.int("threshold")?)),
    ),
    op(
        "autocontrast",
        "imageops",
        "ImageOps.autocontrast(img, cutoff)",
        "each channel stretched to 0-255 after cutting CUTOFF percent from both ends of its histogram; alpha kept",
        "autocontrast:2",
        &[arg("cutoff", ':', ArgKind::Number { minimum: 0.0, maximum: 50.0 }, Some("0"), "percent cut from each end")],
        |a| Ok(Action::Autocontrast(a.num("cutoff")?)),
    ),
    op("equalize", "imageops", "ImageOps.equalize(img)", "each channel's histogram equalized; alpha kept", "equalize", &[],
        |_| Ok(Action::Equalize)),
    op("mirror", "geometry", "ImageOps.mirror(img)", "flipped left to right", "mirror", &[],
        |_| Ok(Action::Mirror)),
    op("flip", "geometry", "ImageOps.flip(img)", "flipped top to bottom", "flip", &[],
        |_| Ok(Action::Flip)),
    op(
        "gaussian_blur",
        "filter",
        "img.filter(ImageFilter.GaussianBlur(radius))",
        "Gaussian blur (Pillow's three-pass box approximation)",
        "gaussian_blur:3.5",
        &[RADIUS],
        |a| Ok(Action::GaussianBlur(a.num("radius")? as f32)),
    ),
    op(
        "box_blur",
        "filter",
        "img.filter(ImageFilter.BoxBlur(radius))",
        "mean of a (2*RADIUS+1)-wide square, fractional radii weighted",
        "box_blur:2",
        &[arg("radius", ':', ArgKind::Number { minimum: 0.0, maximum: 100.0 }, None, "box radius in pixels")],
        |a| Ok(Action::BoxBlur(a.num("radius")? as f32)),
    ),
    op(
        "unsharp_mask",
        "filter",
        "img.filter(ImageFilter.UnsharpMask(radius, percent, threshold))",
        "sharpening by subtracting a Gaussian blur",
        "unsharp_mask:2,150,3",
        &[
            RADIUS,
            arg("percent", ',', ArgKind::Integer { minimum: 0, maximum: 1000 }, Some("150"), "strength in percent"),
            arg("threshold", ',', ArgKind::Integer { minimum: 0, maximum: 255 }, Some("3"), "smallest difference sharpened"),
        ],
        |a| Ok(Action::UnsharpMask {
            radius: a.num("radius")? as f32,
            percent: a.int("percent")?,
            threshold: a.int("threshold")?,
        }),
    ),
    op("median", "filter", "img.filter(ImageFilter.MedianFilter(size))", "median of each SIZE x SIZE window", "median:5", &[RANK_SIZE],
        |a| Ok(Action::Rank(a.int("size")?, Rank::Median))),
    op("min", "filter", "img.filter(ImageFilter.MinFilter(size))", "minimum of each SIZE x SIZE window", "min:3", &[RANK_SIZE],
        |a| Ok(Action::Rank(a.int("size")?, Rank::Min))),
    op("max", "filter", "img.filter(ImageFilter.MaxFilter(size))", "maximum of each SIZE x SIZE window", "max:3", &[RANK_SIZE],
        |a| Ok(Action::Rank(a.int("size")?, Rank::Max))),
    op(
        "mode",
        "filter",
        "img.filter(ImageFilter.ModeFilter(size))",
        "most frequent value of each SIZE x SIZE window (if it occurs more than twice)",
        "mode:5",
        &[arg("size", ':', ArgKind::Integer { minimum: 1, maximum: 25 }, Some("3"), "window width and height")],
        |a| Ok(Action::Mode(a.int("size")?)),
    ),
    op(
        "posterize",
        "imageops",
        "ImageOps.posterize(img, bits)",
        "each channel kept to BITS bits; alpha kept",
        "posterize:3",
        &[arg("bits", ':', ArgKind::Integer { minimum: 1, maximum: 8 }, None, "bits kept per channel")],
        |a| Ok(Action::Posterize(a.int("bits")?)),
    ),
    op(
        "rotate",
        "geometry",
        "img.rotate(degrees, resample, expand=True)",
        "counter-clockwise; the canvas grows to hold the result, corners filled with black (transparent with alpha); 90/180/270 are exact",
        "rotate:30:bicubic",
        &[
            arg("degrees", ':', ArgKind::Number { minimum: -360.0, maximum: 360.0 }, None, "angle, counter-clockwise"),
            arg("resample", ':', ArgKind::Choice { choices: RESAMPLE_AFFINE }, Some("nearest"), "Pillow resampling filter"),
        ],
        |a| Ok(Action::Rotate(a.num("degrees")?, a.choice("resample", resample)?)),
    ),
    op(
        "crop",
        "geometry",
        "img.crop((x, y, x + width, y + height))",
        "the WIDTH x HEIGHT region at X,Y; parts outside the image are black (transparent with alpha)",
        "crop:10,10,640,480",
        &[
            arg("x", ':', OFFSET, None, "left edge"),
            arg("y", ',', OFFSET, None, "top edge"),
            arg("width", ',', SIDE, None, "region width"),
            arg("height", ',', SIDE, None, "region height"),
        ],
        |a| Ok(Action::Crop {
            x: a.int("x")?,
            y: a.int("y")?,
            width: a.int("width")?,
            height: a.int("height")?,
        }),
    ),
    op(
        "resize",
        "geometry",
        "img.resize((w, h), resample) | ImageOps.contain(img, (w, h), resample) | ImageOps.fit(img, (w, h), resample)",
        "exact: to WIDTHxHEIGHT; fit: largest size inside it, aspect kept; fill: covers it, aspect kept, centred crop",
        "resize:1280x720:fit:lanczos",
        &[
            SIZE,
            arg("mode", ':', ArgKind::Choice { choices: RESIZE_MODES }, Some("exact"), "how the aspect ratio is handled"),
            RESAMPLE,
        ],
        |a| {
            let (width, height) = a.size("size")?;
            Ok(Action::Resize {
                width,
                height,
                mode: a.choice("mode", resize_mode)?,
                resample: a.choice("resample", resample)?,
            })
        },
    ),
    op(
        "thumbnail",
        "geometry",
        "img.thumbnail((w, h), resample)",
        "shrinks to fit inside WIDTHxHEIGHT, aspect kept, never enlarges (reducing_gap 2.0)",
        "thumbnail:256x256",
        &[SIZE, RESAMPLE],
        |a| {
            let (width, height) = a.size("size")?;
            Ok(Action::Thumbnail {
                width,
                height,
                resample: a.choice("resample", resample)?,
            })
        },
    ),
];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::parse;
    use crate::ops::spec::{SpecError, Value};

    /// The entry's example, checked as a request's arguments are.
    fn example_values(spec: &'static OpSpec) -> Vec<Value> {
        let mut ops = parse::split(spec.example).unwrap();
        assert_eq!(ops.len(), 1, "{}", spec.example);
        let (found, raw) = ops.remove(0);
        assert_eq!(found.name, spec.name, "{}", spec.example);
        parse::values(spec, &raw).unwrap_or_else(|e| panic!("{}: {e}", spec.example))
    }

    fn problem(e: &SpecError) -> &str {
        match e {
            SpecError::BadArgument { problem, .. } => problem,
            other => panic!("not a bad argument: {other}"),
        }
    }

    #[test]
    fn every_entry_builds_from_its_example() {
        for spec in SPECS {
            let values = example_values(spec);
            spec.build(&values)
                .unwrap_or_else(|e| panic!("{}: {e}", spec.example));
        }
    }

    /// An enum mapping that misses a word fails here, not in a request; two
    /// words mapped to the same meaning fail too.
    #[test]
    fn every_choice_word_builds_and_means_something_of_its_own() {
        let mut checked = 0;
        for spec in SPECS {
            let example = example_values(spec);
            for (i, arg) in spec.args.iter().enumerate() {
                let ArgKind::Choice { choices } = arg.kind else {
                    continue;
                };
                let mut built = Vec::new();
                for &word in choices {
                    let mut values = example.clone();
                    values[i] = Value::Word(word);
                    let action = spec
                        .build(&values)
                        .unwrap_or_else(|e| panic!("{} {}={word}: {e}", spec.name, arg.name));
                    assert!(
                        !built.contains(&action),
                        "{} {}={word} builds the same action as another choice",
                        spec.name,
                        arg.name
                    );
                    built.push(action);
                    checked += 1;
                }
            }
        }
        // rotate's 3 filters, resize's 3 modes and 6 filters, thumbnail's 6.
        assert_eq!(checked, 18);
    }

    /// Each builder reads every argument through a checked accessor: a
    /// value of the wrong kind in any position is an error naming the
    /// operation and that argument.
    #[test]
    fn builders_refuse_values_of_the_wrong_kind() {
        for spec in SPECS {
            let example = example_values(spec);
            for (i, arg) in spec.args.iter().enumerate() {
                let mut values = example.clone();
                values[i] = match arg.kind {
                    ArgKind::Integer { .. } | ArgKind::OddInteger { .. } => Value::Num(1.5),
                    ArgKind::Number { .. } | ArgKind::Size | ArgKind::Choice { .. } => {
                        Value::Int(1)
                    }
                };
                let e = spec.build(&values).unwrap_err();
                assert_eq!(e.operation(), Some(spec.name), "{e}");
                let name = arg.name.to_ascii_uppercase();
                assert!(problem(&e).starts_with(&name), "{}: {e}", spec.name);
            }
        }
    }

    #[test]
    fn a_word_no_mapping_knows_is_an_error_not_a_default() {
        let resize = parse::split("resize").unwrap()[0].0;
        let built = |mode: &'static str, filter: &'static str| {
            resize.build(&[Value::Size(8, 6), Value::Word(mode), Value::Word(filter)])
        };
        assert!(built("fill", "box").is_ok());
        let e = built("sideways", "box").unwrap_err();
        assert!(problem(&e).contains("MODE \"sideways\""), "{e}");
        let e = built("fit", "blurry").unwrap_err();
        assert!(problem(&e).contains("RESAMPLE \"blurry\""), "{e}");
        assert_eq!(resample("Lanczos"), None, "words arrive in canonical case");
        assert_eq!(resize_mode(""), None);
    }
}
