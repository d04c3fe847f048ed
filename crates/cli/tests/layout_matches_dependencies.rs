//! `docs/layout.md` names the dependency edges between our crates; `cargo metadata` says what
//! they are. Every edge the document writes must exist, and every dependency between our crates
//! must follow from the written edges (directly or through others).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .parent()
        .unwrap()
}

/// The edges written as `a → b → c` in backticks in the layout's first paragraph.
fn documented_edges() -> BTreeSet<(String, String)> {
    let text = std::fs::read_to_string(root().join("docs/layout.md")).unwrap();
    let paragraph = text
        .split("\n\n")
        .nth(1)
        .expect("the paragraph after the title");
    let mut edges = BTreeSet::new();
    for (i, chunk) in paragraph.split('`').enumerate() {
        if i % 2 == 0 || !chunk.contains('→') {
            continue;
        }
        let names: Vec<String> = chunk
            .split('→')
            .map(|n| format!("x402-{}", n.trim()))
            .collect();
        for pair in names.windows(2) {
            edges.insert((pair[0].clone(), pair[1].clone()));
        }
    }
    edges
}

/// Our crates' normal (not dev) dependencies on each other, from `cargo metadata`.
fn real_edges() -> BTreeSet<(String, String)> {
    let output = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success());
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let mut edges = BTreeSet::new();
    for package in metadata["packages"].as_array().unwrap() {
        let name = package["name"].as_str().unwrap();
        for dep in package["dependencies"].as_array().unwrap() {
            let dep_name = dep["name"].as_str().unwrap();
            if dep_name.starts_with("x402-") && dep["kind"].is_null() {
                edges.insert((name.to_owned(), dep_name.to_owned()));
            }
        }
    }
    edges
}

fn reachable(edges: &BTreeSet<(String, String)>, from: &str, to: &str) -> bool {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (a, b) in edges {
        next.entry(a).or_default().push(b);
    }
    let mut seen = BTreeSet::new();
    let mut stack = vec![from];
    while let Some(at) = stack.pop() {
        if at == to {
            return true;
        }
        if seen.insert(at) {
            stack.extend(next.get(at).into_iter().flatten());
        }
    }
    false
}

#[test]
fn the_layout_document_names_the_real_dependency_edges() {
    let documented = documented_edges();
    let real = real_edges();
    assert!(documented.len() > 10, "{documented:?}");
    let invented: Vec<_> = documented.difference(&real).collect();
    assert!(
        invented.is_empty(),
        "docs/layout.md names edges that do not exist: {invented:?}"
    );
    let unexplained: Vec<_> = real
        .iter()
        .filter(|(a, b)| !reachable(&documented, a, b))
        .collect();
    assert!(
        unexplained.is_empty(),
        "dependencies docs/layout.md does not account for: {unexplained:?}"
    );
}
