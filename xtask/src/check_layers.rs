//! `cargo xtask check-layers`: fails when a crate depends on something its layer forbids
//! (DESIGN.md / ARCHITECTURE.md, "Who may depend on whom"). Reads `cargo metadata`.
//!
//! Three rules:
//! * [`ALLOWED`]: the internal crates each package may depend on directly (normal and build
//!   dependencies; dev-dependencies are exempt, so tests may use a testkit).
//! * [`FORBIDDEN_EXTERNAL`]: external crates a package must not use, directly or through any
//!   of its normal or build dependencies.
//! * [`UNREACHABLE`]: crates a package must not reach at all, dev-dependencies included: what
//!   `cargo test -p <package>` compiles. This keeps the server out of the router's tests.

use anyhow::{Context, bail};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::process::Command;

/// Internal crates each package may depend on (normal and build dependencies).
const ALLOWED: &[(&str, &[&str])] = &[
    ("fv-protocol", &[]),
    ("fv-core", &[]),
    // The one bounded LRU + TTL map, shared by fv-store, fv-router and fv-inference's
    // caption-embedding cache.
    ("fv-lru", &[]),
    // The one config mechanism (schema check, key paths, docs), for every layer's config.
    ("fv-config", &[]),
    ("fv-session", &["fv-protocol", "fv-core"]),
    ("fv-encoder", &["fv-core"]),
    ("fv-store", &["fv-core", "fv-lru", "fv-config"]),
    ("fv-pool", &["fv-core", "fv-store"]),
    ("fv-prompt", &["fv-core", "fv-config"]),
    ("fv-inference", &["fv-core", "fv-lru"]),
    // Process glue (signals, config files, logging, exit codes) for the app crates and bins.
    ("fv-runtime", &["fv-config"]),
    (
        "fv-server",
        &[
            "fv-protocol",
            "fv-core",
            "fv-session",
            "fv-store",
            "fv-pool",
            "fv-encoder",
            "fv-prompt",
            "fv-runtime",
            "fv-config",
        ],
    ),
    (
        "fv-router",
        &["fv-protocol", "fv-runtime", "fv-lru", "fv-config"],
    ),
    // Router tests' kit: the router and the wire types, never the server.
    ("fv-testkit-router", &["fv-router", "fv-protocol"]),
    (
        "fv-testkit",
        &["fv-server", "fv-core", "fv-encoder", "fv-testkit-router"],
    ),
    ("mock-server", &["fv-server", "fv-core", "fv-runtime"]),
    ("stream-router", &["fv-router", "fv-runtime"]),
    (
        "streaming-server",
        &["fv-server", "fv-core", "fv-inference", "fv-runtime"],
    ),
    ("xtask", &["*"]),
];

/// External crates a package must never use, directly or through its normal and build
/// dependencies, whatever its layer allows.
const FORBIDDEN_EXTERNAL: &[(&str, &[&str])] = &[
    ("fv-protocol", &["tokio", "axum", "candle-core"]),
    ("fv-core", &["tokio", "axum", "candle-core"]),
    ("fv-lru", &["tokio", "axum", "candle-core"]),
    ("fv-config", &["tokio", "axum", "candle-core"]),
    ("fv-session", &["axum"]),
    ("fv-encoder", &["tokio", "axum"]),
    ("fv-pool", &["axum"]),
    ("fv-inference", &["tokio", "axum"]),
    // LLM calls and safety only: no web framework (its fake LLM server is a dev-dependency),
    // no model runtime, no video.
    ("fv-prompt", &["axum", "candle-core", "openh264"]),
    ("fv-router", &["candle-core", "openh264"]),
    ("fv-runtime", &["axum", "candle-core", "openh264"]),
];

/// The app and model crates a router build or router test must never compile.
const NOT_IN_ROUTER: &[&str] = &[
    "fv-server",
    "fv-session",
    "fv-pool",
    "fv-encoder",
    "fv-inference",
];

/// Crates a package must not reach through any dependency, dev-dependencies included.
const UNREACHABLE: &[(&str, &[&str])] = &[
    ("fv-router", NOT_IN_ROUTER),
    ("fv-testkit-router", NOT_IN_ROUTER),
    ("stream-router", NOT_IN_ROUTER),
];

pub fn run() -> anyhow::Result<()> {
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1"])
        .output()
        .context("running cargo metadata")?;
    if !out.status.success() {
        bail!(
            "cargo metadata failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let meta: Value = serde_json::from_slice(&out.stdout)?;
    let graph = Graph::from_metadata(&meta)?;
    let problems = check(&graph);
    if problems.is_empty() {
        println!(
            "check-layers: {} packages, every edge allowed",
            graph.members.len()
        );
        Ok(())
    } else {
        for p in &problems {
            eprintln!("check-layers: {p}");
        }
        bail!("{} layering violation(s)", problems.len())
    }
}

/// How a package depends on another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    Build,
    Dev,
}

impl Kind {
    fn arrow(self) -> &'static str {
        match self {
            Kind::Normal => " -> ",
            Kind::Build => " -(build)-> ",
            Kind::Dev => " -(dev)-> ",
        }
    }
}

