#![allow(clippy::unwrap_used)]

use super::*;

use Kind::{Build, Dev, Normal};

/// A workspace shaped like ours, with every edge allowed.
fn clean() -> Vec<(&'static str, Vec<(&'static str, Kind)>)> {
    vec![
        ("fv-protocol", vec![("serde", Normal), ("fv-testkit", Dev)]),
        ("fv-core", vec![]),
        ("fv-lru", vec![]),
        ("fv-runtime", vec![("tokio", Normal)]),
        ("fv-store", vec![("fv-core", Normal), ("fv-lru", Normal)]),
        ("fv-pool", vec![("fv-core", Normal), ("fv-store", Normal)]),
        ("fv-encoder", vec![("fv-core", Normal), ("cc", Build)]),
        (
            "fv-server",
            vec![
                ("fv-pool", Normal),
                ("fv-encoder", Normal),
                ("axum", Normal),
                ("fv-testkit", Dev),
            ],
        ),
        (
            "fv-router",
            vec![
                ("fv-protocol", Normal),
                ("fv-runtime", Normal),
                ("fv-lru", Normal),
                ("axum", Normal),
                ("fv-testkit-router", Dev),
            ],
        ),
        (
            "fv-testkit-router",
            vec![("fv-router", Normal), ("fv-protocol", Normal)],
        ),
        (
            "fv-testkit",
            vec![("fv-server", Normal), ("fv-testkit-router", Normal)],
        ),
        (
            "stream-router",
            vec![("fv-router", Normal), ("fv-testkit-router", Dev)],
        ),
        ("axum", vec![("tokio", Normal), ("hyper", Normal)]),
        ("hyper", vec![("tokio", Normal)]),
    ]
}

fn graph(edges: Vec<(&'static str, Vec<(&'static str, Kind)>)>) -> Graph {
    let external = ["serde", "tokio", "axum", "hyper", "cc"];
    let mut g = Graph::default();
    for (from, deps) in edges {
        if !external.contains(&from) {
            g.members.push(from.to_owned());
        }
        g.edges.insert(
            from.to_owned(),
            deps.into_iter()
                .map(|(to, k)| (to.to_owned(), vec![k]))
                .collect(),
        );
    }
    g
}

fn with_edge(from: &str, to: &'static str, kind: Kind) -> Graph {
    let mut edges = clean();
    let row = edges.iter_mut().find(|(f, _)| *f == from).unwrap();
    row.1.push((to, kind));
    graph(edges)
}

#[test]
fn a_clean_workspace_passes() {
    assert_eq!(check(&graph(clean())), Vec::<String>::new());
}

#[test]
fn router_tests_reaching_the_server_fail_with_the_path() {
    // The old shape: fv-router's tests on the server-side testkit.
    let problems = check(&with_edge("fv-router", "fv-testkit", Dev));
    assert!(
        problems.contains(
            &"fv-router must not compile fv-server, not even in its tests: \
              fv-router -(dev)-> fv-testkit -> fv-server"
                .to_owned()
        ),
        "{problems:#?}"
    );
    // The pool and the encoder come along behind the server.
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("fv-router must not compile fv-pool")),
        "{problems:#?}"
    );
    // The same through the router's own kit, and for the binary's tests.
    let problems = check(&with_edge("fv-testkit-router", "fv-server", Normal));
    for who in ["fv-router", "fv-testkit-router", "stream-router"] {
        assert!(
            problems
                .iter()
                .any(|p| p.starts_with(&format!("{who} must not compile fv-server"))),
            "{who}: {problems:#?}"
        );
    }
    assert!(
        problems.contains(&"fv-testkit-router -> fv-server: not allowed by its layer".to_owned()),
        "{problems:#?}"
    );
}

#[test]
fn a_dependency_s_dev_dependencies_are_not_followed() {
    // fv-protocol's tests may use the server testkit; the router does not compile them.
    let g = graph(clean());
    let reached = g.reach("fv-router", |_| true);
    assert!(reached.contains_key("fv-testkit-router"));
    assert!(!reached.contains_key("fv-testkit"), "{reached:#?}");
}

#[test]
fn the_pool_must_not_use_axum_even_indirectly() {
    let problems = check(&with_edge("fv-pool", "axum", Normal));
    assert_eq!(
        problems,
        vec!["fv-pool must not use axum: fv-pool -> axum".to_owned()]
    );
    let problems = check(&with_edge("fv-store", "hyper", Normal));
    assert!(
        problems.is_empty(),
        "hyper alone is not axum: {problems:#?}"
    );
    let problems = check(&with_edge("fv-lru", "hyper", Normal));
    assert_eq!(
        problems,
        vec!["fv-lru must not use tokio: fv-lru -> hyper -> tokio".to_owned()]
    );
}

#[test]
fn layer_table_edges_and_unknown_packages() {
    let problems = check(&with_edge("fv-store", "fv-server", Normal));
    assert!(
        problems.contains(&"fv-store -> fv-server: not allowed by its layer".to_owned()),
        "{problems:#?}"
    );
    // A dev-dependency is not a layer edge.
    assert!(check(&with_edge("fv-store", "fv-testkit", Dev)).is_empty());
    let mut edges = clean();
    edges.push(("fv-new", vec![]));
    assert_eq!(
        check(&graph(edges)),
        vec!["fv-new: not in the layer table of xtask/src/check_layers.rs; add it".to_owned()]
    );
}

#[test]
fn the_workspace_passes() {
    let root = crate::root().unwrap();
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1"])
        .current_dir(root)
        .output()
        .unwrap();
    assert!(out.status.success());
    let meta: Value = serde_json::from_slice(&out.stdout).unwrap();
    let g = Graph::from_metadata(&meta).unwrap();
    assert!(g.members.iter().any(|m| m == "fv-router"));
    assert!(
        g.reach("fv-router", |_| true)
            .contains_key("fv-testkit-router"),
        "the metadata graph has dev edges"
    );
    assert_eq!(check(&g), Vec::<String>::new());
}
