//! A PDF of more than four pages is read by OCR as a job: paid before it starts (one unit per
//! page), `/status` reports its progress page by page, and the output has every page's text in
//! page order.

mod common;

use std::time::Duration;

use common::{Stack, base64_of, pdf_of_pages};
use serde_json::{Value, json};

const PAGES: [&str; 6] = [
    "Page one lists the invoices",
    "Page two totals the payments",
    "Page three names the payer",
    "Page four shows the network",
    "Page five records the receipt",
    "Page six closes the ledger",
];

/// `text` in lower case without whitespace (tesseract sometimes splits a word: "p age").
fn normalized(text: &str) -> String {
    text.split_whitespace().collect::<String>().to_lowercase()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_six_page_pdf_runs_as_a_job_reporting_each_page() {
    let stack = Stack::start("").await;
    let pdf = pdf_of_pages(&PAGES);
    let request = json!({"service": "ocr-l4", "input": {"file_base64": base64_of(&pdf)}});

    // Quoted per page, before any work.
    let quote = stack.post_json("/run", &request).await;
    assert_eq!(quote.status(), 402);
    let one_page = stack
        .post_json(
            "/run",
            &json!({"service": "ocr-l4", "input": {"file_base64": base64_of(&pdf_of_pages(&PAGES[..1]))}}),
        )
        .await;
    let per_page = x402_testkit::challenge_of(one_page.headers()).accepts[0]
        .amount
        .0;
    let asked = x402_testkit::challenge_of(quote.headers()).accepts[0]
        .amount
        .0;
    assert_eq!(asked, per_page * alloy::primitives::U256::from(PAGES.len()));

    // Without asking for a job, it runs as one.
    let response = x402_testkit::pay_and_retry(
        || stack.http.post(format!("{}/run", stack.url)).json(&request),
        stack.payer(0),
        x402_testkit::Wire::V2,
    )
    .await;
    assert_eq!(response.status(), 202, "a long PDF runs as a job");
    assert!(x402_testkit::receipt_of(response.headers()).is_some_and(|r| r.success));
    let accepted: Value = response.json().await.unwrap();
    let job_id = accepted["job_id"].as_str().unwrap().to_owned();

    let mut phases: Vec<(String, u64)> = Vec::new();
    let mut view = Value::Null;
    for _ in 0..1200 {
        view = stack.get_json(&format!("/status/{job_id}")).await;
        if view["status"] == "completed" || view["status"] == "failed" {
            break;
        }
        let phase = view["progress"]["phase"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let percent = view["progress"]["percent_estimate"].as_u64().unwrap_or(0);
        if phases.last().map(|(p, _)| p) != Some(&phase) {
            phases.push((phase, percent));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(view["status"], "completed", "{view}");
    // Page by page: at least two distinct "read N of 6 pages", in order, with rising shares.
    let read: Vec<(usize, u64)> = phases
        .iter()
        .filter_map(|(phase, percent)| {
            let rest = phase.strip_prefix("read ")?.strip_suffix(" of 6 pages")?;
            Some((rest.parse().ok()?, *percent))
        })
        .collect();
    assert!(read.len() >= 2, "{phases:?}");
    assert!(
        read.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1),
        "{phases:?}"
    );

    let output = &view["output"];
    assert_eq!(output["page_count"], 6, "{output}");
    let pages = output["pages"].as_array().unwrap();
    assert_eq!(pages.len(), 6);
    for (i, (page, line)) in pages.iter().zip(PAGES).enumerate() {
        assert_eq!(page["page"], i + 1);
        let text = normalized(page["text"].as_str().unwrap());
        assert!(text.contains(&normalized(line)), "page {}: {text:?}", i + 1);
    }
    let text = output["text"].as_str().unwrap();
    assert_eq!(
        text.matches('\u{c}').count(),
        5,
        "pages are separated by form feeds"
    );
}
