//! Criterion benches for every kind of operation on 1080p and 24 MP RGB
//! images: `cargo bench --bench ops`. The pixels are in memory; decode and
//! encode are in `codec`. Operations that split rows across threads use the
//! whole rayon pool here (set RAYON_NUM_THREADS=1 for one core).

mod common;

use std::str::FromStr;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use imgpipe::ops::Chain;

const OPS: &[&str] = &[
    "blur",
    "sharpen",
    "smooth",
    "edges",
    "smooth_more",
    "grayscale",
    "gaussian_blur:4",
    "unsharp_mask",
    "median:3",
    "autocontrast",
    "resize:960x540",
    "thumbnail:256x256",
    "rotate:90",
    "rotate:15:bicubic",
];

fn ops(c: &mut Criterion) {
    imgpipe::memory::tune_allocator();
    for (label, width, height) in common::sizes() {
        let img = common::photo_like(width, height);
        let mut group = c.benchmark_group(format!("ops/{label}"));
        group.sample_size(if width * height > 4_000_000 { 10 } else { 30 });
        group.throughput(Throughput::Elements(u64::from(width * height)));
        for text in OPS {
            let chain = match Chain::from_str(text) {
                Ok(chain) => chain,
                Err(e) => panic!("{text}: {e}"),
            };
            group.bench_function(*text, |b| {
                b.iter_batched(
                    || img.clone(),
                    |input| chain.apply(input, u64::MAX),
                    BatchSize::LargeInput,
                )
            });
        }
        group.finish();
    }
}

criterion_group!(benches, ops);
criterion_main!(benches);
