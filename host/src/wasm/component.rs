//! Loading operator components: checking that a `.wasm` file is a component of
//! the weir world, compiling it once and caching the compiled code by content
//! hash, and asking it to `describe()` itself.
//!
//! The cache lives in `$WEIR_CACHE_DIR`, else `$XDG_CACHE_HOME/weir`, else
//! `~/.cache/weir`, under `components/`, one file per (SHA-256 of the `.wasm`,
//! engine configuration) pair, written atomically. A second start of the same
//! `.wasm` deserializes it instead of compiling.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::component::{types::ComponentItem, Component, Linker};
use wasmtime::{Config, Engine};

use crate::model::OperatorSpec;
use crate::wasm::bindings::{OperatorPre, OperatorWorld, GUEST_INTERFACE, WIT_PACKAGE};
use crate::wasm::operator::HostCtx;

/// Why a `.wasm` file cannot be used as an operator. Every message is one line
/// that names the file.
#[derive(Debug, thiserror::Error)]
pub enum ComponentError {
    /// The file could not be read.
    #[error("cannot read `{path}`: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not WebAssembly at all.
    #[error("`{path}` is not a WebAssembly file (it does not start with `\\0asm`)")]
    NotWasm {
        /// The file.
        path: String,
    },
    /// A core module rather than a component.
    #[error("`{path}` is a core WebAssembly module, not a component: build the operator with `weir build` (or wrap the module with `wasm-tools component new`)")]
    CoreModule {
        /// The file.
        path: String,
    },
    /// Wasmtime could not compile it.
    #[error("`{path}` is not a valid component: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// It exports the weir interface at another version.
    #[error("`{path}` was built against `{found}`, but this weir runs `{GUEST_INTERFACE}`: rebuild it with a matching weir SDK")]
    WrongVersion {
        /// The file.
        path: String,
        /// The weir interface it exports.
        found: String,
    },
    /// It does not export the weir interface.
    #[error("`{path}` is not a weir operator: it does not export `{GUEST_INTERFACE}` (it exports {found})")]
    MissingExport {
        /// The file.
        path: String,
        /// What it exports.
        found: String,
    },
    /// It imports something the host does not provide.
    #[error("`{path}` imports `{name}`, which weir does not provide (weir provides `{WIT_PACKAGE}` and WASI 0.2)")]
    UnknownImport {
        /// The file.
        path: String,
        /// The import.
        name: String,
    },
    /// Its imports or exports do not have the types of the weir world.
    #[error("`{path}` does not match the weir operator world: {message}")]
    Link {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
    /// `describe()` failed or returned something unusable.
    #[error("`{path}`: describe() failed: {message}")]
    Describe {
        /// The file.
        path: String,
        /// Why.
        message: String,
    },
}

/// A loaded, checked operator component, ready to instantiate subtasks from.
#[derive(Clone)]
pub struct LoadedOperator {
    /// The `.wasm` file.
    pub path: PathBuf,
    /// Hex SHA-256 of the file's bytes.
    pub sha256: String,
    /// Size of the file in bytes.
    pub size: u64,
    /// What the operator says of itself.
    pub spec: OperatorSpec,
    /// The component's imports, by name.
    pub imports: Vec<String>,
    /// Whether the compiled code came from the cache.
    pub from_cache: bool,
    /// Ready-to-instantiate component.
    pub pre: OperatorPre<HostCtx>,
}

/// The wasmtime engine, linker and component cache shared by a job.
pub struct Components {
    engine: Engine,
    linker: Linker<HostCtx>,
    cache_dir: Option<PathBuf>,
}

fn one_line(e: &wasmtime::Error) -> String {
    let text = format!("{e:#}");
    text.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_CACHE_DIR") {
        return Some(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Some(PathBuf::from(dir).join("weir"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache").join("weir"))
}

impl Components {
    /// A new engine with the weir world and WASI 0.2 in its linker.
    pub fn new() -> wasmtime::Result<Self> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.cranelift_opt_level(wasmtime::OptLevel::Speed);
        // The CPU budget of a guest call (`[operators.limits] cpu_per_call`):
        // calls trap when the engine's epoch passes their deadline.
        config.epoch_interruption(true);
        if std::env::var_os("WEIR_PERF_MAP").is_some() {
            // `perf` names guest functions from /tmp/perf-PID.map (see BENCHMARKS.md).
            config.profiler(wasmtime::ProfilingStrategy::PerfMap);
        }
        let engine = Engine::new(&config)?;
        start_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        OperatorWorld::add_to_linker::<HostCtx, wasmtime::component::HasSelf<HostCtx>>(
            &mut linker,
            |ctx| ctx,
        )?;
        Ok(Components {
            engine,
            linker,
            cache_dir: default_cache_dir().map(|d| d.join("components")),
        })
    }

    /// Uses `dir` (or no cache at all) for compiled components, rather than
    /// the default of [`Components::new`].
    pub fn with_cache_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.cache_dir = dir;
        self
    }

    /// The engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    fn cache_path(&self, sha256: &str) -> Option<PathBuf> {
        let mut hasher = DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        let dir = self.cache_dir.as_ref()?;
        Some(dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish())))
    }

    /// Reads `path`, checks it, compiles it (or loads it from the cache) and
    /// asks it to describe itself.
    pub fn load(&self, path: &Path) -> Result<LoadedOperator, ComponentError> {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| ComponentError::Read {
            path: shown.clone(),
            source,
        })?;
        if bytes.len() < 8 || &bytes[0..4] != b"\0asm" {
            return Err(ComponentError::NotWasm { path: shown });
        }
        match bytes[4..8] {
            [1, 0, 0, 0] => return Err(ComponentError::CoreModule { path: shown }),
            [0x0d, 0, 1, 0] => {}
            _ => {
                return Err(ComponentError::Invalid {
                    path: shown,
                    message: format!("unknown wasm version/layer {:02x?}", &bytes[4..8]),
                })
            }
        }
        let sha256 = crate::model::hex(&Sha256::digest(&bytes));
        let started = Instant::now();
        let (component, from_cache) =
            self.compile(&bytes, &sha256)
                .map_err(|e| ComponentError::Invalid {
                    path: shown.clone(),
                    message: one_line(&e),
                })?;
        tracing::debug!(
            file = %shown,
            from_cache,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "component {}",
            if from_cache { "loaded from cache" } else { "compiled" }
        );
        let imports = self.check_world(&component, &shown)?;
        let instance_pre =
            self.linker
                .instantiate_pre(&component)
                .map_err(|e| ComponentError::Link {
                    path: shown.clone(),
                    message: one_line(&e),
                })?;
        let pre = OperatorPre::new(instance_pre).map_err(|e| ComponentError::Link {
            path: shown.clone(),
            message: one_line(&e),
        })?;
        let spec = describe(&pre).map_err(|message| ComponentError::Describe {
            path: shown.clone(),
            message,
        })?;
        Ok(LoadedOperator {
            path: path.to_path_buf(),
            sha256,
            size: bytes.len() as u64,
            spec,
            imports,
            from_cache,
            pre,
        })
    }

    fn compile(&self, bytes: &[u8], sha256: &str) -> wasmtime::Result<(Component, bool)> {
        let cached = self.cache_path(sha256);
        if let Some(file) = cached.as_ref().filter(|f| f.exists()) {
            // SAFETY: the file was written by `Component::serialize` of this
            // engine configuration (its name carries the engine's compatibility
            // hash) into the user's own cache directory, atomically by rename;
            // wasmtime checks its header and engine compatibility again.
            #[allow(unsafe_code)]
            match unsafe { Component::deserialize_file(&self.engine, file) } {
                Ok(component) => return Ok((component, true)),
                Err(e) => {
                    tracing::warn!(file = %file.display(), "ignoring unusable cached component: {}", one_line(&e))
                }
            }
        }
        let component = Component::new(&self.engine, bytes)?;
        if let Some(file) = cached {
            if let Err(e) = write_cache(&file, &component) {
                tracing::warn!(file = %file.display(), "cannot cache the compiled component: {e}");
            }
        }
        Ok((component, false))
    }

    /// Checks the component's exports and imports by name, so that the usual
    /// mistakes get a message that says what is wrong.
    fn check_world(
        &self,
        component: &Component,
        shown: &str,
    ) -> Result<Vec<String>, ComponentError> {
        let ty = component.component_type();
        let exports: Vec<String> = ty
            .exports(&self.engine)
            .map(|(n, _)| n.to_string())
            .collect();
        if !exports.iter().any(|e| e == GUEST_INTERFACE) {
            if let Some(other) = exports
                .iter()
                .find(|e| e.starts_with("weir:operator/guest@"))
            {
                return Err(ComponentError::WrongVersion {
                    path: shown.to_string(),
                    found: other.clone(),
                });
            }
            let found = if exports.is_empty() {
                "nothing".to_string()
            } else {
                exports
                    .iter()
                    .map(|e| format!("`{e}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            return Err(ComponentError::MissingExport {
                path: shown.to_string(),
                found,
            });
        }
        let mut imports = Vec::new();
        for (name, item) in ty.imports(&self.engine) {
            let provided = name.starts_with("wasi:")
                || (name.starts_with("weir:operator/") && name.ends_with("@0.1.0"));
            if !provided || !matches!(item.ty, ComponentItem::ComponentInstance(_)) {
                return Err(ComponentError::UnknownImport {
                    path: shown.to_string(),
                    name: name.to_string(),
                });
            }
            imports.push(name.to_string());
        }
        Ok(imports)
    }
}

