//! The one function of this module that does IO: read a policy file and hand its bytes to the
//! pure parser.

use std::path::Path;

use super::error::PolicyError;
use super::model::Policy;

/// Reads and parses a policy file. Messages name the file as given.
pub fn load_file(path: impl AsRef<Path>) -> Result<Policy, PolicyError> {
    let path = path.as_ref();
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| PolicyError::Io { file: file.clone(), source })?;
    Policy::parse(&file, &bytes)
}
