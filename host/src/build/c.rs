//! placeholder
use super::stage::Stage;
use super::BuildError;
use std::path::Path;
/// Builds.
pub fn build(dir: &Path, _stage: &Stage, _out: &Path) -> Result<(), BuildError> {
    Err(BuildError::Layout {
        dir: dir.to_path_buf(),
        language: super::Language::C,
        message: "todo".into(),
    })
}
