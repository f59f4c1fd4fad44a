//! The operation registry and grammar: what each operation is called, which
//! arguments it takes (type, range, default) and how a chain is written.
//! Parsing, validation errors, `GET /filters` and the canonical text stored
//! in job records all come from the one table, [`SPECS`].
//!
//! Grammar: `op[:arg[<sep>arg...]]` joined by `,` into a chain, where `<sep>`
//! is `:` or `,`. A comma-separated piece that does not start a known
//! operation (a number, `fit`, `lanczos`…) continues the previous operation's
//! arguments, so `unsharp_mask:2,150,3,grayscale` reads as two operations.

use serde::Serialize;

/// The most operations one chain may hold.
pub const MAX_CHAIN: usize = 16;
/// The largest width or height a size argument may give.
pub const MAX_SIDE: i64 = 65_535;

pub const RESAMPLE_ALL: &[&str] = &[
    "nearest", "box", "bilinear", "hamming", "bicubic", "lanczos",
];
pub const RESAMPLE_AFFINE: &[&str] = &["nearest", "bilinear", "bicubic"];
pub const RESIZE_MODES: &[&str] = &["exact", "fit", "fill"];

#[derive(Debug, Clone, Copy, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ArgKind {
    Integer {
        minimum: i64,
        maximum: i64,
    },
    OddInteger {
        minimum: i64,
        maximum: i64,
    },
    Number {
        minimum: f64,
        maximum: f64,
    },
    /// `WxH`, each side 1..=MAX_SIDE.
    Size,
    Choice {
        choices: &'static [&'static str],
    },
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct ArgSpec {
    pub name: &'static str,
    #[serde(flatten)]
    pub kind: ArgKind,
    /// `None`: the argument must be given.
    pub default: Option<&'static str>,
    pub description: &'static str,
    /// The separator written before this argument in canonical form.
    #[serde(skip)]
    pub lead: char,
}

#[derive(Debug, Clone, Copy, Serialize)]
pub struct OpSpec {
    pub name: &'static str,
    pub category: &'static str,
    pub pillow: &'static str,
    pub description: &'static str,
    pub example: &'static str,
    pub args: &'static [ArgSpec],
}

impl OpSpec {
    /// `unsharp_mask[:RADIUS[,PERCENT[,THRESHOLD]]]`
    pub fn syntax(&self) -> String {
        let mut out = self.name.to_string();
        let mut closing = 0;
        for arg in self.args {
            if arg.default.is_some() {
                out.push('[');
                closing += 1;
            }
            out.push(arg.lead);
            out.push_str(&arg.name.to_ascii_uppercase());
        }
        out.push_str(&"]".repeat(closing));
        out
    }

