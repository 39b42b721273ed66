//! `weir new --lang LANG NAME`: scaffolds an operator project (see
//! `weir_host::scaffold`).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use weir_host::build::Language;

/// The languages `weir new` scaffolds.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum Lang {
    Rust,
    Python,
    Js,
    C,
    Go,
}

/// Arguments of `weir new`.
#[derive(Debug, Args)]
pub struct NewArgs {
    /// The operator's language.
    #[arg(long, value_enum)]
    lang: Lang,
    /// The project folder to create; its last part is the operator's name
    /// (lowercase letters, digits and `-`).
    name: PathBuf,
    /// Rust only: the weir SDK folder to depend on (default: the checkout weir was built from).
    #[arg(long, value_name = "DIR")]
    rust_sdk: Option<PathBuf>,
}

impl NewArgs {
    pub fn execute(self) -> anyhow::Result<()> {
        let language = match self.lang {
            Lang::Rust => Language::Rust,
            Lang::Python => Language::Python,
            Lang::Js => Language::JavaScript,
            Lang::C => Language::C,
            Lang::Go => Language::Go,
        };
        let files =
            weir_host::scaffold::new_project(&self.name, language, self.rust_sdk.as_deref())?;
        let dir = self.name.display();
        outln!("created {language} operator `{dir}`:");
        for f in files {
            outln!("  {dir}/{f}");
        }
        outln!("next: weir build {dir} && weir run {dir}/job.toml");
        Ok(())
    }
}
