//! Image safety: Yahoo's open_nsfw, run by ONNX Runtime from the installed library, scores a
//! neutral picture low and labels it safe; the threshold a request sets decides the label.

mod common;

use common::{base64_of, models_dir, neutral_png};
use serde_json::json;
use x402_gateway::GatewayLimits;
use x402_gateway::backend::nsfw::{self, NsfwJob, OpenNsfw};
use x402_gateway::backend::onnx;

#[test]
fn a_neutral_picture_scores_low_and_is_labelled_safe() {
    let dir = models_dir();
    let library = onnx::library_path(None, &dir);
    let model = OpenNsfw::load(&library, &dir.join(nsfw::MODEL_FILE))
        .expect("open_nsfw and ONNX Runtime are installed by scripts/install-models.sh");
    let limits = GatewayLimits::default();

    let job = NsfwJob::prepare(&json!({"image_base64": base64_of(&neutral_png())}), &limits)
        .expect("a PNG is accepted");
    let output = job.run(&model).unwrap();
    let score = output["nsfw_score"].as_f64().unwrap();
    assert!((0.0..0.2).contains(&score), "{output}");
    assert_eq!(output["label"], "sfw", "{output}");
    assert_eq!(output["is_nsfw"], false, "{output}");
    assert!((output["sfw_score"].as_f64().unwrap() + score - 1.0).abs() < 1e-3);

    // The same picture with a threshold below its score is labelled nsfw: the label follows
    // the score, not a constant.
    let strict = NsfwJob::prepare(
        &json!({"image_base64": base64_of(&neutral_png()), "threshold": 0.0}),
        &limits,
    )
    .unwrap();
    assert_eq!(strict.run(&model).unwrap()["label"], "nsfw");
}
