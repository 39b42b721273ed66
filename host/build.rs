//! Embeds into the `weir` binary what `weir build` and `weir new` write out
//! for a plugin: the WIT contract (`wit/`), each language's SDK
//! (`sdk/<lang>/`) and each language's `keyed-count` example
//! (`plugins/<lang>/keyed-count/`, the `weir new` template). The binary thus
//! builds operators against exactly the contract it runs, from any folder.
//!
//! Generates `$OUT_DIR/embedded.rs`: one `&[(&str, &[u8])]` of relative
//! paths and contents per folder. An SDK's tests (`tests/`, `*_test.go`)
//! are left out.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn files(dir: &Path, skip: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with('.')
            || skip.contains(&name.as_str())
            || name.ends_with(".wasm")
            || name.ends_with("_test.go")
            || name == "node_modules"
            || name == "target"
            || name == "__pycache__"
        {
            continue;
        }
        if path.is_dir() {
            files(&path, skip, out);
        } else {
            out.push(path);
        }
    }
}

fn main() {
    // Read when the script runs, not baked in when it is compiled: cargo
    // shares a compiled build script between checkouts of the same
    // workspace that use one target directory.
    let manifest_dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let repo = Path::new(&manifest_dir).parent().unwrap().to_path_buf();
    let mut code = String::new();
    let mut table = |name: &str, dir: PathBuf, skip: &[&str]| {
        println!("cargo:rerun-if-changed={}", dir.display());
        let mut list = Vec::new();
        files(&dir, skip, &mut list);
        assert!(
            !list.is_empty(),
            "{} is missing or empty: the weir binary embeds it (build from a full checkout)",
            dir.display()
        );
        writeln!(
            code,
            "/// The files of `{}`: relative path and contents.",
            dir.strip_prefix(&repo).unwrap().display()
        )
        .unwrap();
        writeln!(code, "pub static {name}: &[(&str, &[u8])] = &[").unwrap();
        for path in list {
            println!("cargo:rerun-if-changed={}", path.display());
            let rel = path
                .strip_prefix(&dir)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            writeln!(
                code,
                "    ({rel:?}, include_bytes!({:?})),",
                path.display().to_string()
            )
            .unwrap();
        }
        writeln!(code, "];").unwrap();
    };
    table("WIT", repo.join("wit"), &[]);
    for lang in ["python", "js", "c", "go"] {
        let upper = lang.to_uppercase();
        table(
            &format!("SDK_{upper}"),
            repo.join("sdk").join(lang),
            // The SDKs' tests of the shared vectors are not built into operators.
            &["README.md", "build.sh", "tests"],
        );
        table(
            &format!("TEMPLATE_{upper}"),
            repo.join("plugins").join(lang).join("keyed-count"),
            &[],
        );
    }
    table(
        "TEMPLATE_RUST",
        repo.join("plugins/rust/keyed-count"),
        &["Cargo.toml"],
    );
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("embedded.rs");
    std::fs::write(out, code).unwrap();
}
