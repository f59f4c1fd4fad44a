//! Cost admission: whether one image's work, estimated from its header size
//! and the recipe before the job is recorded, stays within the service's
//! limits. A 70-byte PNG must not buy an hour of CPU. Pure: the estimate
//! comes from `ops` (per operation) and the codec factors below.

use crate::codec::OutputFormat;
use crate::jobs::Recipe;
use crate::ops::OpCost;

/// The limits, from configuration (IMGPIPE_MAX_IMAGE_COST, IMGPIPE_MAX_UPSCALE).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CostLimits {
    /// Estimated CPU seconds one image may take (decode, operations, encode).
    pub max_seconds: u64,
    /// How many times its input's pixel count one operation may output.
    pub max_upscale: u64,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TooCostly {
    #[error("{op} would enlarge the image {growth:.0}× in pixels, over the limit of {limit}× (IMGPIPE_MAX_UPSCALE)")]
    Upscale { op: String, growth: f64, limit: u64 },
    #[error("processing it would take about {seconds:.0} s of CPU, over the limit of {limit} s (IMGPIPE_MAX_IMAGE_COST); {op} alone about {op_seconds:.0} s")]
    Cost {
        seconds: f64,
        limit: u64,
        /// The costliest step: an operation, or `encoding as png`.
        op: String,
        op_seconds: f64,
    },
}

impl TooCostly {
    /// The operation that makes the chain costly, if it is one.
    pub fn op(&self) -> Option<&str> {
        match self {
            TooCostly::Upscale { op, .. } => Some(op),
            TooCostly::Cost { op, .. } if !op.starts_with("encoding") => Some(op),
            TooCostly::Cost { .. } => None,
        }
    }
}

/// Decoding, per input pixel.
const DECODE_NS: f64 = 30.0;

/// Encoding, per output pixel: PNG at zlib level 6 (the default) dominates
/// everything else a typical chain does.
fn encode_ns(format: OutputFormat, lossless: bool) -> f64 {
    match format {
        OutputFormat::Jpeg => 4.0,
        OutputFormat::Png => 240.0,
        OutputFormat::Webp if lossless => 300.0,
        OutputFormat::Webp => 110.0,
    }
}

/// Checks one image of `width`×`height` (from its header) going through the
/// recipe into `format`. `Ok` carries the estimate in seconds.
pub fn admit(
    recipe: &Recipe,
    format: OutputFormat,
    width: u32,
    height: u32,
    limits: CostLimits,
) -> Result<f64, TooCostly> {
    let (w, h) = (width as usize, height as usize);
    let costs = recipe.ops.costs(w, h);
    if let Some(c) = costs.iter().find(|c| c.growth > limits.max_upscale as f64) {
        return Err(TooCostly::Upscale {
            op: c.op.clone(),
            growth: c.growth,
            limit: limits.max_upscale,
        });
    }
    let (ow, oh) = recipe.ops.output_size(w, h);
    check_total(
        recipe,
        format,
        (w * h) as f64,
        (ow * oh) as f64,
        costs,
        limits,
    )
}

/// The part of the check that needs no image: a chain whose operations
/// after a fixed-size step already cost too much is refused before the
/// upload is read (`1×1` stands for the smallest input).
pub fn admit_chain(recipe: &Recipe, limits: CostLimits) -> Result<f64, TooCostly> {
    let costs = recipe.ops.costs(1, 1);
    let (ow, oh) = recipe.ops.output_size(1, 1);
    let format = recipe.format.unwrap_or(OutputFormat::Jpeg);
    check_total(recipe, format, 1.0, (ow * oh) as f64, costs, limits)
}

