//! The map kept true: the invariants ARCHITECTURE.md states about crates and files, checked
//! against `cargo metadata` and the sources. A failure names the rule and where it broke;
//! change the code, or change the rule here and in ARCHITECTURE.md in the same commit.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Each mqchat crate and the mqchat crates it may depend on (normal dependencies; tests
/// and tools may use more). Dependencies point one way: a crate appears only after those it
/// may use. A new crate must be added here, with its rule in ARCHITECTURE.md.
const LAYERS: &[(&str, &[&str])] = &[
    ("mqchat-proto", &[]),
    ("mqchat-sip", &[]),
    ("mqchat-push", &[]),
    ("mqchat-reaction", &["mqchat-proto"]),
    ("mqchat-store", &["mqchat-proto"]),
    (
        "mqchat-hub",
        &["mqchat-proto", "mqchat-sip", "mqchat-store"],
    ),
    ("mqchat-broker", &["mqchat-proto"]),
    ("mqchat-gateway", &["mqchat-proto", "mqchat-sip"]),
    ("mqchat-client", &["mqchat-proto", "mqchat-sip"]),
    (
        "mqchat-server",
        &[
            "mqchat-proto",
            "mqchat-sip",
            "mqchat-store",
            "mqchat-hub",
            "mqchat-broker",
            "mqchat-gateway",
            "mqchat-push",
        ],
    ),
    ("mqchat-testkit", &["*"]),
    (
        "mqchat",
        &[
            "mqchat-proto",
            "mqchat-store",
            "mqchat-server",
            "mqchat-client",
            "mqchat-push",
        ],
    ),
    (
        "mqchat-bench",
        &["mqchat-proto", "mqchat-store", "mqchat-broker"],
    ),
];

/// Outside crates that only one mqchat crate may depend on (any kind of dependency): the
/// crate that owns the concern.
const OWNERS: &[(&str, &str)] = &[
    ("rmqtt", "mqchat-broker"),
    ("rmqtt-retainer", "mqchat-broker"),
    ("rmqtt-shared-subscription", "mqchat-broker"),
    ("rusqlite", "mqchat-store"),
];

/// The sans-IO crates: no async runtime, no sockets (their clippy.toml forbids the clock).
const SANS_IO: &[&str] = &[
    "mqchat-proto",
    "mqchat-sip",
    "mqchat-reaction",
    "mqchat-hub",
    "mqchat-store",
    "mqchat-gateway",
];
const RUNTIMES: &[&str] = &["tokio", "async-std", "smol", "mio", "socket2"];

/// Files allowed past ~800 lines, each with its reason. Anything else that long is a file
/// that holds several things: split it.
const LONG_FILES: &[(&str, &str)] = &[
    (
        "crates/hub/tests/engine.rs",
        "one data-driven case per behaviour of the engine; cases read alone",
    ),
    (
        "crates/hub/tests/sip.rs",
        "the proxy's scenarios, one per RFC 3261 behaviour",
    ),
    (
        "crates/proto/examples/make-vectors.rs",
        "the golden vectors, one literal each",
    ),
    (
        "crates/cli/tests/mosquitto.rs",
        "the Mosquitto scenarios share one broker set-up",
    ),
    (
        "crates/store/src/account.rs",
        "users, devices, tokens and logins: one account state machine",
    ),
    (
        "crates/client/src/session/mod.rs",
        "the SDK's session state machine (spec 13)",
    ),
    (
        "crates/client/src/session/tests/mod.rs",
        "the session's simulated-hub tests",
    ),
];
const LONG: usize = 800;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/cli is two levels below the workspace")
        .to_path_buf()
}

/// `cargo metadata` of the workspace's own packages: name → [(dependency, kind)].
fn dependencies() -> BTreeMap<String, Vec<(String, Option<String>)>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(workspace())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "cargo metadata: {output:?}");
    let metadata: Value = serde_json::from_slice(&output.stdout).expect("metadata is JSON");
    let packages = metadata["packages"].as_array().expect("packages");
    packages
        .iter()
        .map(|package| {
            let name = package["name"].as_str().expect("name").to_owned();
            let deps = package["dependencies"]
                .as_array()
                .expect("dependencies")
                .iter()
                .map(|dep| {
                    let name = dep["name"].as_str().expect("dependency name").to_owned();
                    (name, dep["kind"].as_str().map(str::to_owned))
                })
                .collect();
            (name, deps)
        })
        .collect()
}

