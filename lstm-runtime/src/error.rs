//! The crate's one error type. Every fallible runtime call (layer forward passes, the GEMM
//! wrappers) reports bad input through [`Error`] instead of panicking, naming the offending
//! tensor or option and what was expected of it.

/// Everything that can go wrong in the runtime.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A tensor has the wrong shape.
    ///
    /// `what` names the tensor the way the caller knows it (`input`, `h0`, `weight_ih`, …).
    #[error("`{what}` has shape {found:?}; expected {expected:?}")]
    ShapeMismatch {
        /// Name of the offending tensor.
        what: String,
        /// The shape it must have.
        expected: Vec<usize>,
        /// The shape it has.
        found: Vec<usize>,
    },
    /// A tensor is not stored contiguously in row-major order, which fused steps require of
    /// weights.
    #[error(
        "`{what}` is not a contiguous row-major array; expected standard layout \
         (`.as_standard_layout().into_owned()` makes one)"
    )]
    NotContiguous {
        /// Name of the offending tensor.
        what: String,
    },
    /// A combination of sizes or options the operation does not support.
    #[error("invalid `{option}`: {reason}")]
    Config {
        /// Name of the offending option or size (`recurrent_size`).
        option: String,
        /// Why the value is rejected and what would be accepted.
        reason: String,
    },
    /// A value is outside what the operation accepts: a class index past the number of
    /// classes, a sequence length past `seq_len`, a non-positive learning rate.
    #[error("invalid value in `{what}`: {reason}")]
    InvalidValue {
        /// Name of the offending tensor or option (`targets`, `lengths`, `lr`).
        what: String,
        /// What is wrong, and what would be accepted.
        reason: String,
    },
    /// A named tensor is absent: a parameter without a gradient, a checkpoint without a
    /// weight the model has.
    #[error("no tensor `{name}` in {source_name}")]
    MissingTensor {
        /// The tensor's name (`weight_ih_l0`, `model.head.weight`).
        name: String,
        /// Where it was looked for (`the gradients`, `checkpoint run/checkpoint.safetensors`).
        source_name: String,
    },
    /// A stored tensor has another element type than the one asked for.
    #[error("`{what}` has dtype {found}; expected {expected}")]
    DtypeMismatch {
        /// Name of the offending tensor.
        what: String,
        /// The dtype asked for (`f64`).
        expected: String,
        /// The dtype stored (`f32`, `bf16`, …).
        found: String,
    },
    /// Reading or writing a file failed.
    #[error("cannot {action} `{path}`: {message}")]
    Io {
        /// What was being done (`write`, `read`, `rename into place`).
        action: String,
        /// The file.
        path: String,
        /// The kind of failure, for callers that branch on it (`NotFound`).
        kind: std::io::ErrorKind,
        /// The operating system's message.
        message: String,
    },
    /// A file exists but is not what it should be: truncated, not safetensors, missing
    /// metadata.
    #[error("`{path}` is not a valid {format}: {reason}")]
    Format {
        /// The file.
        path: String,
        /// The expected format (`safetensors checkpoint`).
        format: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A file holds a tensor the model or layout has no place for: a parameter of another
    /// cell, a name that is not PyTorch's or Keras'.
    #[error("unexpected tensor `{name}` in {source_name}: {reason}")]
    UnexpectedTensor {
        /// The tensor's name in the file.
        name: String,
        /// Where it was found (`` `weights.safetensors` ``).
        source_name: String,
        /// Why it has no place.
        reason: String,
    },
    /// A size that cannot be allocated: a layer, a batch or a file header asking for more
    /// memory than the machine provides (see [`crate::alloc`]).
    #[error(
        "cannot allocate {what}: {} is more than this machine can provide",
        crate::alloc::human_bytes(*bytes)
    )]
    Allocation {
        /// The buffer and the sizes that make it (`the weights of hidden_size 100000000`).
        what: String,
        /// The bytes it needs (`u128::MAX` when even that overflows).
        bytes: u128,
    },
    /// Weights lack a parameter of the cell they are loaded into: they were saved from
    /// another cell.
    #[error(
        "no tensor `{name}` in {source_name}, which cell `{cell}` needs (were the weights \
         saved from another cell?)"
    )]
    MissingCellParameter {
        /// The cell's snake_case name (`peephole`).
        cell: String,
        /// The absent tensor (`peephole_i_l0`).
        name: String,
        /// Where it was looked for.
        source_name: String,
    },
}

impl Error {
    /// An [`Error::Io`] for `action` (`read`, `write`) on `path`.
    pub fn io(action: &str, path: &std::path::Path, err: &std::io::Error) -> Self {
        Error::Io {
            action: action.into(),
            path: path.display().to_string(),
            kind: err.kind(),
            message: err.to_string(),
        }
    }

    /// An [`Error::InvalidValue`] for `what`.
    pub fn invalid_value(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::InvalidValue {
            what: what.into(),
            reason: reason.into(),
        }
    }

    /// A [`Error::ShapeMismatch`] for the tensor `what`.
    pub fn shape_mismatch(what: impl Into<String>, expected: &[usize], found: &[usize]) -> Self {
        Error::ShapeMismatch {
            what: what.into(),
            expected: expected.to_vec(),
            found: found.to_vec(),
        }
    }
}

/// Result of fallible runtime operations.
pub type Result<T> = std::result::Result<T, Error>;

/// `Ok` if `found` equals `expected`, else a [`Error::ShapeMismatch`] naming `what`.
pub(crate) fn expect_shape(what: &str, expected: &[usize], found: &[usize]) -> Result<()> {
    if expected == found {
        Ok(())
    } else {
        Err(Error::shape_mismatch(what, expected, found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_tensor_and_the_expected_shape() {
        let err = Error::shape_mismatch("h0", &[3, 8], &[2, 8]);
        assert_eq!(err.to_string(), "`h0` has shape [2, 8]; expected [3, 8]");
        let err = Error::Config {
            option: "recurrent_size".into(),
            reason: "expected 8 (the hidden size), found 4".into(),
        };
        assert_eq!(
            err.to_string(),
            "invalid `recurrent_size`: expected 8 (the hidden size), found 4"
        );
    }

    #[test]
    fn expect_shape_accepts_equal_shapes_only() {
        assert_eq!(expect_shape("x", &[1, 2], &[1, 2]), Ok(()));
        assert_eq!(
            expect_shape("x", &[1, 2], &[2, 1]),
            Err(Error::shape_mismatch("x", &[1, 2], &[2, 1]))
        );
    }
}
