//! JavaScript operators: `componentize-js` (npm
//! `@bytecodealliance/componentize-js` 0.23.0) snapshots the operator's ES
//! module, the SDK module `weir` and the SpiderMonkey engine into one
//! component.
//!
//! Staged: the plugin folder's files, `weir.js` next to them (operators
//! `import { operator } from "weir"`), and the WIT under `.weir-wit/` (it
//! must sit under the current folder). Then, in the staging folder:
//! `componentize-js MAIN --wit .weir-wit --world-name operator -d http
//! fetch-event -o OUT`, where MAIN is `package.json`'s `main` (default
//! `index.js`). `wasi:http` is left out so that the component links against
//! WASI alone; stdio, random and clocks stay (console output reaches weir's
//! log).

use std::path::Path;

use super::stage::{Stage, SDK_JS, WIT};
use super::tools::{self, Tool};
use super::{BuildError, Language};

/// The tool, and how it is installed.
pub const COMPONENTIZE_JS: Tool = Tool {
    name: "componentize-js",
    installer: "js",
    install: "npm install -g @bytecodealliance/componentize-js@0.23.0",
};

/// Builds the JavaScript operator in `dir` into `out`.
pub fn build(dir: &Path, stage: &Stage, out: &Path) -> Result<(), BuildError> {
    let main = entry(dir)?;
    if !dir.join(&main).is_file() {
        return Err(BuildError::Layout {
            dir: dir.to_path_buf(),
            language: Language::JavaScript,
            message: format!("no `{main}`: package.json names it as `main`"),
        });
    }
    let componentize = tools::require(COMPONENTIZE_JS, dir, Language::JavaScript)?;
    stage.copy_plugin(dir, "src")?;
    stage.write(dir, "src", SDK_JS)?;
    stage.write(dir, "src/.weir-wit", WIT)?;
    let flags = [
        main.as_str(),
        "--wit",
        ".weir-wit",
        "--world-name",
        "operator",
        "-d",
        "http",
        "fetch-event",
        "-o",
    ];
    let args: Vec<&std::ffi::OsStr> = flags
        .iter()
        .map(|a| a.as_ref())
        .chain([out.as_os_str()])
        .collect();
    tools::run(dir, &componentize, &args, &stage.join("src"), &[])
}

/// The entry module: `package.json`'s `main`, or `index.js`.
fn entry(dir: &Path) -> Result<String, BuildError> {
    let layout = |message: String| BuildError::Layout {
        dir: dir.to_path_buf(),
        language: Language::JavaScript,
        message,
    };
    let text = std::fs::read_to_string(dir.join("package.json"))
        .map_err(|e| layout(format!("cannot read package.json: {e}")))?;
    let json: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| layout(format!("package.json is not valid JSON: {e}")))?;
    match &json["main"] {
        serde_json::Value::Null => Ok("index.js".to_string()),
        serde_json::Value::String(main) if !main.is_empty() && !main.contains("..") => {
            Ok(main.trim_start_matches("./").to_string())
        }
        other => Err(layout(format!(
            "package.json's `main` must be a relative file name, found {other}"
        ))),
    }
}
