//! `pipeline-bench`: one thread running decode → operations → encode over
//! image files held in memory, as a worker does, and printing images/s as one
//! JSON line. `scripts/compare.py` runs it beside Pillow and libvips on the
//! same files; it is a measuring tool, not part of the service.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use imgpipe::codec::{self, OutputFormat};
use imgpipe::ops::Chain;

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
    /// Keep going until this many seconds have passed (at least one pass over the files)
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Write each file's result here (first pass), to compare with other tools
    #[arg(long)]
    write_dir: Option<PathBuf>,
    files: Vec<PathBuf>,
}

#[derive(Default)]
struct Stages {
    decode: Duration,
    ops: Duration,
    encode: Duration,
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

    let mut stages = Stages::default();
    let (mut images, mut output_bytes) = (0u64, 0u64);
    let budget = Duration::from_secs_f64(args.seconds);
    let started = Instant::now();
    'passes: for pass in 0.. {
        for (input, path) in inputs.iter().zip(&args.files) {
            let t0 = Instant::now();
            let img = codec::decode(input, u64::MAX)?;
            let t1 = Instant::now();
            let out = args.ops.apply(img, u64::MAX)?;
            let t2 = Instant::now();
            let encoded = codec::encode(&out, format, args.quality, false)?;
            let t3 = Instant::now();
            stages.decode += t1 - t0;
            stages.ops += t2 - t1;
            stages.encode += t3 - t2;
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
    let per_image_ms = |d: Duration| d.as_secs_f64() * 1000.0 / images as f64;
    println!(
        "{{\"ops\":\"{}\",\"images\":{images},\"seconds\":{elapsed:.3},\"images_per_s\":{:.2},\"decode_ms\":{:.2},\"ops_ms\":{:.2},\"encode_ms\":{:.2},\"mean_output_bytes\":{}}}",
        args.ops,
        images as f64 / elapsed,
        per_image_ms(stages.decode),
        per_image_ms(stages.ops),
        per_image_ms(stages.encode),
        output_bytes / images,
    );
    Ok(())
}
