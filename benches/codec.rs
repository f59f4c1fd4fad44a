//! Criterion benches for decoding and encoding each format on 1080p and
//! 24 MP photo-like images: `cargo bench --bench codec`. These bound every
//! pipeline from below; JPEG goes through libjpeg-turbo (SIMD when nasm was
//! present at build time).

mod common;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use imgpipe::codec::{self, OutputFormat};

fn codecs(c: &mut Criterion) {
    imgpipe::memory::tune_allocator();
    for (label, width, height) in common::sizes() {
        let img = common::photo_like(width, height);
        let mut group = c.benchmark_group(format!("codec/{label}"));
        group.sample_size(if width * height > 4_000_000 { 10 } else { 20 });
        group.throughput(Throughput::Elements(u64::from(width * height)));
        let cases = [
            ("jpeg q75", OutputFormat::Jpeg, 75, false),
            ("jpeg q90", OutputFormat::Jpeg, 90, false),
            ("png", OutputFormat::Png, 0, false),
            ("webp q75", OutputFormat::Webp, 75, false),
        ];
        for (name, format, quality, lossless) in cases {
            let encoded = match codec::encode(&img, format, quality, lossless) {
                Ok(bytes) => bytes,
                Err(e) => panic!("{name}: {e}"),
            };
            group.bench_function(format!("encode {name}"), |b| {
                b.iter(|| codec::encode(&img, format, quality, lossless))
            });
            group.bench_function(format!("decode {name}"), |b| {
                b.iter(|| codec::decode(&encoded, u64::MAX))
            });
        }
        group.finish();
    }
}

criterion_group!(benches, codecs);
criterion_main!(benches);
