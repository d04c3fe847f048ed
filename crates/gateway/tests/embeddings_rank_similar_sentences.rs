//! The real all-MiniLM-L6-v2 model: similar sentences score well above unrelated ones (this
//! fails if the tokenizer's fixed padding leaks into the pooling: everything scores ~0.9).

use x402_gateway::backend::embed::{DIMENSIONS, MiniLm, cosine};

mod common;

#[test]
fn similar_sentences_score_well_above_unrelated_ones() {
    let model = MiniLm::load(&common::models_dir().join("all-minilm-l6-v2")).unwrap();
    let texts: Vec<String> = [
        "The cat sits outside",
        "A feline is sitting outdoors",
        "Quarterly revenue grew by forty percent",
        "The stock market closed higher today",
    ]
    .map(String::from)
    .to_vec();
    let vectors = model.embed(&texts).unwrap();
    assert!(vectors.iter().all(|v| v.len() == DIMENSIONS));
    for v in &vectors {
        let norm: f32 = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
    }
    let cats = cosine(&vectors[0], &vectors[1]);
    let unrelated = cosine(&vectors[0], &vectors[2]);
    assert!(cats > 0.6, "cat/feline {cats}");
    assert!(unrelated < 0.2, "cat/revenue {unrelated}");
    assert!(cosine(&vectors[2], &vectors[3]) > unrelated);

    // Batching does not change a vector: padding is masked out.
    let alone = model.embed(&texts[..1]).unwrap();
    let drift: f32 = alone[0]
        .iter()
        .zip(&vectors[0])
        .map(|(a, b)| (a - b).abs())
        .sum();
    assert!(drift < 1e-3, "batched vs alone differ by {drift}");
}
