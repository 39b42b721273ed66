//! weir-host: runs WebAssembly stream operators with declared, host-owned state.
//!
//! The host is built in layers, each a folder, and a layer uses only those
//! below it (the `layers` test holds the direction):
//!
//! | layer | holds |
//! | --- | --- |
//! | [`mod@bench`] | `weir bench`: the job cases (each run a child `weir run`), the Kafka case, the in-process measurements (its arguments are the binary's `cli/bench.rs`) |
//! | [`api`] | the REST API and its client (the CLI is the binary's `cli` module) |
//! | [`engine`] | runs a job: channels, restore selection, live swaps and shadow runs, control plane, checkpoint coordinator, dataflow, runtime (its parts have an order of their own, listed in its docs) |
//! | [`job`] | the job file: parsing and checking it into a [`job::JobSpec`] |
//! | [`connectors`], [`wasm`] | sources and sinks (file, stdio, generator, blackhole, dead letters); operators as components, the only place that names a WIT-generated type |
//! | [`state`] | keyed state, timers, the checkpoint store, the savepoint format, restore planning |
//! | [`model`] | the host's own types: batches, state specs, time domains, positions, the source and sink traits |
//!
//! [`build`] and [`scaffold`] (`weir build`, `weir new`) stand aside: they
//! run language toolchains and use no other layer. [`mod@bench`] uses
//! [`build`] too, to build an example operator whose `.wasm` is missing.

#![warn(missing_docs)]

pub mod api;
pub mod bench;
pub mod build;
pub mod connectors;
pub mod engine;
pub mod job;
pub mod model;
pub mod scaffold;
pub mod state;
pub mod wasm;

#[cfg(test)]
mod layers {
    //! The direction of the layers, held by reading the sources: a file in
    //! one layer names (`crate::…`) only its own layer and those below, and
    //! only `wasm/` names the bindings generated from WIT.

    use std::path::Path;

