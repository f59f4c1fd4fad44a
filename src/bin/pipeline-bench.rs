//! `pipeline-bench`: one thread rendering image files held in memory
//! (decode → operations → encode, `imgpipe::render`) exactly as a worker does, and printing images/s as one
//! JSON line. `scripts/compare.py` runs it beside Pillow and libvips on the
//! same files; it is a measuring tool, not part of the service.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use imgpipe::codec::{OutputFormat, PngCompression};
use imgpipe::ops::Chain;
use imgpipe::render;

#[derive(Debug, Parser)]
#[command(about = "Time imgpipe's single-thread decode → ops → encode on image files")]
struct Args {
    /// Operations, in the API's `ops=` grammar
    #[arg(long)]
    ops: Chain,
    /// Output format: jpeg, png or webp
    #[arg(long, default_value = "jpeg")]
    format: String,
    #[arg(long, default_value_t = 75)]
    quality: u8,
    /// PNG compression, as IMGPIPE_PNG_COMPRESSION
    #[arg(long, default_value = "6")]
    png_compression: PngCompression,
    /// Keep going until this many seconds have passed (at least one pass over the files)
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Write each file's result here (first pass), to compare with other tools
    #[arg(long)]
    write_dir: Option<PathBuf>,
    files: Vec<PathBuf>,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    imgpipe::memory::tune_allocator();
    let args = Args::parse();
    if args.files.is_empty() {
        return Err("no image files given".into());
    }
    let format = OutputFormat::from_name(&args.format)
        .ok_or_else(|| format!("unknown format {:?}", args.format))?;
    // Single thread means single thread: operations that split rows across
    // rayon get a pool of one.
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build_global()?;
    let inputs = args
        .files
        .iter()
        .map(|p| std::fs::read(p).map_err(|e| format!("{}: {e}", p.display())))
        .collect::<Result<Vec<_>, _>>()?;

    let output = render::Output {
        ops: &args.ops,
        format,
        quality: args.quality,
        lossless: false,
        png: args.png_compression,
    };
    let (mut images, mut output_bytes) = (0u64, 0u64);
    let budget = Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    'passes: for pass in 0.. {
        for (input, path) in inputs.iter().zip(&args.files) {
            let encoded = render::render(input, output, u64::MAX)?;
            images += 1;
            output_bytes += encoded.len() as u64;
            if pass == 0 {
                if let Some(dir) = &args.write_dir {
                    let name = path.file_stem().unwrap_or_default().to_string_lossy();
                    let file = dir.join(format!("{name}.{}", format.extension()));
                    std::fs::write(&file, &encoded)
                        .map_err(|e| format!("{}: {e}", file.display()))?;
                }
            }
        }
        if started.elapsed() >= budget {
            break 'passes;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "{{\"ops\":\"{}\",\"images\":{images},\"seconds\":{elapsed:.3},\"images_per_s\":{:.2},\"ms_per_image\":{:.2},\"mean_output_bytes\":{}}}",
        args.ops,
        images as f64 / elapsed,
        elapsed * 1000.0 / images as f64,
        output_bytes / images,
    );
    Ok(())
}
