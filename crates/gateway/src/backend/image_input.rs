//! Images in a service's input: `input.image_base64` (plain base64 or a `data:` URL) or
//! `input.image_url` as a `data:` URL, recognised by their first bytes. Everything here runs
//! before payment, so a missing, empty or undecodable image is a 400 that was not charged.

use base64::Engine;
use serde_json::Value;
use x402_paywall::Rejection;

use super::input::{bad, string_field};

/// What the bytes of an input file are, from their first bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A PNG image.
    Png,
    /// A JPEG image.
    Jpeg,
    /// A PDF document.
    Pdf,
}

impl FileKind {
    /// The kind of `bytes`, or `None` when it is none of these.
    pub fn sniff(bytes: &[u8]) -> Option<Self> {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(Self::Png)
        } else if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
            Some(Self::Jpeg)
        } else if bytes.starts_with(b"%PDF-") {
            Some(Self::Pdf)
        } else {
            None
        }
    }

    /// The image format, for raster kinds.
    pub fn image_format(self) -> Option<image::ImageFormat> {
        match self {
            Self::Png => Some(image::ImageFormat::Png),
            Self::Jpeg => Some(image::ImageFormat::Jpeg),
            Self::Pdf => None,
        }
    }
}

/// The fields an image may come in, base64 (or a `data:` URL).
const BASE64_FIELDS: [&str; 3] = ["image_base64", "image", "file_base64"];

/// The file in `input`: `image_base64` (or `image`, `file_base64`), or `image_url` as a
/// `data:` URL. Refused when absent, not base64, empty, or larger than `max_bytes`.
pub fn input_file(input: &Value, max_bytes: usize) -> Result<Vec<u8>, Rejection> {
    for field in BASE64_FIELDS {
        if let Some(encoded) = string_field(input, field)? {
            let data = match encoded.trim_start().strip_prefix("data:") {
                Some(url) => data_url_payload(url, field)?,
                None => encoded,
            };
            return decoded(field, data, max_bytes);
        }
    }
    if let Some(url) = string_field(input, "image_url")? {
        let Some(rest) = url.trim_start().strip_prefix("data:") else {
            return Err(bad(
                "input.image_url must be a data: URL (data:image/png;base64,…); this gateway does \
                 not fetch images from other hosts: send the file as input.image_base64",
            ));
        };
        let data = data_url_payload(rest, "image_url")?;
        return decoded("image_url", data, max_bytes);
    }
    Err(bad(
        "an image is required: input.image_base64 (a base64 PNG or JPEG) or input.image_url \
         (a data: URL)",
    ))
}

/// The base64 payload of a `data:` URL (what follows `data:`).
fn data_url_payload<'a>(url: &'a str, field: &str) -> Result<&'a str, Rejection> {
    let (meta, data) = url
        .split_once(',')
        .ok_or_else(|| bad(format!("input.{field} is a data: URL without a comma")))?;
    if !meta.ends_with(";base64") {
        return Err(bad(format!(
            "input.{field} must be a base64 data: URL (data:image/png;base64,…)"
        )));
    }
    Ok(data)
}

fn decoded(field: &str, data: &str, max_bytes: usize) -> Result<Vec<u8>, Rejection> {
    let data: String = data.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if data.is_empty() {
        return Err(bad(format!("input.{field} is empty: send an image")));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(&data)
        .map_err(|e| bad(format!("input.{field} is not valid base64: {e}")))?;
    if bytes.is_empty() {
        return Err(bad(format!("input.{field} is empty: send an image")));
    }
    if bytes.len() > max_bytes {
        return Err(bad(format!(
            "input.{field} is {} bytes; at most {max_bytes}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// The most pixels an input image may have.
pub const MAX_PIXELS: u64 = 40_000_000;

/// Decodes a PNG or JPEG fully (so that a truncated or corrupt file is refused before
/// payment), within [`MAX_PIXELS`].
pub fn decode_image(bytes: &[u8], kind: FileKind) -> Result<image::DynamicImage, Rejection> {
    let format = kind
        .image_format()
        .ok_or_else(|| bad("expected a PNG or JPEG image"))?;
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_PIXELS * 4);
    reader.limits(limits);
    let name = match kind {
        FileKind::Png => "PNG",
        _ => "JPEG",
    };
    let decoded = reader
        .decode()
        .map_err(|e| bad(format!("the image is not a readable {name}: {e}")))?;
    let (width, height) = (decoded.width(), decoded.height());
    if width == 0 || height == 0 {
        return Err(bad("the image has no pixels"));
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(bad(format!(
            "the image is {width}×{height}; at most {MAX_PIXELS} pixels"
        )));
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn png() -> Vec<u8> {
        let mut out = Vec::new();
        image::RgbImage::from_pixel(3, 2, image::Rgb([10, 20, 30]))
            .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn images_come_as_base64_or_data_urls() {
        let b64 = base64::engine::general_purpose::STANDARD.encode(png());
        for input in [
            json!({"image_base64": b64}),
            json!({"image_base64": format!("data:image/png;base64,{b64}")}),
            json!({"image_url": format!("data:image/png;base64,{b64}")}),
        ] {
            let bytes = input_file(&input, 1 << 20).unwrap();
            assert_eq!(FileKind::sniff(&bytes), Some(FileKind::Png));
            let image = decode_image(&bytes, FileKind::Png).unwrap();
            assert_eq!((image.width(), image.height()), (3, 2));
        }
    }

    #[test]
    fn missing_empty_remote_and_corrupt_images_are_refused_with_what_to_send() {
        for (input, says) in [
            (json!({}), "an image is required"),
            (json!({"image_base64": ""}), "is empty"),
            (
                json!({"image_base64": "data:image/png;base64,"}),
                "is empty",
            ),
            (json!({"image_base64": "%%%"}), "not valid base64"),
            (
                json!({"image_url": "https://example.com/a.png"}),
                "must be a data: URL",
            ),
            (
                json!({"image_url": "data:image/png,abc"}),
                "base64 data: URL",
            ),
            (json!({"image_base64": 7}), "must be a string"),
        ] {
            let refused = input_file(&input, 1 << 20).unwrap_err();
            assert!(
                format!("{refused:?}").contains(says),
                "{input}: {refused:?}"
            );
        }
        let mut truncated = png();
        truncated.truncate(truncated.len() - 20);
        let refused = decode_image(&truncated, FileKind::Png).unwrap_err();
        assert!(
            format!("{refused:?}").contains("not a readable PNG"),
            "{refused:?}"
        );
        assert_eq!(FileKind::sniff(b"GIF89a"), None);
    }
}
