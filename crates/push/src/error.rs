//! Configuration errors: the operator's to fix, reported when the senders are built.

use std::path::{Path, PathBuf};

/// A push provider's configuration could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A credential file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A credential file or value is malformed.
    #[error("{what}: {reason}")]
    Invalid {
        /// The file or setting.
        what: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(what: impl AsWhat, reason: impl std::fmt::Display) -> Self {
        ConfigError::Invalid {
            what: what.as_what(),
            reason: reason.to_string(),
        }
    }
}

/// Names a setting or a file in an error.
pub(crate) trait AsWhat {
    fn as_what(&self) -> String;
}

impl AsWhat for &str {
    fn as_what(&self) -> String {
        (*self).to_owned()
    }
}

impl AsWhat for &Path {
    fn as_what(&self) -> String {
        self.display().to_string()
    }
}

impl AsWhat for &PathBuf {
    fn as_what(&self) -> String {
        self.display().to_string()
    }
}
