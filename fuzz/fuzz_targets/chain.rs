//! The `ops` chain parser and what depends on it: arbitrary text parses or
//! is refused, never panics; a parsed chain prints in a canonical form that
//! parses back to the same chain; its cost estimate, peak pixels and
//! admission at any input size never panic or overflow.
#![no_main]

use imgpipe::codec::OutputFormat;
use imgpipe::jobs::admission::{admit, CostLimits};
use imgpipe::jobs::{Recipe, RecipeOptions};
use imgpipe::ops::Chain;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&size, text)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(text) else {
        return;
    };
    if let Ok(chain) = text.parse::<Chain>() {
        let canonical = chain.to_string();
        let again: Chain = canonical.parse().expect("a printed chain parses again");
        assert_eq!(again, chain, "{canonical}");
    }
    let options = RecipeOptions {
        ops: Some(text),
        ..RecipeOptions::default()
    };
    if let Ok(recipe) = Recipe::parse(&options, 50_000_000) {
        // Input sizes from 1×1 to the largest accepted, by the first byte.
        let side = 1u32 << (size % 14);
        let (w, h) = (side, (side / 3).max(1));
        let _ = recipe.ops.peak_pixels(w as usize, h as usize);
        let limits = CostLimits {
            max_seconds: 60,
            max_upscale: 16,
        };
        for format in [OutputFormat::Jpeg, OutputFormat::Png, OutputFormat::Webp] {
            let _ = admit(&recipe, format, w, h, limits);
        }
    }
});
