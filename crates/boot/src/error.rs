//! The crate's one error type.

/// What went wrong reading or answering the boot protocol.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BootError {
    /// A boot variable the step needs is not set.
    #[error("boot variable {var} is not set")]
    Missing {
        /// The environment variable.
        var: &'static str,
    },
    /// A boot variable is set but unusable.
    #[error("boot variable {var} is invalid: {reason}")]
    Invalid {
        /// The environment variable.
        var: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl BootError {
    pub(crate) fn invalid(var: &'static str, reason: impl Into<String>) -> Self {
        BootError::Invalid {
            var,
            reason: reason.into(),
        }
    }
}