#[test]
fn crates_depend_only_on_the_crates_their_layer_allows() {
    let layers: BTreeMap<_, _> = LAYERS.iter().copied().collect();
    let mut broken = Vec::new();
    for (package, deps) in dependencies() {
        let Some(allowed) = layers.get(package.as_str()) else {
            broken.push(format!(
                "{package}: not in LAYERS (add it, and its rule to ARCHITECTURE.md)"
            ));
            continue;
        };
        for (dep, kind) in deps {
            let normal = kind.is_none();
            if dep == "mqchat-testkit" && normal {
                broken.push(format!("{package} → {dep}: the test kit is for tests only"));
            }
            let ours = dep.starts_with("mqchat") && dep != "mqchat-testkit";
            if ours && normal && !allowed.contains(&"*") && !allowed.contains(&dep.as_str()) {
                broken.push(format!("{package} → {dep}: not allowed by its layer"));
            }
            if let Some((_, owner)) = OWNERS.iter().find(|(name, _)| *name == dep)
                && *owner != package
            {
                broken.push(format!("{package} → {dep}: only {owner} may use it"));
            }
            if SANS_IO.contains(&package.as_str()) && normal && RUNTIMES.contains(&dep.as_str()) {
                broken.push(format!(
                    "{package} → {dep}: a sans-IO crate has no runtime or sockets"
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "dependency rules broken:\n{}",
        broken.join("\n")
    );
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') {
                rust_files(&path, out);
            }
        } else if name.ends_with(".rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<(String, String)> {
    let root = workspace();
    let mut files = Vec::new();
    for dir in ["crates", "fuzz"] {
        if root.join(dir).is_dir() {
            rust_files(&root.join(dir), &mut files);
        }
    }
    assert!(files.len() > 100, "found only {} Rust files", files.len());
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("a Rust file is UTF-8");
            let relative = path.strip_prefix(&root).expect("below the workspace");
            (relative.display().to_string(), text)
        })
        .collect()
}

#[test]
fn every_rust_file_opens_with_a_line_saying_what_it_is_for() {
    let missing: Vec<_> = sources()
        .into_iter()
        .filter(|(_, text)| {
            let first = text.lines().find(|line| !line.trim().is_empty());
            !first.is_some_and(|line| line.starts_with("//!"))
        })
        .map(|(path, _)| path)
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` first line:\n{}",
        missing.join("\n")
    );
}

#[test]
fn long_files_are_few_and_each_has_its_reason() {
    let allowed: BTreeSet<_> = LONG_FILES.iter().map(|(path, _)| *path).collect();
    let sizes: BTreeMap<_, _> = sources()
        .into_iter()
        .map(|(path, text)| (path, text.lines().count()))
        .collect();
    let mut long: Vec<_> = sizes
        .iter()
        .filter(|(path, lines)| **lines > LONG && !allowed.contains(path.as_str()))
        .map(|(path, lines)| format!("{path}: {lines} lines"))
        .collect();
    // An entry for a file that is gone or has become short keeps the list from being short.
    long.extend(
        allowed
            .iter()
            .filter(|path| sizes.get(**path).is_none_or(|lines| *lines <= LONG))
            .map(|path| format!("{path}: in LONG_FILES, but not over {LONG} lines (remove it)")),
    );
    assert!(
        long.is_empty(),
        "files over {LONG} lines (split them, or add them to LONG_FILES with a reason):\n{}",
        long.join("\n")
    );
}

#[test]
fn unsafe_code_is_only_where_the_map_says() {
    const ALLOWED: &[&str] = &["crates/broker/src/deadline.rs"];
    // Built, so that this file does not hold what it looks for.
    let patterns = [" {", " fn", " impl"].map(|tail| ["unsafe", tail].concat());
    let found: Vec<_> = sources()
        .into_iter()
        .filter(|(path, text)| {
            !ALLOWED.contains(&path.as_str())
                && text.lines().any(|line| {
                    let code = line.split("//").next().unwrap_or("");
                    patterns
                        .iter()
                        .any(|pattern| code.contains(pattern.as_str()))
                })
        })
        .map(|(path, _)| path)
        .collect();
    assert!(
        found.is_empty(),
        "unsafe code outside {ALLOWED:?}:\n{}",
        found.join("\n")
    );
}
