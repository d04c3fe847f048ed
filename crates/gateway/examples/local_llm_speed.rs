//! How fast the local chat LLM is on this machine: load time, prompt (prefill) and generation
//! tokens per second, first-token latency, and the process's resident memory with the model
//! loaded. Greedy decoding through the same path the gateway answers with (`LocalLlm::chat`,
//! streamed).
//!
//! `cargo run --release -p x402-gateway --example local_llm_speed -- [models_dir] [runs] [model]`
//! (model: `smollm2-135m-instruct`, the default, or `qwen2.5-coder-0.5b-instruct`)

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use x402_gateway::backend::chat::ChatAnswer;
use x402_gateway::backend::local_llm::{LoadState, LocalChatModel, LocalLlm};

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// One streamed answer: (prompt tokens, completion tokens, first-token latency, the time from
/// the first text to the end).
async fn run(llm: &LocalLlm, prompt: &str, max_tokens: u64) -> (u64, u64, Duration, Duration) {
    let request = json!({
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens, "temperature": 0, "stream": true,
    });
    let started = Instant::now();
    let Ok(ChatAnswer::Stream(mut events)) = llm.chat(&request, 100_000).await else {
        panic!("no stream");
    };
    let (mut first, mut usage) = (None, Value::Null);
    while let Some(Ok(bytes)) = events.next().await {
        for data in std::str::from_utf8(&bytes)
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
        {
            let Ok(chunk) = serde_json::from_str::<Value>(data) else {
                continue;
            };
            if chunk["choices"][0]["delta"]["content"]
                .as_str()
                .is_some_and(|c| !c.is_empty())
            {
                first.get_or_insert_with(|| started.elapsed());
            }
            if chunk["usage"].is_object() {
                usage = chunk["usage"].clone();
            }
        }
    }
    let total = started.elapsed();
    let first = first.unwrap_or(total);
    (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
        first,
        total - first,
    )
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut args = std::env::args().skip(1);
    let dir = args.next().unwrap_or_else(|| "models".into());
    let runs: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(3);
    let model: LocalChatModel = args
        .next()
        .map(|m| serde_json::from_value(json!(m)).expect("a model this gateway knows"))
        .unwrap_or(LocalChatModel::Smollm2);
    let name = model.name();
    let before = rss_mb();
    let llm = LocalLlm::start(&std::path::Path::new(&dir).join(model.file()), name)
        .expect("the model is installed");
    let load_ms = loop {
        match llm.state() {
            LoadState::Ready { load_ms } => break load_ms,
            LoadState::Failed(why) => panic!("{why}"),
            LoadState::Loading | LoadState::OnFirstUse => {
                tokio::time::sleep(Duration::from_millis(5)).await
            }
        }
    };
    println!(
        "model {name}: loaded in {load_ms} ms, RSS {before:.0} MB before, {:.0} MB after",
        rss_mb()
    );
    let long_prompt = "Summarize the following text in one sentence. ".to_owned()
        + &"x402 lets an HTTP server ask for a payment in USDC, and a client pays it with a signed authorization that a facilitator settles on chain. ".repeat(12);
    for (label, prompt, max_tokens) in [
        (
            "short prompt, 200 tokens",
            "Write a short story about a robot who learns to paint.",
            200,
        ),
        ("long prompt, 64 tokens", long_prompt.as_str(), 64),
    ] {
        for _ in 0..runs {
            let (prompt_tokens, completion, first, rest) = run(&llm, prompt, max_tokens).await;
            let generated = completion.saturating_sub(1).max(1) as f64;
            println!(
                "{label}: prompt {prompt_tokens} tokens, first token after {:.0} ms ({:.0} prompt tokens/s incl. first step), \
                 {completion} generated, {:.1} generated tokens/s, RSS {:.0} MB",
                first.as_secs_f64() * 1e3,
                prompt_tokens as f64 / first.as_secs_f64(),
                generated / rest.as_secs_f64(),
                rss_mb(),
            );
        }
    }
}