/// The resolved dependency graph of the workspace, by package name.
#[derive(Debug, Default)]
struct Graph {
    /// Workspace packages, by name.
    members: Vec<String>,
    /// Package name → (dependency name, kinds of the edge).
    edges: HashMap<String, Vec<(String, Vec<Kind>)>>,
}

impl Graph {
    fn from_metadata(meta: &Value) -> anyhow::Result<Self> {
        let names: HashMap<&str, &str> = meta["packages"]
            .as_array()
            .context("metadata without packages")?
            .iter()
            .filter_map(|p| Some((p["id"].as_str()?, p["name"].as_str()?)))
            .collect();
        let name_of = |id: &Value| {
            id.as_str()
                .and_then(|id| names.get(id).copied())
                .map(str::to_owned)
        };
        let members = meta["workspace_members"]
            .as_array()
            .context("metadata without workspace_members")?
            .iter()
            .filter_map(name_of)
            .collect();
        let mut edges = HashMap::new();
        let nodes = meta["resolve"]["nodes"]
            .as_array()
            .context("metadata without a resolve graph")?;
        for node in nodes {
            let Some(from) = name_of(&node["id"]) else {
                continue;
            };
            let mut out = Vec::new();
            for dep in node["deps"].as_array().into_iter().flatten() {
                let Some(to) = name_of(&dep["pkg"]) else {
                    continue;
                };
                let kinds = dep["dep_kinds"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|k| match k["kind"].as_str() {
                        Some("dev") => Kind::Dev,
                        Some("build") => Kind::Build,
                        _ => Kind::Normal,
                    })
                    .collect();
                out.push((to, kinds));
            }
            edges.insert(from, out);
        }
        Ok(Self { members, edges })
    }

    /// Direct dependencies of `name` through edges of a kind `follow` accepts.
    fn deps<'a>(
        &'a self,
        name: &str,
        follow: impl Fn(Kind) -> bool + 'a,
    ) -> impl Iterator<Item = (&'a str, Kind)> + 'a {
        self.edges
            .get(name)
            .into_iter()
            .flatten()
            .filter_map(move |(to, kinds)| {
                // Prefer naming the edge by a kind that ships (normal, then build).
                [Kind::Normal, Kind::Build, Kind::Dev]
                    .into_iter()
                    .find(|k| kinds.contains(k) && follow(*k))
                    .map(|k| (to.as_str(), k))
            })
    }

    /// Every package `root` reaches, with the path that reaches it first (breadth first).
    /// From `root` itself edges of every kind `root_follow` accepts are followed; from other
    /// packages only normal and build edges, since a dependency's dev-dependencies are never
    /// compiled for `root`.
    fn reach(&self, root: &str, root_follow: fn(Kind) -> bool) -> BTreeMap<String, String> {
        let mut paths: BTreeMap<String, String> = BTreeMap::new();
        let mut queue = VecDeque::from([(root.to_owned(), root.to_owned())]);
        while let Some((name, path)) = queue.pop_front() {
            let is_root = name == root;
            let follow = move |k: Kind| {
                if is_root {
                    root_follow(k)
                } else {
                    k != Kind::Dev
                }
            };
            for (dep, kind) in self.deps(&name, follow) {
                if dep == root || paths.contains_key(dep) {
                    continue;
                }
                let p = format!("{path}{}{dep}", kind.arrow());
                paths.insert(dep.to_owned(), p.clone());
                queue.push_back((dep.to_owned(), p));
            }
        }
        paths
    }
}

/// Every violation of the three rules, as one line each.
fn check(graph: &Graph) -> Vec<String> {
    let allowed: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    let mut problems = Vec::new();
    for name in &graph.members {
        let Some(may) = allowed.get(name.as_str()) else {
            problems.push(format!(
                "{name}: not in the layer table of xtask/src/check_layers.rs; add it"
            ));
            continue;
        };
        for (dep, _) in graph.deps(name, |k| k != Kind::Dev) {
            let internal = graph.members.iter().any(|m| m == dep);
            if internal && !may.contains(&"*") && !may.contains(&dep) {
                problems.push(format!("{name} -> {dep}: not allowed by its layer"));
            }
        }
    }
    for (name, forbidden) in FORBIDDEN_EXTERNAL {
        let reached = graph.reach(name, |k| k != Kind::Dev);
        for f in *forbidden {
            if let Some(path) = reached.get(*f) {
                problems.push(format!("{name} must not use {f}: {path}"));
            }
        }
    }
    for (name, forbidden) in UNREACHABLE {
        let reached = graph.reach(name, |_| true);
        for f in *forbidden {
            if let Some(path) = reached.get(*f) {
                problems.push(format!(
                    "{name} must not compile {f}, not even in its tests: {path}"
                ));
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests;