fn check_total(
    recipe: &Recipe,
    format: OutputFormat,
    input_pixels: f64,
    output_pixels: f64,
    mut costs: Vec<OpCost>,
    limits: CostLimits,
) -> Result<f64, TooCostly> {
    costs.push(OpCost {
        op: format!("encoding as {}", format.extension()),
        seconds: encode_ns(format, recipe.lossless) * output_pixels / 1e9,
        growth: 1.0,
    });
    let seconds = DECODE_NS * input_pixels / 1e9 + costs.iter().map(|c| c.seconds).sum::<f64>();
    if seconds <= limits.max_seconds as f64 {
        return Ok(seconds);
    }
    let worst = costs
        .into_iter()
        .max_by(|a, b| a.seconds.total_cmp(&b.seconds))
        .unwrap_or(OpCost {
            op: "decoding".into(),
            seconds,
            growth: 1.0,
        });
    Err(TooCostly::Cost {
        seconds,
        limit: limits.max_seconds,
        op: worst.op,
        op_seconds: worst.seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::RecipeOptions;

    const LIMITS: CostLimits = CostLimits {
        max_seconds: 60,
        max_upscale: 16,
    };

    fn recipe(ops: &str, format: Option<&str>) -> Recipe {
        Recipe::parse(
            &RecipeOptions {
                ops: Some(ops),
                format,
                ..Default::default()
            },
            50_000_000,
        )
        .unwrap()
    }

    #[test]
    fn a_tiny_file_cannot_buy_an_hour_of_cpu() {
        let bomb = recipe("resize:7071x7071,mode:25,mode:25,mode:25", Some("png"));
        let refused = admit(&bomb, OutputFormat::Png, 1, 1, LIMITS).unwrap_err();
        assert!(matches!(refused, TooCostly::Upscale { .. }), "{refused}");
        assert_eq!(refused.op(), Some("resize:7071x7071:exact:bicubic"));
        // Even before the upload is read: the chain alone is too costly.
        let early = admit_chain(&bomb, LIMITS).unwrap_err();
        assert!(matches!(early, TooCostly::Cost { .. }), "{early}");
        assert!(
            early.op().is_some_and(|op| op.starts_with("mode:25")),
            "{early}"
        );
        assert!(early.to_string().contains("IMGPIPE_MAX_IMAGE_COST"));
    }

    #[test]
    fn ordinary_photos_pass() {
        for (ops, w, h) in [
            ("blur", 6000, 4000),
            ("resize:1280x720:fit,sharpen", 8000, 6000),
            ("median:9,unsharp_mask", 4000, 3000),
            ("thumbnail:256x256", 7071, 7071),
        ] {
            let r = recipe(ops, None);
            let secs = admit(&r, OutputFormat::Png, w, h, LIMITS).unwrap();
            assert!(secs < 30.0, "{ops}: {secs}");
            assert!(admit_chain(&r, LIMITS).is_ok());
        }
    }

    #[test]
    fn upscaling_is_capped_per_operation() {
        let r = recipe("resize:400x400", None);
        assert!(
            admit(&r, OutputFormat::Jpeg, 100, 100, LIMITS).is_ok(),
            "16×"
        );
        let e = admit(&r, OutputFormat::Jpeg, 99, 100, LIMITS).unwrap_err();
        assert!(e.to_string().contains("IMGPIPE_MAX_UPSCALE"), "{e}");
    }

    #[test]
    fn a_huge_png_output_is_its_own_cost() {
        let r = recipe("flip", Some("png"));
        let e = admit(
            &r,
            OutputFormat::Png,
            7071,
            7071,
            CostLimits {
                max_seconds: 5,
                max_upscale: 16,
            },
        )
        .unwrap_err();
        assert_eq!(e.op(), None, "the encoder, not an operation: {e}");
        assert!(e.to_string().contains("encoding as png"), "{e}");
    }
}

/// What one tenant may use: submissions per minute (counted per tenant or,
/// in open mode, per client address, in fixed one-minute windows), images
/// queued or running at once and bytes stored (over its live jobs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quotas {
    pub jobs_per_minute: u64,
    pub active_images: u64,
    pub stored_bytes: u64,
}

impl Quotas {
    /// These (the server's defaults), overridden by a key's own settings.
    pub fn with(self, own: &crate::auth::QuotaSettings) -> Quotas {
        Quotas {
            jobs_per_minute: own.jobs_per_minute.unwrap_or(self.jobs_per_minute),
            active_images: own.active_images.unwrap_or(self.active_images),
            stored_bytes: own.stored_bytes.unwrap_or(self.stored_bytes),
        }
    }
}

/// Whether `adding` more (images, bytes) fit in a quota of `limit` with
/// `used` in use. A job is admitted whole or not at all.
pub fn fits(used: u64, adding: u64, limit: u64) -> bool {
    used.checked_add(adding).is_some_and(|total| total <= limit)
}

/// How long a client refused for active images is asked to wait: images
/// finish in seconds, and polling faster only adds load.
pub const ACTIVE_IMAGES_RETRY_AFTER_SECS: u64 = 10;
/// How long a client refused for bytes stored is asked to wait: space comes
/// back when its jobs are deleted or expire, so this is only a polling pace.
pub const STORED_BYTES_RETRY_AFTER_SECS: u64 = 60;

/// One quota window: when it started (Unix ms) and how long until the next.
pub fn minute_window(now_ms: i64) -> (i64, u64) {
    let start = now_ms - now_ms.rem_euclid(60_000);
    let left_ms = start + 60_000 - now_ms;
    (start, u64::try_from((left_ms + 999) / 1000).unwrap_or(60))
}

/// How a transfer must progress: an upload (IMGPIPE_UPLOAD_TIMEOUT_SECS,
/// IMGPIPE_MIN_UPLOAD_BYTES_PER_SEC) or a download (IMGPIPE_DOWNLOAD_…). A
/// client too slow to finish holds a connection, disk or a thread for nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    pub timeout: std::time::Duration,
    pub min_bytes_per_sec: u64,
    /// The rate is judged only after this long (TCP slow start, a client's
    /// first file read).
    pub grace: std::time::Duration,
}

