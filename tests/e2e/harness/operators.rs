//! The operators the tests run, built from source with the real `weir
//! build`: lazily, each the first time a test asks for it, and once per
//! test run however many tests ask at the same time (a `OnceLock` each:
//! the others wait for that one build, other operators build meanwhile).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use super::fixtures::root;
use super::process::Weir;

/// Every operator by name, with its folder: the examples in `plugins/rust`,
/// the test-only ones in `tests/plugins`, and the examples in the other
/// languages as `LANG/NAME` (see [`polyglot`]).
const OPERATORS: &[(&str, &str)] = &[
    ("word-split", "plugins/rust/word-split"),
    ("map", "plugins/rust/map"),
    ("keyed-count", "plugins/rust/keyed-count"),
    ("keyed-count-v2", "plugins/rust/keyed-count-v2"),
    ("keyed-count-v3", "plugins/rust/keyed-count-v3"),
    ("windowed-sum", "plugins/rust/windowed-sum"),
    ("dedupe", "plugins/rust/dedupe"),
    ("probe", "tests/plugins/probe"),
    ("gate", "tests/plugins/gate"),
    ("swap-trap", "tests/plugins/swap-trap"),
    ("count-map", "tests/plugins/count-map"),
    ("swap-reject", "tests/plugins/swap-reject"),
    ("twin-handles", "tests/plugins/twin-handles"),
    ("hostile-spin", "tests/plugins/hostile/spin"),
    ("hostile-hog", "tests/plugins/hostile/hog"),
    ("hostile-trap", "tests/plugins/hostile/trap"),
    ("hostile-panic", "tests/plugins/hostile/panic"),
    ("hostile-flood", "tests/plugins/hostile/flood"),
    ("hostile-ghost-state", "tests/plugins/hostile/ghost-state"),
    ("hostile-escape", "tests/plugins/hostile/escape"),
    ("hostile-garbage", "tests/plugins/hostile/garbage"),
    ("boom-python", "tests/plugins/boom-python"),
    ("boom-js", "tests/plugins/boom-js"),
    ("boom-c", "tests/plugins/boom-c"),
    ("boom-go", "tests/plugins/boom-go"),
    ("python/keyed-count", "plugins/python/keyed-count"),
    ("python/windowed-sum", "plugins/python/windowed-sum"),
    ("js/keyed-count", "plugins/js/keyed-count"),
    ("js/windowed-sum", "plugins/js/windowed-sum"),
    ("c/keyed-count", "plugins/c/keyed-count"),
    ("c/windowed-sum", "plugins/c/windowed-sum"),
    ("go/keyed-count", "plugins/go/keyed-count"),
    ("go/windowed-sum", "plugins/go/windowed-sum"),
];

/// The operator `name` of [`OPERATORS`], built the first time it is asked for.
pub fn operator(name: &str) -> PathBuf {
    static BUILT: [OnceLock<PathBuf>; OPERATORS.len()] =
        [const { OnceLock::new() }; OPERATORS.len()];
    let at = OPERATORS
        .iter()
        .position(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no operator {name}"));
    BUILT[at]
        .get_or_init(|| build(&root().join(OPERATORS[at].1)))
        .clone()
}

/// The languages every example operator is written in.
pub const LANGUAGES: [&str; 5] = ["rust", "python", "js", "c", "go"];

/// `plugins/<lang>/<name>`, built like every [`operator`].
pub fn polyglot(lang: &str, name: &str) -> PathBuf {
    if lang == "rust" {
        operator(name)
    } else {
        operator(&format!("{lang}/{name}"))
    }
}

/// Builds the operator in `dir` with `weir build`; returns the component's path.
fn build(dir: &Path) -> PathBuf {
    let built = Weir::new(&["build"]).arg(dir).run();
    assert!(
        built.status.success(),
        "weir build {dir:?} failed:\n{}",
        built.stderr
    );
    let path = PathBuf::from(built.stdout.trim());
    assert!(
        path.is_file(),
        "weir build printed {path:?}, which is not a file"
    );
    path
}
