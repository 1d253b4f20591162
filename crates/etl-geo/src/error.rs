//! The fatal reading error shared by every format reader.

use std::io;

/// A position in the input: 1-based line, 1-based byte column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Position {
    pub(crate) line: u64,
    pub(crate) column: u64,
}

/// A failure that ends reading an input. Problems confined to one record are
/// [`Rejection`](crate::Rejection)s instead and reading continues.
///
/// `Display` is `LINE:COLUMN: message` (the caller prefixes the file name), or
/// `read error: …` for I/O failures.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading the underlying input failed; a retry may succeed.
    #[error("read error: {0}")]
    Io(#[from] io::Error),
    /// The input is malformed at this position (JSON syntax, broken CSV structure).
    #[error("{line}:{column}: {message}")]
    Syntax {
        line: u64,
        column: u64,
        message: String,
    },
    /// The input as a whole is refused, at no particular line: an unsupported format,
    /// a hostile archive (zip slip, symlink, bomb), a size limit, no features at all.
    #[error("{0}")]
    Refused(String),
    /// The input is well-formed but cannot be read as features: wrong document type,
    /// no geometry column, or a nesting or size limit exceeded.
    #[error("{line}:{column}: {message}")]
    Invalid {
        line: u64,
        column: u64,
        message: String,
    },
}

impl ReadError {
    /// Line and column of the problem, `None` for I/O errors.
    pub fn position(&self) -> Option<(u64, u64)> {
        match self {
            ReadError::Io(_) | ReadError::Refused(_) => None,
            ReadError::Syntax { line, column, .. } | ReadError::Invalid { line, column, .. } => {
                Some((*line, *column))
            }
        }
    }

    /// True for failures of the underlying reader, which may go away on retry.
    pub fn is_io(&self) -> bool {
        matches!(self, ReadError::Io(_))
    }

    pub(crate) fn syntax(at: Position, message: impl Into<String>) -> Self {
        ReadError::Syntax {
            line: at.line,
            column: at.column,
            message: message.into(),
        }
    }

    pub(crate) fn invalid(at: Position, message: impl Into<String>) -> Self {
        ReadError::Invalid {
            line: at.line,
            column: at.column,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_line_colon_column() {
        let e = ReadError::syntax(
            Position {
                line: 3,
                column: 17,
            },
            "expected value",
        );
        assert_eq!(e.to_string(), "3:17: expected value");
        assert_eq!(e.position(), Some((3, 17)));
        assert!(!e.is_io());
    }

    #[test]
    fn io_errors_are_distinguishable() {
        let e = ReadError::from(io::Error::other("disk on fire"));
        assert_eq!(e.to_string(), "read error: disk on fire");
        assert_eq!(e.position(), None);
        assert!(e.is_io());
    }
}