    /// The syntax plus each argument's type, range and default.
    pub fn usage(&self) -> String {
        let mut parts = vec![self.syntax()];
        for arg in self.args {
            let range = match arg.kind {
                ArgKind::Integer { minimum, maximum } => format!("integer {minimum}..{maximum}"),
                ArgKind::OddInteger { minimum, maximum } => {
                    format!("odd integer {minimum}..{maximum}")
                }
                ArgKind::Number { minimum, maximum } => format!("number {minimum}..{maximum}"),
                ArgKind::Size => format!("WIDTHxHEIGHT, each 1..{MAX_SIDE}"),
                ArgKind::Choice { choices } => format!("one of {}", choices.join("|")),
            };
            let default = arg
                .default
                .map(|d| format!(", default {d}"))
                .unwrap_or_default();
            parts.push(format!(
                "{} {range}{default}",
                arg.name.to_ascii_uppercase()
            ));
        }
        parts.join("; ")
    }
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
) -> OpSpec {
    OpSpec {
        name,
        category,
        pillow,
        description,
        example,
        args,
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

/// Every operation, in the order `GET /filters` lists them.
pub static SPECS: &[OpSpec] = &[
    op("blur", "filter", "img.filter(ImageFilter.BLUR)", "5x5 box-ring blur", "blur", &[]),
    op("sharpen", "filter", "img.filter(ImageFilter.SHARPEN)", "3x3 sharpening kernel", "sharpen", &[]),
    op("smooth", "filter", "img.filter(ImageFilter.SMOOTH)", "3x3 smoothing kernel", "smooth", &[]),
    op("edges", "filter", "img.filter(ImageFilter.FIND_EDGES)", "3x3 edge detection", "edges", &[]),
    op("grayscale", "imageops", "ImageOps.grayscale(img)", "ITU-R 601-2 luma; output is single-channel (L)", "grayscale", &[]),
    op("contour", "filter", "img.filter(ImageFilter.CONTOUR)", "3x3 contour tracing, offset 255", "contour", &[]),
    op("detail", "filter", "img.filter(ImageFilter.DETAIL)", "3x3 detail enhancement", "detail", &[]),
    op("edge_enhance", "filter", "img.filter(ImageFilter.EDGE_ENHANCE)", "3x3 edge enhancement", "edge_enhance", &[]),
    op("edge_enhance_more", "filter", "img.filter(ImageFilter.EDGE_ENHANCE_MORE)", "3x3 strong edge enhancement", "edge_enhance_more", &[]),
    op("emboss", "filter", "img.filter(ImageFilter.EMBOSS)", "3x3 emboss, offset 128", "emboss", &[]),
    op("smooth_more", "filter", "img.filter(ImageFilter.SMOOTH_MORE)", "5x5 strong smoothing kernel", "smooth_more", &[]),
    op("invert", "imageops", "ImageOps.invert(img)", "negative; alpha kept", "invert", &[]),
    op(
        "solarize",
        "imageops",
        "ImageOps.solarize(img, threshold)",
        "samples at or above the threshold inverted; alpha kept",
        "solarize:100",
        &[arg("threshold", ':', ArgKind::Integer { minimum: 0, maximum: 256 }, Some("128"), "first inverted value")],
    ),
    op(
        "autocontrast",
        "imageops",
        "ImageOps.autocontrast(img, cutoff)",
        "each channel stretched to 0-255 after cutting CUTOFF percent from both ends of its histogram; alpha kept",
        "autocontrast:2",
        &[arg("cutoff", ':', ArgKind::Number { minimum: 0.0, maximum: 50.0 }, Some("0"), "percent cut from each end")],
    ),
    op("equalize", "imageops", "ImageOps.equalize(img)", "each channel's histogram equalized; alpha kept", "equalize", &[]),
    op("mirror", "geometry", "ImageOps.mirror(img)", "flipped left to right", "mirror", &[]),
    op("flip", "geometry", "ImageOps.flip(img)", "flipped top to bottom", "flip", &[]),
    op(
        "gaussian_blur",
        "filter",
        "img.filter(ImageFilter.GaussianBlur(radius))",
        "Gaussian blur (Pillow's three-pass box approximation)",
        "gaussian_blur:3.5",
        &[RADIUS],
    ),
    op(
        "box_blur",
        "filter",
        "img.filter(ImageFilter.BoxBlur(radius))",
        "mean of a (2*RADIUS+1)-wide square, fractional radii weighted",
        "box_blur:2",
        &[arg("radius", ':', ArgKind::Number { minimum: 0.0, maximum: 100.0 }, None, "box radius in pixels")],
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
    ),
    op("median", "filter", "img.filter(ImageFilter.MedianFilter(size))", "median of each SIZE x SIZE window", "median:5", &[RANK_SIZE]),
    op("min", "filter", "img.filter(ImageFilter.MinFilter(size))", "minimum of each SIZE x SIZE window", "min:3", &[RANK_SIZE]),
    op("max", "filter", "img.filter(ImageFilter.MaxFilter(size))", "maximum of each SIZE x SIZE window", "max:3", &[RANK_SIZE]),
    op(
        "mode",
        "filter",
        "img.filter(ImageFilter.ModeFilter(size))",
        "most frequent value of each SIZE x SIZE window (if it occurs more than twice)",
        "mode:5",
        &[arg("size", ':', ArgKind::Integer { minimum: 1, maximum: 25 }, Some("3"), "window width and height")],
    ),
    op(
        "posterize",
        "imageops",
        "ImageOps.posterize(img, bits)",
        "each channel kept to BITS bits; alpha kept",
        "posterize:3",
        &[arg("bits", ':', ArgKind::Integer { minimum: 1, maximum: 8 }, None, "bits kept per channel")],
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
    ),
    op(
        "thumbnail",
        "geometry",
        "img.thumbnail((w, h), resample)",
        "shrinks to fit inside WIDTHxHEIGHT, aspect kept, never enlarges (reducing_gap 2.0)",
        "thumbnail:256x256",
        &[SIZE, RESAMPLE],
    ),
];

pub fn find(name: &str) -> Option<&'static OpSpec> {
    SPECS
        .iter()
        .find(|s| s.name.eq_ignore_ascii_case(name.trim()))
}

pub fn names() -> Vec<&'static str> {
    SPECS.iter().map(|s| s.name).collect()
}

