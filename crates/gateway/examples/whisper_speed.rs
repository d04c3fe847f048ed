//! How fast speech to text is on this machine: a Whisper model's load time, and the real-time
//! factor (processing time over audio length) of espeak-ng speech, short and long, through
//! the same path the gateway runs (`SpeechToText::transcribe` on 16 kHz samples), plus the
//! process's resident memory with the model loaded. For base (multilingual), the English
//! clips are transcribed as English (as `language: "en"` would), and a German sentence as
//! German and with its language detected.
//!
//! `cargo run --release -p x402-gateway --example whisper_speed -- [models_dir] [runs] [tiny.en|base]`

use std::time::Instant;

use x402_gateway::backend::local_llm::LoadState;
use x402_gateway::backend::whisper::{
    BASE_DIR, BASE_NAME, SpeechToText, TINY_EN_DIR, TINY_EN_NAME, audio,
};

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn espeak(text: &str) -> anyhow::Result<Vec<u8>> {
    espeak_in("en-us", text)
}

fn espeak_in(voice: &str, text: &str) -> anyhow::Result<Vec<u8>> {
    let output = std::process::Command::new("espeak-ng")
        .args(["-v", voice, "-s", "150", "--stdout", text])
        .output()?;
    anyhow::ensure!(output.status.success(), "espeak-ng failed");
    let mut wav = output.stdout;
    // espeak-ng writes placeholder sizes to a pipe: the data runs to the end.
    let len = wav.len() as u32;
    wav[4..8].copy_from_slice(&(len - 8).to_le_bytes());
    wav[40..44].copy_from_slice(&(len - 44).to_le_bytes());
    Ok(wav)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let models = args.next().unwrap_or_else(|| "models".into());
    let runs: usize = args.next().map_or(Ok(3), |r| r.parse())?;
    let (dir, name, english_only) = match args.next().as_deref() {
        None | Some("tiny.en") => (TINY_EN_DIR, TINY_EN_NAME, true),
        Some("base") => (BASE_DIR, BASE_NAME, false),
        Some(other) => anyhow::bail!("{other}: tiny.en or base"),
    };
    // English clips are transcribed as English on base too.
    let english = (!english_only).then_some("en");

    let started = Instant::now();
    let stt = SpeechToText::start(&std::path::Path::new(&models).join(dir), name, english_only)
        .map_err(anyhow::Error::msg)?;
    // The first transcription waits for the load.
    let sentence = "Hello from the inference gateway. This is an offline text to speech test.";
    let short = audio::decode(&espeak(sentence)?, 3600)?;
    let (_, segments) = stt.transcribe(&short.samples, english, &mut |_, _| {})?;
    let LoadState::Ready { load_ms } = stt.state() else {
        anyhow::bail!("Whisper did not load: {:?}", stt.state());
    };
    println!(
        "{name}: load {load_ms} ms; first transcription done {:.2} s after start: {:?}",
        started.elapsed().as_secs_f64(),
        segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>()
    );

    // About two minutes of speech: the paragraph spoken several times.
    let paragraph = "Agents pay for each call with a signed authorization. The gateway quotes \
        the price before any work, checks the payment, runs the model and settles on chain. \
        Nothing is charged twice and nothing paid is left unserved.";
    let long_wav = espeak(&[paragraph; 8].join(" "))?;
    let long = audio::decode(&long_wav, 3600)?;

    let german = audio::decode(
        &espeak_in(
            "de",
            "Guten Morgen. Das Wetter ist heute schön. Wir bezahlen die Rechnung morgen.",
        )?,
        3600,
    )?;
    let mut clips = vec![("short", &short, english), ("long", &long, english)];
    if !english_only {
        clips.push(("German, as German", &german, Some("de")));
        clips.push(("German, language detected", &german, None));
    }
    for (clip_name, clip, language) in clips {
        let mut best = f64::MAX;
        let mut heard = (String::new(), String::new());
        for _ in 0..runs {
            let t = Instant::now();
            let (language, segments) = stt.transcribe(&clip.samples, language, &mut |_, _| {})?;
            let elapsed = t.elapsed().as_secs_f64();
            best = best.min(elapsed);
            anyhow::ensure!(!segments.is_empty(), "no transcript");
            let text = segments.iter().map(|s| s.text.as_str()).collect::<Vec<_>>();
            heard = (language, text.join(" "));
        }
        println!(
            "{clip_name}: {:.1} s of audio in {best:.2} s (best of {runs}): real-time factor {:.3}; [{}] {:.80}",
            clip.seconds(),
            best / clip.seconds(),
            heard.0,
            heard.1,
        );
    }
    println!("RSS with the model loaded: {:.0} MB", rss_mb());
    Ok(())
}
