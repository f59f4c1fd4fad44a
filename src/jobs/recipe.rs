//! What the client asked to be done to every image of a job, and how the
//! request's options become one: the operation chain (checked whole), the
//! output format, quality and losslessness. Pure; the HTTP layer gathers the
//! options from the query string or form fields.

use serde::{Deserialize, Serialize};

use crate::codec::OutputFormat;
use crate::ops::{Chain, SizeError, SpecError};

/// The quality a job gets when it names none: Pillow's own defaults
/// (`save(f, "JPEG")` writes at 75, `save(f, "WEBP")` at 80), so that a job
/// without options writes the bytes the Pillow code it replaces writes.
pub const DEFAULT_JPEG_QUALITY: u8 = 75;
pub const DEFAULT_WEBP_QUALITY: u8 = 80;

/// The default quality for output `format` (`None`: the input's family,
/// JPEG or lossless PNG, where only JPEG's quality matters).
pub fn default_quality(format: Option<OutputFormat>) -> u8 {
    match format {
        Some(OutputFormat::Webp) => DEFAULT_WEBP_QUALITY,
        _ => DEFAULT_JPEG_QUALITY,
    }
}

/// Why a request's options do not make a recipe.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// `field` is the option the chain came in (`filter` or `ops`).
    #[error("invalid {field}: {error}")]
    InvalidOps {
        field: &'static str,
        error: SpecError,
    },
    #[error("no operation given")]
    MissingOps,
    #[error(
        "both filter and ops given; filter is the one-operation shorthand of ops, pass one of them"
    )]
    FilterAndOps,
    #[error(transparent)]
    OutputTooLarge(#[from] SizeError),
    #[error("unknown output format {given:?}; valid formats: jpeg, png, webp")]
    UnknownFormat { given: String },
    #[error("quality must be an integer from 1 to 100, got {given:?}")]
    InvalidQuality { given: String },
    #[error("lossless must be true or false, got {given:?}")]
    InvalidLossless { given: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Recipe {
    pub ops: Chain,
    /// `None`: keep the input's format family (see
    /// [`InputFormat::default_output`](crate::codec::InputFormat::default_output)).
    pub format: Option<OutputFormat>,
    /// JPEG and lossy WebP quality, 1..=100.
    pub quality: u8,
    /// WebP only: lossless instead of lossy at `quality`.
    #[serde(default)]
    pub lossless: bool,
}

/// The request's processing options as sent, unparsed.
#[derive(Debug, Clone, Copy, Default)]
pub struct RecipeOptions<'a> {
    /// One operation: the shorthand of a one-element chain.
    pub filter: Option<&'a str>,
    pub ops: Option<&'a str>,
    pub format: Option<&'a str>,
    pub quality: Option<&'a str>,
    pub lossless: Option<&'a str>,
}

impl Recipe {
    /// Parses and checks the options: the whole chain, its fixed output
    /// sizes against `max_pixels`, the format and the quality. One of
    /// `filter` and `ops` is required.
    pub fn parse(options: &RecipeOptions<'_>, max_pixels: u64) -> Result<Recipe, RecipeError> {
        fn blank(v: Option<&str>) -> Option<&str> {
            v.filter(|s| !s.trim().is_empty())
        }
        let (field, text) = match (blank(options.filter), blank(options.ops)) {
            (Some(_), Some(_)) => return Err(RecipeError::FilterAndOps),
            (Some(f), None) => ("filter", f),
            (None, Some(o)) => ("ops", o),
            (None, None) => return Err(RecipeError::MissingOps),
        };
        let ops: Chain = text
            .parse()
            .map_err(|error| RecipeError::InvalidOps { field, error })?;
        ops.check_sizes(max_pixels)?;
        let format =
            match options.format.map(str::trim) {
                None | Some("") => None,
                Some(name) => Some(OutputFormat::from_name(name).ok_or_else(|| {
                    RecipeError::UnknownFormat {
                        given: name.to_string(),
                    }
                })?),
            };
        let quality = match options.quality.map(str::trim) {
            None | Some("") => default_quality(format),
            Some(q) => q
                .parse::<u8>()
                .ok()
                .filter(|q| (1..=100).contains(q))
                .ok_or_else(|| RecipeError::InvalidQuality {
                    given: q.to_string(),
                })?,
        };
        let lossless = match options.lossless.map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(v) => match v.as_str() {
                "" | "false" | "0" | "no" => false,
                "true" | "1" | "yes" => true,
                _ => return Err(RecipeError::InvalidLossless { given: v }),
            },
        };
        Ok(Recipe {
            ops,
            format,
            quality,
            lossless,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops;

    fn parse(filter: Option<&str>, ops: Option<&str>) -> Result<Recipe, RecipeError> {
        let options = RecipeOptions {
            filter,
            ops,
            ..RecipeOptions::default()
        };
        Recipe::parse(&options, 50_000_000)
    }

    #[test]
    fn recipe_parsing() {
        let r = parse(Some("Sharpen"), None).expect("filter");
        assert_eq!(
            (r.ops.to_string(), r.format, r.quality),
            ("sharpen".to_string(), None, DEFAULT_JPEG_QUALITY)
        );
        let r = parse(None, Some("resize:64x64:fit,blur")).expect("chain");
        assert_eq!(r.ops.to_string(), "resize:64x64:fit:bicubic,blur");
        let options = RecipeOptions {
            filter: Some("blur"),
            format: Some("webp"),
            quality: Some("75"),
            ..RecipeOptions::default()
        };
        let r = Recipe::parse(&options, 100).expect("options");
        assert_eq!((r.format, r.quality), (Some(OutputFormat::Webp), 75));
        // Without a quality, Pillow's default for the format.
        for (format, quality) in [(Some("webp"), 80), (Some("jpeg"), 75), (None, 75)] {
            let options = RecipeOptions {
                filter: Some("blur"),
                format,
                ..RecipeOptions::default()
            };
            let r = Recipe::parse(&options, 100).expect("options");
            assert_eq!(r.quality, quality, "{format:?}");
        }
        assert!(matches!(parse(None, None), Err(RecipeError::MissingOps)));
        assert!(matches!(
            parse(Some(" "), Some("")),
            Err(RecipeError::MissingOps)
        ));
        assert!(matches!(
            parse(Some("blur"), Some("blur")),
            Err(RecipeError::FilterAndOps)
        ));
        assert!(matches!(
            parse(Some("sepia"), None),
            Err(RecipeError::InvalidOps {
                field: "filter",
                error: SpecError::Unknown { .. }
            })
        ));
        assert!(matches!(
            parse(None, Some("blur,median:2")),
            Err(RecipeError::InvalidOps {
                field: "ops",
                error: SpecError::BadArgument { op: "median", .. }
            })
        ));
        assert!(matches!(
            parse(None, Some("resize:20000x20000")),
            Err(RecipeError::OutputTooLarge(_))
        ));
        let bad_format = RecipeOptions {
            filter: Some("blur"),
            format: Some("gif"),
            ..RecipeOptions::default()
        };
        assert!(matches!(
            Recipe::parse(&bad_format, 100),
            Err(RecipeError::UnknownFormat { .. })
        ));
        for bad in ["0", "101", "abc", "-5"] {
            let options = RecipeOptions {
                filter: Some("blur"),
                quality: Some(bad),
                ..RecipeOptions::default()
            };
            assert!(
                matches!(
                    Recipe::parse(&options, 100),
                    Err(RecipeError::InvalidQuality { .. })
                ),
                "{bad}"
            );
        }
        let options = RecipeOptions {
            filter: Some("blur"),
            lossless: Some("maybe"),
            ..RecipeOptions::default()
        };
        assert!(matches!(
            Recipe::parse(&options, 100),
            Err(RecipeError::InvalidLossless { .. })
        ));
    }

    #[test]
    fn unknown_operation_message_lists_valid_names() {
        let msg = parse(Some("x"), None).expect_err("unknown").to_string();
        for name in ops::names() {
            assert!(msg.contains(name), "{msg}");
        }
    }
}
