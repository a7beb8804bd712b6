//! The source folders follow the data: every `crate::` path between two folders points down
//! the pipeline. This test lists those edges and fails on a cycle, or on an edge that points
//! up (against the order in docs/architecture.md).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Bottom to top. A folder may use those before it. `faults` and `logging` are single-file
/// modules beside the folders: fault injection (read by collect and serve) and the logger.
const LAYERS: &[&str] = &[
    "config", "logging", "faults", "model", "inspect", "attach", "collect", "render", "serve", "ui",
];

/// (from, to) -> the files that make the edge.
fn edges() -> BTreeMap<(String, String), BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut edges: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("read src") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if !rel.ends_with(".rs") || rel == "lib.rs" || rel == "main.rs" {
                continue;
            }
            let from = rel
                .split('/')
                .next()
                .unwrap()
                .trim_end_matches(".rs")
                .to_string();
            let text = std::fs::read_to_string(&path).expect("read source");
            for line in text.lines() {
                let code = line.trim_start();
                if code.starts_with("//") {
                    continue;
                }
                for (i, _) in code.match_indices("crate::") {
                    let to: String = code[i + "crate::".len()..]
                        .chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect();
                    if !to.is_empty() && to != from {
                        edges
                            .entry((from.clone(), to))
                            .or_default()
                            .insert(rel.clone());
                    }
                }
            }
        }
    }
    edges
}

/// A cycle in the folder graph, if there is one.
fn find_cycle(edges: &BTreeMap<(String, String), BTreeSet<String>>) -> Option<Vec<String>> {
    let mut next: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        next.entry(from).or_default().push(to);
    }
    // Depth-first search; a node met again while still on the path closes a cycle.
    fn visit<'a>(
        node: &'a str,
        next: &BTreeMap<&'a str, Vec<&'a str>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|&n| n == node) {
            let mut cycle: Vec<String> = path[i..].iter().map(|s| s.to_string()).collect();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if !done.insert(node) {
            return None;
        }
        path.push(node);
        for &n in next.get(node).into_iter().flatten() {
            if let Some(c) = visit(n, next, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for &start in next.keys() {
        if let Some(c) = visit(start, &next, &mut Vec::new(), &mut done) {
            return Some(c);
        }
    }
    None
}

#[test]
fn folders_depend_down_the_pipeline_only() {
    let edges = edges();
    assert!(
        edges.len() > 10,
        "found only {} edges: {edges:?}",
        edges.len()
    );
    println!("use crate:: edges between folders:");
    for ((from, to), files) in &edges {
        println!(
            "  {from} -> {to}  ({})",
            files.iter().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    if let Some(cycle) = find_cycle(&edges) {
        panic!(
            "the folders depend on each other in a circle: {}",
            cycle.join(" -> ")
        );
    }
    let rank = |m: &str| {
        LAYERS
            .iter()
            .position(|&l| l == m)
            .unwrap_or_else(|| panic!("folder {m} is not in LAYERS (and docs/architecture.md)"))
    };
    let upward: Vec<String> = edges
        .iter()
        .filter(|((from, to), _)| rank(from) < rank(to))
        .map(|((from, to), files)| format!("{from} -> {to} in {files:?}"))
        .collect();
    assert!(
        upward.is_empty(),
        "edges pointing up the pipeline:\n{}",
        upward.join("\n")
    );
}

#[test]
fn a_cycle_is_found() {
    let mut edges = BTreeMap::new();
    for (a, b) in [
        ("model", "config"),
        ("config", "collect"),
        ("collect", "model"),
    ] {
        edges.insert((a.to_string(), b.to_string()), BTreeSet::new());
    }
    let cycle = find_cycle(&edges).expect("a cycle");
    assert_eq!(cycle.first(), cycle.last());
    assert_eq!(cycle.len(), 4, "{cycle:?}");
    edges.remove(&("collect".to_string(), "model".to_string()));
    assert_eq!(find_cycle(&edges), None);
}