/// A parsed argument value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Int(i64),
    Num(f64),
    Size(usize, usize),
    Word(&'static str),
}

impl Value {
    pub fn int(self) -> i64 {
        match self {
            Value::Int(v) => v,
            Value::Num(v) => v as i64,
            _ => 0,
        }
    }
    pub fn num(self) -> f64 {
        match self {
            Value::Num(v) => v,
            Value::Int(v) => v as f64,
            _ => 0.0,
        }
    }
    pub fn size(self) -> (usize, usize) {
        match self {
            Value::Size(w, h) => (w, h),
            _ => (1, 1),
        }
    }
    pub fn word(self) -> &'static str {
        match self {
            Value::Word(w) => w,
            _ => "",
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(v) => write!(f, "{v}"),
            // Shortest text that parses back to the same f64.
            Value::Num(v) => write!(f, "{v}"),
            Value::Size(w, h) => write!(f, "{w}x{h}"),
            Value::Word(w) => f.write_str(w),
        }
    }
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("no operation given")]
    Empty,
    #[error("empty operation in {chain:?} (two commas in a row, or a trailing comma)")]
    EmptyPiece { chain: String },
    #[error("unknown operation {given:?}; known operations: {known}")]
    Unknown { given: String, known: String },
    #[error("{op}: {problem}. Usage: {usage}")]
    BadArgument {
        op: &'static str,
        problem: String,
        usage: String,
    },
    #[error("{count} operations in one chain; at most {MAX_CHAIN} are allowed")]
    TooLong { count: usize },
}

impl SpecError {
    /// The operation the error is about, when there is one.
    pub fn operation(&self) -> Option<&str> {
        match self {
            SpecError::Unknown { given, .. } => Some(given),
            SpecError::BadArgument { op, .. } => Some(op),
            _ => None,
        }
    }

    pub fn usage(&self) -> Option<&str> {
        match self {
            SpecError::BadArgument { usage, .. } => Some(usage),
            _ => None,
        }
    }
}

fn unknown(given: &str) -> SpecError {
    SpecError::Unknown {
        given: given.to_string(),
        known: names().join(", "),
    }
}

