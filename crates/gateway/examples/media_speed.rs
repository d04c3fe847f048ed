//! How fast the local OCR, image-safety and natural-speech backends are on this machine:
//! tesseract seconds per page (a PDF page rendered at 200 dpi, and the same page as a PNG),
//! open_nsfw milliseconds per image, and Piper characters per second (espeak-ng phonemes plus
//! synthesis), with load times and the process's resident memory. Runs the same code the
//! gateway serves with.
//!
//! `cargo run --release -p x402-gateway --example media_speed -- [models_dir] [runs]`

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use base64::Engine;
use serde_json::json;
use x402_gateway::GatewayLimits;
use x402_gateway::backend::nsfw::{self, NsfwJob, OpenNsfw};
use x402_gateway::backend::ocr::{OcrJob, Tesseract};
use x402_gateway::backend::onnx;
use x402_gateway::backend::piper::{self, PiperVoice};

const PARAGRAPH: &str = "The gateway sells inference by the call. An agent asks for a service, \
    reads the price in the payment request, signs a transfer of a few micro-dollars, and sends \
    the request again with its signature. The facilitator checks the signature, settles it on \
    chain, and the gateway answers with the result and a receipt. Nothing is charged twice, and \
    nothing paid for goes unanswered.";

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let models = PathBuf::from(args.next().unwrap_or_else(|| "models".into()));
    let runs: usize = args.next().map_or(Ok(3), |r| r.parse())?;
    let limits = GatewayLimits::default();
    let testdata = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata");
    println!("rss at start: {:.0} MB", rss_mb());

    // OCR: a one-page invoice PDF, and its page as a 150-dpi PNG.
    let ocr = Tesseract::detect().await?;
    let pdf = std::fs::read(testdata.join("hello.pdf"))?;
    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("in.pdf"), &pdf)?;
    std::process::Command::new("pdftoppm")
        .args(["-r", "150", "-png", "-singlefile"])
        .arg(dir.path().join("in.pdf"))
        .arg(dir.path().join("page"))
        .status()?;
    let png = std::fs::read(dir.path().join("page.png"))?;
    for (what, input) in [
        (
            "PDF page (200 dpi render + OCR)",
            json!({"file_base64": b64(&pdf)}),
        ),
        ("PNG page (150 dpi)", json!({"image_base64": b64(&png)})),
    ] {
        let job = OcrJob::prepare(&input, &Ok(ocr.clone()), &limits)
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        let mut seconds = Vec::new();
        for _ in 0..runs {
            let started = Instant::now();
            let output = job.run(&ocr).await?;
            seconds.push(started.elapsed().as_secs_f64() / job.pages as f64);
            assert!(
                output["text"]
                    .as_str()
                    .unwrap_or_default()
                    .contains("Invoice")
            );
        }
        println!("ocr {what}: {:.2?} s per page ({})", seconds, ocr.version());
    }

    // Image safety.
    let library = onnx::library_path(None, &models);
    let started = Instant::now();
    let model =
        OpenNsfw::load(&library, &models.join(nsfw::MODEL_FILE)).map_err(anyhow::Error::msg)?;
    println!("nsfw load: {:.2} s", started.elapsed().as_secs_f64());
    let job = NsfwJob::prepare(&json!({"image_base64": b64(&png)}), &limits)
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    job.run(&model)?;
    let started = Instant::now();
    let n = runs * 10;
    for _ in 0..n {
        job.run(&model)?;
    }
    println!(
        "nsfw: {:.1} ms per image (preprocessing included, {n} runs); score of the page {}",
        started.elapsed().as_secs_f64() * 1000.0 / n as f64,
        job.run(&model)?["nsfw_score"]
    );

    // Natural speech.
    let started = Instant::now();
    let voice = Arc::new(
        PiperVoice::load(&library, &models.join(piper::VOICE_FILE)).map_err(anyhow::Error::msg)?,
    );
    println!("piper load: {:.2} s", started.elapsed().as_secs_f64());
    let chars = PARAGRAPH.chars().count();
    for _ in 0..runs {
        let started = Instant::now();
        let ids = voice.phoneme_ids("espeak-ng", PARAGRAPH).await?;
        let phonemised = started.elapsed().as_secs_f64();
        let rendering = voice.synthesize(&ids, 1.0)?;
        let total = started.elapsed().as_secs_f64();
        println!(
            "piper: {chars} characters in {total:.2} s ({:.0} characters/s; phonemes {phonemised:.2} s), \
             {:.1} s of audio (real-time factor {:.3})",
            chars as f64 / total,
            rendering.duration_seconds(),
            total / rendering.duration_seconds()
        );
    }
    println!(
        "rss with tesseract (subprocess), open_nsfw and Piper loaded: {:.0} MB",
        rss_mb()
    );
    Ok(())
}
