//! OCR with tesseract reads back a line of text rendered in the test: from a PNG, the same
//! page as a JPEG, and a one-page PDF (rendered by pdftoppm inside the backend), with a box
//! for the line where the text is.

mod common;

use common::{base64_of, one_page_pdf, render_png};
use serde_json::{Value, json};
use x402_gateway::GatewayLimits;
use x402_gateway::backend::ocr::{OcrJob, Tesseract};

const LINE: &str = "Invoices settle in USDC within two seconds";

/// `text` in lower case with its whitespace collapsed.
fn normalized(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase()
}

async fn read(ocr: &Tesseract, input: Value) -> (OcrJob, Value) {
    let job = OcrJob::prepare(&input, &Ok(ocr.clone()), &GatewayLimits::default())
        .expect("the input is accepted");
    let output = job.run(ocr).await.expect("tesseract reads it");
    (job, output)
}

fn assert_reads_the_line(output: &Value) {
    let text = output["text"].as_str().unwrap();
    assert!(
        normalized(text).contains(&normalized(LINE)),
        "read {text:?}, expected {LINE:?}"
    );
    let page = &output["pages"][0];
    let (width, height) = (
        page["width"].as_u64().unwrap(),
        page["height"].as_u64().unwrap(),
    );
    let line = page["lines"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| normalized(l["text"].as_str().unwrap()).contains("usdc"))
        .expect("a line with the text");
    let bounds = &line["box"];
    let (x, y) = (bounds["x"].as_u64().unwrap(), bounds["y"].as_u64().unwrap());
    let (w, h) = (
        bounds["width"].as_u64().unwrap(),
        bounds["height"].as_u64().unwrap(),
    );
    // 28-point text at 700 pt from the bottom of an 842-pt page: near the top, left third.
    assert!(
        x + w <= width && y + h <= height,
        "{line} in {width}×{height}"
    );
    assert!(x < width / 4 && w > width / 2, "{line} in {width}×{height}");
    assert!(
        y < height / 4 && h > height / 100,
        "{line} in {width}×{height}"
    );
    assert!(line["confidence"].as_f64().unwrap() > 60.0, "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ocr_reads_a_rendered_line_from_a_png_a_jpeg_and_a_pdf() {
    let ocr = Tesseract::detect()
        .await
        .expect("tesseract and pdftoppm are installed by scripts/install-system-deps.sh");
    assert!(
        ocr.languages().iter().any(|l| l == "eng"),
        "{:?}",
        ocr.languages()
    );
    let pdf = one_page_pdf(LINE);
    let png = render_png(&pdf);

    let (job, output) = read(&ocr, json!({"image_base64": base64_of(&png)})).await;
    assert_eq!(job.pages, 1);
    assert_reads_the_line(&output);

    let mut jpeg = Vec::new();
    image::load_from_memory(&png)
        .unwrap()
        .to_rgb8()
        .write_to(
            &mut std::io::Cursor::new(&mut jpeg),
            image::ImageFormat::Jpeg,
        )
        .unwrap();
    let url = format!("data:image/jpeg;base64,{}", base64_of(&jpeg));
    let (_, output) = read(&ocr, json!({"image_url": url, "language": "en"})).await;
    assert_reads_the_line(&output);

    let (job, output) = read(&ocr, json!({"file_base64": base64_of(&pdf)})).await;
    assert_eq!(job.pages, 1, "a PDF is billed by its pages");
    assert_eq!(output["page_count"], 1);
    assert_reads_the_line(&output);
}

#[tokio::test]
async fn unreadable_images_and_missing_languages_are_refused_before_work() {
    let ocr = Tesseract::detect().await.expect("tesseract is installed");
    let limits = GatewayLimits::default();
    let mut truncated = render_png(&one_page_pdf(LINE));
    truncated.truncate(truncated.len() / 2);
    for (input, says) in [
        (json!({"image_base64": ""}), "is empty"),
        (
            json!({"image_base64": base64_of(&truncated)}),
            "not a readable PNG",
        ),
        (
            json!({"image_base64": base64_of(b"GIF89a....")}),
            "not a PNG, JPEG or PDF",
        ),
        (
            json!({"file_base64": base64_of(b"%PDF-1.4 broken")}),
            "not a readable PDF",
        ),
        (
            json!({"image_base64": base64_of(&truncated), "language": "klingon"}),
            "not installed here",
        ),
    ] {
        let refused = OcrJob::prepare(&input, &Ok(ocr.clone()), &limits).unwrap_err();
        assert!(format!("{refused:?}").contains(says), "{says}: {refused:?}");
    }
}
