//! Python operators: `componentize-py` (PyPI, 0.25.1) turns the module
//! `app.py`, the SDK module `weir` and a CPython interpreter into one
//! component.
//!
//! Staged: `app/` (a copy of the plugin folder, so it may hold more modules
//! that `app.py` imports), `sdk/weir.py`, `wit/`. Then, in the staging folder:
//! `componentize-py -d wit -w operator componentize app -p app -p sdk -o OUT`.

use std::path::Path;

use super::stage::{Stage, SDK_PYTHON, WIT};
use super::tools::{self, Tool};
use super::{BuildError, Language};

/// The tool, and how it is installed.
pub const COMPONENTIZE_PY: Tool = Tool {
    name: "componentize-py",
    installer: "python",
    install: "pip install componentize-py==0.25.1",
};

/// Builds the Python operator in `dir` into `out`.
pub fn build(dir: &Path, stage: &Stage, out: &Path) -> Result<(), BuildError> {
    if !dir.join("app.py").is_file() {
        return Err(BuildError::Layout {
            dir: dir.to_path_buf(),
            language: Language::Python,
            message: "no app.py: the operator module must be called app.py".to_string(),
        });
    }
    let componentize = tools::require(COMPONENTIZE_PY, dir, Language::Python)?;
    stage.copy_plugin(dir, "app")?;
    stage.write(dir, "sdk", SDK_PYTHON)?;
    stage.write(dir, "wit", WIT)?;
    let args: Vec<&std::ffi::OsStr> = [
        "-d",
        "wit",
        "-w",
        "operator",
        "componentize",
        "app",
        "-p",
        "app",
        "-p",
        "sdk",
        "-o",
    ]
    .iter()
    .map(|a| a.as_ref())
    .chain([out.as_os_str()])
    .collect();
    tools::run(dir, &componentize, &args, stage.path(), &[])
}
