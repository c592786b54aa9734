//! The crate's error type.

/// Everything that can go wrong in this crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A local I/O failure (binding the emulator's port, reading a file).
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// A value given by the user is not acceptable; the message names it and the fix.
    #[error("{0}")]
    InvalidInput(String),
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The one conversion of the crate's errors into DataFusion's: bad input is a planning error
/// with its message alone (it names what was wrong and the fix); anything else stays external.
impl From<Error> for datafusion::error::DataFusionError {
    fn from(e: Error) -> Self {
        match e {
            Error::InvalidInput(message) => Self::Plan(message),
            other => Self::External(Box::new(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_reach_datafusion_with_their_message() {
        let e: datafusion::error::DataFusionError =
            Error::InvalidInput("Unknown parameter 'aws_region'".into()).into();
        assert_eq!(
            e.to_string(),
            "Error during planning: Unknown parameter 'aws_region'"
        );
        let io: Error = std::io::Error::new(std::io::ErrorKind::AddrInUse, "port taken").into();
        assert_eq!(io.to_string(), "I/O error: port taken");
        let io: datafusion::error::DataFusionError = io.into();
        assert_eq!(io.to_string(), "External error: I/O error: port taken");
    }
}
