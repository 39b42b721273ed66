//! `weir build PLUGIN_DIR [-o OUT.wasm]`: builds an operator and prints the
//! path of the `.wasm` component.

use std::path::PathBuf;

use clap::Args;

/// Arguments of `weir build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The operator's source folder (the language is detected from it).
    dir: PathBuf,
    /// Where to write the component (default: in the folder, named after the crate).
    #[arg(short, long)]
    out: Option<PathBuf>,
}

impl BuildArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let path = weir_host::build::build_plugin(&self.dir, self.out.as_deref())?;
        outln!("{}", path.display());
        Ok(())
    }
}