/// Why a transfer was cut.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooSlow {
    #[error("took longer than {0} s")]
    Deadline(u64),
    #[error("went at {rate} bytes/s, under the minimum of {min} bytes/s")]
    Rate { rate: u64, min: u64 },
}

impl Pace {
    /// How much longer a transfer that has moved `bytes` after `elapsed`
    /// may wait for its next bytes before `check` would fail it.
    pub fn patience(&self, bytes: u64, elapsed: std::time::Duration) -> std::time::Duration {
        let mut until = self.timeout;
        if self.min_bytes_per_sec > 0 {
            let earned =
                std::time::Duration::from_secs_f64(bytes as f64 / self.min_bytes_per_sec as f64);
            until = until.min(earned.max(self.grace));
        }
        until.saturating_sub(elapsed)
    }

    /// Whether a transfer that has moved `bytes` after `elapsed` may go on.
    pub fn check(&self, bytes: u64, elapsed: std::time::Duration) -> Result<(), TooSlow> {
        if elapsed >= self.timeout {
            return Err(TooSlow::Deadline(self.timeout.as_secs()));
        }
        if elapsed >= self.grace && self.min_bytes_per_sec > 0 {
            let rate = (bytes as f64 / elapsed.as_secs_f64()) as u64;
            if rate < self.min_bytes_per_sec {
                return Err(TooSlow::Rate {
                    rate,
                    min: self.min_bytes_per_sec,
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod pace_tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn windows_are_whole_minutes_and_say_when_the_next_begins() {
        assert_eq!(minute_window(120_000), (120_000, 60));
        assert_eq!(minute_window(179_001), (120_000, 1));
        assert_eq!(minute_window(150_500), (120_000, 30));
    }

    #[test]
    fn slow_uploads_are_cut_after_the_grace_and_long_ones_at_the_deadline() {
        let pace = Pace {
            timeout: Duration::from_secs(60),
            min_bytes_per_sec: 10_000,
            grace: Duration::from_secs(5),
        };
        assert_eq!(
            pace.check(0, Duration::from_secs(4)),
            Ok(()),
            "in the grace"
        );
        assert_eq!(
            pace.check(20_000, Duration::from_secs(10)),
            Err(TooSlow::Rate {
                rate: 2_000,
                min: 10_000
            })
        );
        assert_eq!(pace.check(200_000, Duration::from_secs(10)), Ok(()));
        assert_eq!(
            pace.check(u64::MAX, Duration::from_secs(60)),
            Err(TooSlow::Deadline(60))
        );
        // A stalled transfer may wait until its average would fall too low.
        assert_eq!(
            pace.patience(100_000, Duration::from_secs(4)),
            Duration::from_secs(6)
        );
        assert_eq!(
            pace.patience(0, Duration::from_secs(1)),
            Duration::from_secs(4)
        );
        assert_eq!(
            pace.patience(u64::MAX, Duration::from_secs(50)),
            Duration::from_secs(10),
            "never past the deadline"
        );
    }
}

#[cfg(test)]
mod quota_tests {
    use super::*;
    use crate::auth::QuotaSettings;

    #[test]
    fn a_keys_own_settings_override_the_defaults() {
        let defaults = Quotas {
            jobs_per_minute: 600,
            active_images: 10_000,
            stored_bytes: 1 << 30,
        };
        assert_eq!(defaults.with(&QuotaSettings::default()), defaults);
        let own = QuotaSettings {
            active_images: Some(5),
            ..QuotaSettings::default()
        };
        assert_eq!(
            defaults.with(&own),
            Quotas {
                active_images: 5,
                ..defaults
            }
        );
    }

    #[test]
    fn a_job_fits_whole_or_not_at_all() {
        assert!(fits(0, 100, 100));
        assert!(!fits(1, 100, 100));
        assert!(fits(99, 1, 100));
        assert!(!fits(100, 1, 100));
        assert!(!fits(u64::MAX, 1, u64::MAX), "no overflow");
    }
}
