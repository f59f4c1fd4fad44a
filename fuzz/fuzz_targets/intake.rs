//! Intake on arbitrary bytes: format sniffing, header and structure checks
//! (PNG IHDR, JPEG markers, RIFF, BMP, GIF, the TIFF chunk table and its
//! small-image decode). Must answer `Ok` or a `FileProblem`: never panic
//! past its guard, hang, or allocate beyond the fuzzer's memory limit.
#![no_main]

use std::io::Write;

use imgpipe::jobs::admission::{CostLimits, Pace, Quotas};
use imgpipe::jobs::intake::{inspect, Limits};
use libfuzzer_sys::fuzz_target;

#[path = "guarded.rs"]
mod guarded;

const LIMITS: Limits = Limits {
    max_file_bytes: 1 << 20,
    max_pixels: 4_000_000,
    max_files: 1,
    cost: CostLimits {
        max_seconds: 60,
        max_upscale: 16,
    },
    quota: Quotas {
        jobs_per_minute: 600,
        active_images: 10_000,
        stored_bytes: 1 << 30,
    },
    max_downloads: 1,
    max_downloads_per_tenant: 1,
    download_pace: Pace {
        timeout: std::time::Duration::from_secs(60),
        min_bytes_per_sec: 0,
        grace: std::time::Duration::from_secs(10),
    },
    queued_per_tenant: 4,
};

fuzz_target!(|data: &[u8]| {
    guarded::let_third_party_panics_reach_the_guard();
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(data).expect("write");
    if let Ok(inspected) = inspect(file.path(), &LIMITS) {
        assert!(inspected.width > 0 && inspected.height > 0);
        assert!(u64::from(inspected.width) * u64::from(inspected.height) <= LIMITS.max_pixels);
        assert_eq!(inspected.size_bytes, data.len() as u64);
    }
});