/// Splits a chain into `(spec, raw arguments)` pieces (see the module docs).
pub fn split(text: &str) -> Result<Vec<(&'static OpSpec, Vec<String>)>, SpecError> {
    let mut ops: Vec<(&'static OpSpec, Vec<String>)> = Vec::new();
    if text.trim().is_empty() {
        return Err(SpecError::Empty);
    }
    for piece in text.split(',').map(str::trim) {
        if piece.is_empty() {
            return Err(SpecError::EmptyPiece {
                chain: text.to_string(),
            });
        }
        let mut parts = piece.split(':').map(str::trim);
        let head = parts.next().unwrap_or_default();
        let starts_op = head.starts_with(|c: char| c.is_ascii_alphabetic());
        match (starts_op, find(head), ops.last_mut()) {
            (true, Some(spec), _) => ops.push((spec, parts.map(str::to_string).collect())),
            // A word that is not an operation may be the previous one's choice argument.
            (true, None, Some((spec, args))) if takes_word(spec, args.len(), head) => {
                args.push(head.to_string());
                args.extend(parts.map(str::to_string));
            }
            (true, None, _) => return Err(unknown(head)),
            (false, _, Some((_, args))) => {
                args.push(head.to_string());
                args.extend(parts.map(str::to_string));
            }
            (false, _, None) => return Err(unknown(piece)),
        }
    }
    if ops.len() > MAX_CHAIN {
        return Err(SpecError::TooLong { count: ops.len() });
    }
    Ok(ops)
}

fn takes_word(spec: &OpSpec, given: usize, word: &str) -> bool {
    spec.args.iter().skip(given).any(|a| match a.kind {
        ArgKind::Choice { choices } => choices.iter().any(|c| c.eq_ignore_ascii_case(word)),
        _ => false,
    })
}

/// Checks and converts one operation's arguments, defaults filled in.
pub fn values(spec: &'static OpSpec, raw: &[String]) -> Result<Vec<Value>, SpecError> {
    let bad = |problem: String| SpecError::BadArgument {
        op: spec.name,
        problem,
        usage: spec.usage(),
    };
    if raw.len() > spec.args.len() {
        return Err(bad(match spec.args.len() {
            0 => format!("takes no arguments, got {:?}", raw.join(":")),
            n => format!("takes at most {n} argument(s), got {}", raw.len()),
        }));
    }
    let mut out = Vec::with_capacity(spec.args.len());
    let mut next = 0;
    for (i, a) in spec.args.iter().enumerate() {
        let mut given = raw.get(next).map(String::as_str);
        // A choice word may skip optional choices before it:
        // `resize:800x600:lanczos` means mode exact (the default), lanczos.
        if let (Some(word), ArgKind::Choice { choices }, Some(_)) = (given, a.kind, a.default) {
            let fits_here = choices.iter().any(|c| c.eq_ignore_ascii_case(word));
            if !fits_here && takes_word(spec, i + 1, word) {
                given = None;
            } else {
                next += 1;
            }
        } else {
            next += 1;
        }
        let given = given.filter(|s| !s.is_empty());
        let Some(text) = given.or(a.default) else {
            return Err(bad(format!("{} is required", a.name.to_ascii_uppercase())));
        };
        let name = a.name.to_ascii_uppercase();
        let value = match a.kind {
            ArgKind::Integer { minimum, maximum } | ArgKind::OddInteger { minimum, maximum } => {
                let v: i64 = text
                    .parse()
                    .map_err(|_| bad(format!("{name} must be an integer, got {text:?}")))?;
                if !(minimum..=maximum).contains(&v) {
                    return Err(bad(format!(
                        "{name} must be in {minimum}..{maximum}, got {v}"
                    )));
                }
                if matches!(a.kind, ArgKind::OddInteger { .. }) && v % 2 == 0 {
                    return Err(bad(format!("{name} must be odd, got {v}")));
                }
                Value::Int(v)
            }
            ArgKind::Number { minimum, maximum } => {
                let v: f64 = text
                    .parse()
                    .ok()
                    .filter(|v: &f64| v.is_finite())
                    .ok_or_else(|| bad(format!("{name} must be a number, got {text:?}")))?;
                if !(minimum..=maximum).contains(&v) {
                    return Err(bad(format!(
                        "{name} must be in {minimum}..{maximum}, got {v}"
                    )));
                }
                // -0 and 0 mean the same; keep the canonical text free of "-0".
                Value::Num(if v == 0.0 { 0.0 } else { v })
            }
            ArgKind::Size => {
                let parsed = text
                    .to_ascii_lowercase()
                    .split_once('x')
                    .and_then(|(w, h)| {
                        Some((w.trim().parse::<i64>().ok()?, h.trim().parse::<i64>().ok()?))
                    });
                match parsed {
                    Some((w, h)) if (1..=MAX_SIDE).contains(&w) && (1..=MAX_SIDE).contains(&h) => {
                        Value::Size(w as usize, h as usize)
                    }
                    _ => {
                        return Err(bad(format!(
                        "{name} must be WIDTHxHEIGHT with each side in 1..{MAX_SIDE}, got {text:?}"
                    )))
                    }
                }
            }
            ArgKind::Choice { choices } => {
                match choices.iter().find(|c| c.eq_ignore_ascii_case(text)) {
                    Some(c) => Value::Word(c),
                    None => {
                        return Err(bad(format!(
                            "{name} must be one of {}, got {text:?}",
                            choices.join("|")
                        )))
                    }
                }
            }
        };
        out.push(value);
    }
    if let Some(extra) = raw.get(next) {
        return Err(bad(format!("unexpected argument {extra:?}")));
    }
    Ok(out)
}

/// The canonical text of one operation: every argument written out.
pub fn canonical(spec: &OpSpec, values: &[Value]) -> String {
    let mut out = spec.name.to_string();
    for (a, v) in spec.args.iter().zip(values) {
        out.push(a.lead);
        out.push_str(&v.to_string());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Vec<String>, SpecError> {
        split(text)?
            .into_iter()
            .map(|(spec, raw)| Ok(canonical(spec, &values(spec, &raw)?)))
            .collect()
    }

    #[test]
    fn chains_split_on_commas_and_keep_numeric_arguments() {
        assert_eq!(
            parse("resize:1280x720:fit,sharpen,grayscale").unwrap(),
            ["resize:1280x720:fit:bicubic", "sharpen", "grayscale"]
        );
        assert_eq!(
            parse("unsharp_mask:2,150,3,grayscale").unwrap(),
            ["unsharp_mask:2,150,3", "grayscale"]
        );
        assert_eq!(parse("crop:1,2,3,4").unwrap(), ["crop:1,2,3,4"]);
        assert_eq!(
            parse(" Gaussian_Blur : 1.5 ").unwrap(),
            ["gaussian_blur:1.5"]
        );
        assert_eq!(
            parse("resize:10x20,fill").unwrap(),
            ["resize:10x20:fill:bicubic"]
        );
        assert_eq!(parse("unsharp_mask").unwrap(), ["unsharp_mask:2,150,3"]);
        assert_eq!(parse("rotate:-0").unwrap(), ["rotate:0:nearest"]);
        assert_eq!(
            parse("resize:8x6:lanczos").unwrap(),
            ["resize:8x6:exact:lanczos"]
        );
        assert_eq!(
            parse("resize:8x6,fill,box").unwrap(),
            ["resize:8x6:fill:box"]
        );
        assert!(parse("resize:8x6:lanczos:fit").is_err());
    }

    #[test]
    fn errors_name_the_operation_and_its_usage() {
        let e = parse("blur,sepia").unwrap_err();
        assert_eq!(e.operation(), Some("sepia"));
        let e = parse("median:4").unwrap_err();
        assert_eq!(e.operation(), Some("median"));
        assert!(e.to_string().contains("must be odd"), "{e}");
        assert!(e.to_string().contains("median[:SIZE]"), "{e}");
        let e = parse("posterize").unwrap_err();
        assert!(e.to_string().contains("BITS is required"), "{e}");
        let e = parse("resize:0x10").unwrap_err();
        assert!(e.to_string().contains("WIDTHxHEIGHT"), "{e}");
        let e = parse("blur:3").unwrap_err();
        assert!(e.to_string().contains("takes no arguments"), "{e}");
        let e = parse("gaussian_blur:nan").unwrap_err();
        assert!(e.to_string().contains("must be a number"), "{e}");
        let e = parse("resize:10x10:fit:bicubic:extra").unwrap_err();
        assert!(e.to_string().contains("at most 3"), "{e}");
        assert!(matches!(parse(""), Err(SpecError::Empty)));
        assert!(matches!(parse("3"), Err(SpecError::Unknown { .. })));
        let long = vec!["blur"; MAX_CHAIN + 1].join(",");
        assert!(matches!(parse(&long), Err(SpecError::TooLong { .. })));
    }

    #[test]
    fn every_example_parses_and_every_name_is_unique() {
        let mut seen = std::collections::HashSet::new();
        for spec in SPECS {
            assert!(seen.insert(spec.name), "{} twice", spec.name);
            parse(spec.example).unwrap_or_else(|e| panic!("{}: {e}", spec.example));
            if spec.args.iter().all(|a| a.default.is_some()) {
                values(spec, &[]).unwrap_or_else(|e| panic!("{} defaults: {e}", spec.name));
            }
        }
    }
}