/// How often the engine's epoch advances: the unit of the CPU budget.
pub const EPOCH_TICK: std::time::Duration = std::time::Duration::from_millis(10);

/// Advances `engine`'s epoch every [`EPOCH_TICK`] on a thread of its own,
/// until the engine is dropped.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    let spawned = std::thread::Builder::new()
        .name("weir-epoch".into())
        .spawn(move || loop {
            std::thread::sleep(EPOCH_TICK);
            match weak.upgrade() {
                Some(engine) => engine.increment_epoch(),
                None => break,
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the CPU budget clock: {e}; guest calls are not timed");
    }
}

fn write_cache(file: &Path, component: &Component) -> std::io::Result<()> {
    let bytes = component
        .serialize()
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let dir = file.parent().expect("cache files live in a directory");
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("component"),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, file)
}

/// Instantiates the component once, with no state, to call `describe()`,
/// under the default budgets (a job's own `[operators.limits]` apply from
/// its subtasks' instantiation on).
fn describe(pre: &OperatorPre<HostCtx>) -> Result<OperatorSpec, String> {
    let mut store = crate::wasm::operator::new_store(pre.engine(), HostCtx::for_describe());
    store.set_epoch_deadline(crate::wasm::operator::deadline_ticks(
        crate::wasm::limits::Limits::default().cpu_per_call,
    ));
    store.data().start_call();
    let world = pre.instantiate(&mut store).map_err(|e| {
        format!(
            "cannot instantiate: {}",
            crate::wasm::operator::call_error(&e, store.data())
        )
    })?;
    let spec = world
        .weir_operator_guest()
        .call_describe(&mut store)
        .map(OperatorSpec::from)
        .map_err(|e| crate::wasm::operator::call_error(&e, store.data()))?;
    let mut names = std::collections::HashSet::new();
    for s in &spec.states {
        if s.name.is_empty() {
            return Err("a declared state has an empty name".to_string());
        }
        if !names.insert(s.name.as_str()) {
            return Err(format!("state `{}` is declared twice", s.name));
        }
    }
    Ok(spec)
}
