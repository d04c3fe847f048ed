//! Audio longer than `limits.job_over_audio_seconds` is transcribed as a job: paid before it
//! starts, `/status` reports its progress window by window, and the output covers every
//! 30-second window with timestamps from the start of the recording.

mod common;

use std::time::Duration;

use common::Stack;
use common::speech::{b64, espeak_wav, wav_of, wav_samples, word_recall};
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_recording_runs_as_a_job_reporting_progress() {
    let stack = Stack::start("[limits]\njob_over_audio_seconds = 20\n").await;
    // "first" sentence, 33 s of silence, "second" sentence: two 30-second windows.
    let first = "Payments settle on chain before the job starts.";
    let second = "The second window speaks about the weather today.";
    let (mut samples, rate) = wav_samples(&espeak_wav(first));
    samples.extend(std::iter::repeat_n(0, rate as usize * 33 - samples.len()));
    samples.extend(wav_samples(&espeak_wav(second)).0);
    let audio = wav_of(&samples, rate);

    let request = json!({"service": "whisper-l4", "input": {"audio_base64": b64(&audio)}});
    let (job_id, receipt) = stack.pay_job(&request).await;
    assert!(receipt.success);

    let mut phases = Vec::new();
    let mut view = Value::Null;
    for _ in 0..600 {
        view = stack.get_json(&format!("/status/{job_id}")).await;
        if view["status"] == "completed" || view["status"] == "failed" {
            break;
        }
        let phase = view["progress"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if phases.last() != Some(&phase) {
            phases.push(phase);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(view["status"], "completed", "{view}");
    assert!(
        phases
            .iter()
            .any(|p| p.contains("of 2 30-second windows") || p == "transcribing"),
        "{phases:?}"
    );
    let output = &view["output"];
    let segments = output["segments"].as_array().unwrap();
    let late: Vec<&str> = segments
        .iter()
        .filter(|s| s["start"].as_f64().unwrap() >= 30.0)
        .map(|s| s["text"].as_str().unwrap())
        .collect();
    assert!(word_recall(second, &late.join(" ")) >= 0.6, "{output}");
    let text = output["text"].as_str().unwrap();
    assert!(word_recall(first, text) >= 0.6, "{text}");
}
