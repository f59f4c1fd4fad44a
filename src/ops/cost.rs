//! What each operation costs, estimated before any pixel is decoded: CPU
//! nanoseconds per pixel (of its input or output, whichever drives its
//! loops) on one core, so that a request can be refused at `POST` instead
//! of buying minutes of CPU. The factors were measured with
//! `pipeline-bench` on a 1080p image (see the README's "Admission" section
//! for the commands and figures); they err on the high side and are meant
//! to tell seconds from hours, not to predict milliseconds.

use super::action::Action;
use super::resample::Resample;
use super::Chain;

/// One operation's share of a chain's estimated cost.
#[derive(Debug, Clone, PartialEq)]
pub struct OpCost {
    /// The operation, in canonical form.
    pub op: String,
    pub seconds: f64,
    /// Output pixels ÷ input pixels (above 1: it enlarges the image).
    pub growth: f64,
}

impl Action {
    /// Estimated nanoseconds for a `w`×`h` input giving a `ow`×`oh` output.
    fn cost_ns(&self, w: usize, h: usize, ow: usize, oh: usize) -> f64 {
        let input = (w * h) as f64;
        let output = (ow * oh) as f64;
        match *self {
            Action::Kernel(k) if k.size <= 3 => 2.0 * output,
            Action::Kernel(_) => 12.0 * output,
            Action::Grayscale
            | Action::Invert
            | Action::Solarize(_)
            | Action::Posterize(_)
            | Action::Mirror
            | Action::Flip
            | Action::Crop { .. } => 1.5 * output,
            Action::Autocontrast(_) | Action::Equalize => 4.0 * input,
            Action::GaussianBlur(_) | Action::UnsharpMask { .. } => 25.0 * input,
            Action::BoxBlur(_) => 8.0 * input,
            // Sliding histograms: a column of `size` samples enters and
            // leaves per pixel.
            Action::Rank(size, _) => (22.0 + 5.0 * size as f64) * input,
            // Today's mode filter scans its 256 bins for every sample.
            Action::Mode(size) => (300.0 + 8.0 * size as f64) * input,
            Action::Rotate(_, resample) => {
                let per_pixel = match resample {
                    Resample::Nearest => 4.0,
                    Resample::Bilinear => 18.0,
                    _ => 55.0,
                };
                per_pixel * output.max(input)
            }
            Action::Resize { resample, .. } | Action::Thumbnail { resample, .. } => {
                let per_pixel = if resample == Resample::Nearest {
                    1.5
                } else {
                    7.0
                };
                per_pixel * (input + output)
            }
        }
    }
}

impl Chain {
    /// Each operation's estimated cost and growth for a `w`×`h` input.
    pub fn costs(&self, w: usize, h: usize) -> Vec<OpCost> {
        let mut size = (w, h);
        self.ops()
            .iter()
            .map(|op| {
                let (ow, oh) = op.action.output_size(size.0, size.1);
                let ns = op.action.cost_ns(size.0, size.1, ow, oh);
                let growth = (ow * oh) as f64 / ((size.0 * size.1).max(1)) as f64;
                size = (ow, oh);
                OpCost {
                    op: op.to_string(),
                    seconds: ns / 1e9,
                    growth,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(text: &str) -> Chain {
        text.parse().unwrap()
    }

    #[test]
    fn a_tiny_image_made_huge_then_mode_filtered_costs_minutes() {
        let costs = chain("resize:7071x7071,mode:25").costs(1, 1);
        assert!(costs[0].growth > 49_000_000.0, "{costs:?}");
        assert!(costs[1].seconds > 15.0, "{costs:?}");
    }

    #[test]
    fn ordinary_work_on_a_photo_costs_a_fraction_of_a_second() {
        let total: f64 = chain("resize:1280x720:fit,sharpen,grayscale")
            .costs(4000, 3000)
            .iter()
            .map(|c| c.seconds)
            .sum();
        assert!(total < 0.5, "{total}");
        let blur: f64 = chain("blur").costs(1920, 1080)[0].seconds;
        assert!(blur < 0.05, "{blur}");
    }

    #[test]
    fn growth_follows_the_sizes() {
        let costs = chain("crop:0,0,10,10,resize:40x40,rotate:90").costs(100, 100);
        let growth: Vec<f64> = costs.iter().map(|c| c.growth).collect();
        assert_eq!(growth, vec![0.01, 16.0, 1.0]);
    }
}