    /// The layers a file in `layer` may name, itself included.
    fn allowed(layer: &str) -> &'static [&'static str] {
        match layer {
            "model" => &["model"],
            "state" => &["state", "model"],
            "wasm" => &["wasm", "state", "model"],
            "connectors" => &["connectors", "state", "model"],
            "job" => &["job", "wasm", "connectors", "state", "model"],
            "engine" => &["engine", "job", "wasm", "connectors", "state", "model"],
            "bench" => &[
                "bench",
                "api",
                "engine",
                "job",
                "wasm",
                "connectors",
                "state",
                "model",
                "build",
            ],
            "api" => &[
                "api",
                "engine",
                "job",
                "wasm",
                "connectors",
                "state",
                "model",
            ],
            "build" => &["build"],
            "scaffold" => &["scaffold", "build"],
            other => panic!("host/src/{other}: a folder or file of no known layer"),
        }
    }

    fn visit(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                visit(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }

    /// The parts of `engine/`, from the bottom up: a part names only
    /// itself and the parts before it (see `engine/mod.rs`).
    const ENGINE_ORDER: &[&str] = &[
        "channel",
        "recovery",
        "errors",
        "logic",
        "connect",
        "restore",
        "upgrades",
        "control",
        "coordinator",
        "dataflow",
        "runtime",
    ];

    /// What of `connectors/` the engine may name: the registry (through
    /// which it opens every source and sink), the dead-letter writer and the
    /// latency clock; never a connector of its own.
    const CONNECTORS_SEEN_BY_THE_ENGINE: &[&str] = &["registry", "dead_letter", "latency"];

    /// The `crate::engine::…` parts and `super::…` paths that a line of
    /// code names; a group (`crate::engine::{a, b}`) names each of its members.
    fn engine_parts_named(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (at, _) in line.match_indices("crate::engine::") {
            let rest = &line[at + "crate::engine::".len()..];
            let names: Vec<&str> = match rest.strip_prefix('{') {
                Some(group) => group
                    .split('}')
                    .next()
                    .unwrap_or("")
                    .split(',')
                    .map(str::trim)
                    .collect(),
                None => vec![rest],
            };
            for name in names {
                let part = ident(name);
                if !part.is_empty() {
                    out.push(part);
                }
            }
        }
        out
    }

    #[test]
    fn engine_parts_point_down() {
        let engine = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/engine");
        let mut wrong = Vec::new();
        for (rel, part, text) in sources(&engine) {
            if part == "mod" {
                continue;
            }
            let Some(rank) = ENGINE_ORDER.iter().position(|p| *p == part) else {
                wrong.push(format!("engine/{}: a part not in the order", rel.display()));
                continue;
            };
            for (n, line) in code_lines(&text) {
                if line.contains("super::super") {
                    wrong.push(format!(
                        "engine/{}:{}: reaches out with `super::super`",
                        rel.display(),
                        n
                    ));
                }
                for (at, _) in line.match_indices("crate::connectors::") {
                    let named = ident(&line[at + "crate::connectors::".len()..]);
                    if !CONNECTORS_SEEN_BY_THE_ENGINE.contains(&named.as_str()) {
                        wrong.push(format!(
                            "engine/{}:{}: names the connector `{named}` (the engine reaches connectors through `connectors::registry`)",
                            rel.display(),
                            n
                        ));
                    }
                }
                for named in engine_parts_named(line) {
                    match ENGINE_ORDER.iter().position(|p| *p == named) {
                        Some(r) if r <= rank => {}
                        Some(_) => wrong.push(format!(
                            "engine/{}:{}: `{part}` names `{named}`, a part above it",
                            rel.display(),
                            n
                        )),
                        None => wrong.push(format!(
                            "engine/{}:{}: names `crate::engine::{named}`, a part not in the order",
                            rel.display(),
                            n
                        )),
                    }
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "engine parts out of order:\n{}",
            wrong.join("\n")
        );
    }

    /// The identifier `text` starts with.
    fn ident(text: &str) -> String {
        text.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    }

    /// Every `.rs` file under `dir`: its path from `dir`, the folder or file
    /// it is in at the top (without `.rs`), and its text.
    fn sources(dir: &Path) -> Vec<(std::path::PathBuf, String, String)> {
        let mut files = Vec::new();
        visit(dir, &mut files);
        files
            .into_iter()
            .map(|file| {
                let rel = file.strip_prefix(dir).unwrap().to_path_buf();
                let top = rel.components().next().unwrap().as_os_str();
                let top = top.to_str().unwrap().trim_end_matches(".rs").to_string();
                let text = std::fs::read_to_string(&file).unwrap();
                (rel, top, text)
            })
            .collect()
    }

    /// The lines of code of `text`, numbered from 1: prose (comments) may
    /// point anywhere, code may not.
    fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
        text.lines()
            .enumerate()
            .map(|(n, line)| (n + 1, line))
            .filter(|(_, line)| !line.trim_start().starts_with("//"))
    }

    #[test]
    fn no_import_points_up() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut wrong = Vec::new();
        for (rel, layer, text) in sources(&src) {
            // The binary (main.rs, cli/) sits on top of everything; lib.rs declares the layers.
            if matches!(layer.as_str(), "lib" | "main" | "cli") {
                continue;
            }
            let allowed = allowed(&layer);
            for (n, line) in code_lines(&text) {
                for (at, _) in line.match_indices("crate::") {
                    if at > 0 && line[..at].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
                        continue;
                    }
                    let named = ident(&line[at + 7..]);
                    if !named.is_empty() && !allowed.contains(&named.as_str()) {
                        wrong.push(format!("{}:{}: names `crate::{named}`", rel.display(), n));
                    }
                }
                if layer != "wasm" && line.contains("bindings::") {
                    wrong.push(format!(
                        "{}:{}: names the WIT bindings outside wasm/",
                        rel.display(),
                        n
                    ));
                }
            }
        }
        assert!(
            wrong.is_empty(),
            "imports that point up a layer:\n{}",
            wrong.join("\n")
        );
    }
}
