//! Speech to text reads the common compressed formats: the espeak-ng sentence encoded by
//! Debian's own encoders (flac, oggenc, lame) is quoted before any work at its seconds of audio,
//! measured from the file (the same price as the WAV it was made from), and once paid is
//! transcribed back with its words. A damaged or unsupported compressed file is a 400 that
//! says so, before payment.

mod common;

use alloy::primitives::U256;
use common::Stack;
use common::speech::{
    Encoder, SENTENCE, b64, espeak_wav, refused_though_paid, wav_samples, word_recall,
};
use serde_json::{Value, json};
use x402_testkit::assert_text_at;

async fn quoted(stack: &Stack, input: &Value) -> U256 {
    let response = stack
        .post_json("/run", &json!({"service": "whisper-l4", "input": input}))
        .await;
    assert_eq!(response.status(), 402, "{}", response.text().await.unwrap());
    x402_testkit::challenge_of(response.headers()).accepts[0]
        .amount
        .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_compressed_recording_is_priced_by_its_seconds_and_transcribed() {
    let stack = Stack::start("").await;
    let wav = espeak_wav(SENTENCE);
    let (samples, rate) = wav_samples(&wav);
    let seconds = (samples.len() as f64 / f64::from(rate)).ceil() as u64;
    // $0.005 per minute, per second of audio rounded up: 5000 micro-USDC per 60 s.
    let price = U256::from((seconds * 5000).div_ceil(60));
    assert_eq!(
        quoted(&stack, &json!({"audio_base64": b64(&wav)})).await,
        price
    );

    for encoder in Encoder::ALL {
        let file = encoder.encode(&wav);
        assert!(
            file.len() < wav.len() * 7 / 10,
            "{encoder:?}: {} bytes",
            file.len()
        );
        let url = format!("data:{};base64,{}", encoder.media_type(), b64(&file));
        // Quoted before any work, from the length the file holds.
        assert_eq!(
            quoted(&stack, &json!({"audio_url": &url})).await,
            price,
            "{encoder:?}"
        );
        let (response, asked) = stack
            .pay_run(
                "whisper-l4",
                json!({"audio_url": &url, "language": "en"}),
                1,
            )
            .await;
        assert_eq!(asked, price, "{encoder:?}");
        assert_eq!(response.status(), 200, "{encoder:?}");
        let body: Value = response.json().await.unwrap();
        let output = &body["output"];
        assert_eq!(output["input_format"], encoder.format());
        assert_eq!(output["language"], "en");
        let duration = output["duration_seconds"].as_f64().unwrap();
        let expected = samples.len() as f64 / f64::from(rate);
        assert!(
            (duration - expected).abs() < 0.05,
            "{encoder:?}: {duration} s, the WAV is {expected} s"
        );
        let text = output["text"].as_str().unwrap();
        let recall = word_recall(SENTENCE, text);
        assert!(
            recall >= 0.8,
            "{encoder:?}: {recall:.2} of the words in {text:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_unsupported_compressed_file_is_a_400_before_payment() {
    let stack = Stack::start("").await;
    let wav = espeak_wav("Testing one two three.");
    let good = json!({"service": "whisper-l4", "input": {"audio_base64": b64(&wav)}});

    // The formats' headers kept, everything after them overwritten: nothing decodes.
    let mut damaged = Vec::new();
    for encoder in Encoder::ALL {
        let mut file = encoder.encode(&wav);
        let keep = match encoder {
            Encoder::Flac => 8 + 34 + 4,
            Encoder::Vorbis => 200,
            Encoder::Mp3 => 0,
        };
        for (i, byte) in file.iter_mut().enumerate().skip(keep) {
            *byte = (i as u8).wrapping_mul(151) ^ 0x5a;
        }
        damaged.push((encoder, file));
    }
    // A FLAC cut off inside its first frame: its metadata whole, then 10 bytes of audio.
    let flac = Encoder::Flac.encode(&wav);
    let cut = flac[..flac_audio_offset(&flac) + 10].to_vec();

    let mut cases: Vec<(String, Value)> = damaged
        .into_iter()
        .map(|(encoder, file)| {
            (
                format!("damaged {encoder:?}"),
                json!({"audio_url": format!("data:{};base64,{}", encoder.media_type(), b64(&file))}),
            )
        })
        .collect();
    cases.push(("cut FLAC".into(), json!({"audio_base64": b64(&cut)})));
    // An Ogg stream of a codec not read here (Opus): only its identification header.
    let mut opus = b"OpusHead\x01\x01\x38\x01\x80\xbb\0\0\0\0\0".to_vec();
    opus.resize(19, 0);
    cases.push((
        "Ogg Opus".into(),
        json!({"audio_base64": b64(&ogg_page(&opus))}),
    ));

    for (what, input) in cases {
        let request = json!({"service": "whisper-l4", "input": input});
        let response = stack.post_json("/run", &request).await;
        assert_eq!(response.status(), 400, "{what}");
        assert!(
            !response.headers().contains_key("payment-required"),
            "{what}"
        );
        let body: Value = response.json().await.unwrap();
        assert_text_at(&body, "/error", "the input audio cannot be transcribed");
        eprintln!("{what}: {}", body["error"]);
        let paid = refused_though_paid(&stack, &good, &request).await;
        assert_eq!(paid["error"], body["error"], "{what}");
    }
}

/// Where a FLAC file's first audio frame starts: after "fLaC" and its metadata blocks.
fn flac_audio_offset(flac: &[u8]) -> usize {
    assert_eq!(&flac[..4], b"fLaC");
    let mut at = 4;
    loop {
        let last = flac[at] & 0x80 != 0;
        let length = u32::from_be_bytes([0, flac[at + 1], flac[at + 2], flac[at + 3]]) as usize;
        at += 4 + length;
        if last {
            return at;
        }
    }
}

/// One Ogg page (the first and last of its stream) holding `packet`, with its CRC.
fn ogg_page(packet: &[u8]) -> Vec<u8> {
    assert!(packet.len() < 255);
    let mut page = b"OggS\0\x06".to_vec();
    page.extend_from_slice(&0u64.to_le_bytes());
    page.extend_from_slice(&1u32.to_le_bytes());
    page.extend_from_slice(&0u32.to_le_bytes());
    page.extend_from_slice(&0u32.to_le_bytes());
    page.push(1);
    page.push(packet.len() as u8);
    page.extend_from_slice(packet);
    let crc = page.iter().fold(0u32, |mut crc, &byte| {
        crc ^= u32::from(byte) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
        crc
    });
    page[22..26].copy_from_slice(&crc.to_le_bytes());
    page
}
