//! Row streaming for chains whose every operation reads only a few rows
//! around each output row (the convolution kernels and grayscale): rows go
//! through in strips of whatever size the caller pushes, so that decode →
//! filter → encode stays in cache and no whole-image buffer exists. It must
//! give exactly the rows `Chain::apply` gives; it knows nothing of codecs.

use super::action::Action;
use super::grayscale;
use super::kernel::{Convolver, Kernel};
use super::Chain;

/// A chain turned into row stages for one image size and channel count.
pub struct RowStream {
    stages: Vec<(Stage, Vec<u8>)>,
    channels: usize,
}

/// One operation; each keeps the buffer of rows it last emitted.
enum Stage {
    Kernel(KernelStage),
    Luma { channels: usize },
}

/// A convolution over the rows pushed so far: it holds the input rows it
/// still needs (the radius above the next output row, and anything below).
struct KernelStage {
    conv: Convolver,
    radius: usize,
    stride: usize,
    height: usize,
    held: Vec<u8>,
    /// The input row index of `held`'s first row.
    first: usize,
    /// The next output row to emit.
    next: usize,
}

impl Chain {
    /// The chain as row stages for a `width` × `height` image with
    /// `channels` channels, or `None` if some operation needs the whole
    /// image (geometry, histograms, larger windows).
    pub fn row_stream(&self, width: usize, height: usize, channels: usize) -> Option<RowStream> {
        let mut stages = Vec::new();
        let mut ch = channels;
        for op in &self.0 {
            match op.action {
                // Pillow copies an image smaller than the kernel: no stage.
                Action::Kernel(k) if !k.fits(width, height) => {}
                Action::Kernel(k) => {
                    let stage = Stage::Kernel(KernelStage::new(k, width, height, ch));
                    stages.push((stage, Vec::new()));
                }
                Action::Grayscale => {
                    stages.push((Stage::Luma { channels: ch }, Vec::new()));
                    ch = 1;
                }
                _ => return None,
            }
        }
        Some(RowStream {
            stages,
            channels: ch,
        })
    }
}

impl RowStream {
    /// Channels of the rows this emits.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Takes the next whole input rows, top to bottom, and passes each batch
    /// of output rows that became ready to `sink`, in order. After the last
    /// input row, every output row has been passed on.
    pub fn push<E>(
        &mut self,
        rows: &[u8],
        sink: &mut dyn FnMut(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut current = rows;
        for (stage, out) in &mut self.stages {
            out.clear();
            stage.run(current, out);
            current = out;
        }
        if current.is_empty() {
            Ok(())
        } else {
            sink(current)
        }
    }
}

impl Stage {
    fn run(&mut self, input: &[u8], out: &mut Vec<u8>) {
        match self {
            Stage::Kernel(k) => k.run(input, out),
            Stage::Luma { channels } => {
                out.resize(input.len() / *channels, 0);
                grayscale::luma_into(input, *channels, out);
            }
        }
    }
}

impl KernelStage {
    fn new(kernel: &Kernel, width: usize, height: usize, channels: usize) -> KernelStage {
        KernelStage {
            conv: Convolver::new(kernel, channels),
            radius: kernel.radius(),
            stride: width * channels,
            height,
            held: Vec::new(),
            first: 0,
            next: 0,
        }
    }

    fn run(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.held.extend_from_slice(input);
        let received = self.first + self.held.len() / self.stride;
        let r = self.radius;
        while self.next < self.height {
            let y = self.next;
            // The outer ring is a copy of its own row; inside, the window
            // reaches `radius` rows down.
            let inside = y >= r && y + r < self.height;
            let last_needed = if inside { y + r } else { y };
            if last_needed >= received {
                break;
            }
            let start = out.len();
            out.resize(start + self.stride, 0);
            self.conv.row(
                &self.held,
                self.stride,
                y,
                self.height,
                y - self.first,
                &mut out[start..],
            );
            self.next += 1;
        }
        // Rows above `next - radius` are read by no later output row.
        let keep_from = self.next.saturating_sub(r).max(self.first);
        self.held.drain(..(keep_from - self.first) * self.stride);
        self.first = keep_from;
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;
    use crate::ops::raster::Raster;

    fn noise(width: usize, height: usize, channels: usize) -> Raster {
        let mut r = Raster::new(width, height, channels);
        let mut state = 0x9E37_79B9u32 ^ (width * 131 + height * 7 + channels) as u32;
        for v in &mut r.data {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            *v = (state >> 9) as u8;
        }
        r
    }

    /// Streams `img` through `chain` in strips of `strip` rows.
    fn streamed(chain: &Chain, img: &Raster, strip: usize) -> Option<Raster> {
        let mut stream = chain.row_stream(img.width, img.height, img.channels)?;
        let mut data = Vec::new();
        for rows in img.data.chunks(strip * img.stride()) {
            stream
                .push(rows, &mut |out: &[u8]| -> Result<(), ()> {
                    data.extend_from_slice(out);
                    Ok(())
                })
                .ok()?;
        }
        Some(Raster {
            width: img.width,
            height: img.height,
            channels: stream.channels(),
            data,
        })
    }

    #[test]
    fn streaming_gives_the_rows_the_whole_image_path_gives() {
        let chains = [
            "blur",
            "sharpen",
            "smooth_more",
            "detail",
            "grayscale",
            "grayscale,edges",
            "blur,emboss,smooth",
        ];
        for text in chains {
            let chain = Chain::from_str(text).unwrap();
            for (w, h, c) in [
                (37, 23, 3),
                (5, 5, 1),
                (4, 9, 4),
                (11, 2, 2),
                (1, 1, 3),
                (64, 40, 4),
            ] {
                let img = noise(w, h, c);
                let whole = Raster::from_dynamic(
                    chain.apply(img.clone().into_dynamic(), u64::MAX).unwrap(),
                );
                for strip in [1, 2, 3, 16, 1000] {
                    assert_eq!(
                        streamed(&chain, &img, strip),
                        Some(whole.clone()),
                        "{text} {w}x{h}x{c} strips of {strip}"
                    );
                }
            }
        }
    }

    #[test]
    fn whole_image_operations_are_not_streamed() {
        for text in [
            "resize:10x10",
            "blur,rotate:90",
            "median:3",
            "autocontrast",
            "gaussian_blur:2",
        ] {
            let chain = Chain::from_str(text).unwrap();
            assert!(chain.row_stream(20, 20, 3).is_none(), "{text}");
        }
    }
}
