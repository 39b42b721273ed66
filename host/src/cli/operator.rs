//! `weir operator inspect FILE.wasm [--json]`: what an operator component says
//! of itself (name, version, declared states) and what it imports.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::json;

use weir_host::state::keyed::kind_name;
use weir_host::wasm::component::Components;

/// `weir operator ...`
#[derive(Debug, Subcommand)]
pub enum OperatorCommand {
    /// Print an operator's name, version, declared states and imports.
    Inspect(InspectArgs),
}

/// Arguments of `weir operator inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The `.wasm` component.
    file: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

impl OperatorCommand {
    pub fn execute(self) -> anyhow::Result<()> {
        match self {
            OperatorCommand::Inspect(args) => args.execute(),
        }
    }
}

impl InspectArgs {
    fn execute(self) -> anyhow::Result<()> {
        let components =
            Components::new().map_err(|e| anyhow::anyhow!("cannot start wasmtime: {e}"))?;
        let op = components.load(&self.file)?;
        if self.json {
            let states: Vec<_> = op
                .spec
                .states
                .iter()
                .map(|s| json!({"name": s.name, "kind": kind_name(s.kind), "version": s.version}))
                .collect();
            let out = json!({
                "name": op.spec.name,
                "version": op.spec.version,
                "file": self.file.display().to_string(),
                "size": op.size,
                "sha256": op.sha256,
                "states": states,
                "imports": op.imports,
            });
            outln!("{}", serde_json::to_string_pretty(&out)?);
            return Ok(());
        }
        outln!("operator  {} {}", op.spec.name, op.spec.version);
        outln!("file      {} ({} bytes)", self.file.display(), op.size);
        outln!("sha256    {}", op.sha256);
        if op.spec.states.is_empty() {
            outln!("states    (none)");
        }
        for (i, s) in op.spec.states.iter().enumerate() {
            let label = if i == 0 { "states" } else { "" };
            outln!(
                "{label:<9} {}  {}  v{}",
                s.name,
                kind_name(s.kind),
                s.version
            );
        }
        for (i, name) in op.imports.iter().enumerate() {
            let label = if i == 0 { "imports" } else { "" };
            outln!("{label:<9} {name}");
        }
        Ok(())
    }
}
