//! Sizes checked before they are allocated, so a size the machine cannot provide (a hidden
//! size of 10⁸, a batch of 10⁸ sequences, a file header that claims 30 GB) is an
//! [`Error::Allocation`] naming it instead of an abort. Rust aborts the process when an
//! allocation fails, and `ndarray` panics when a shape's element count overflows, so every
//! large buffer is sized here first:
//!
//! - the byte count is computed without overflow (a count past `isize::MAX` bytes can never
//!   be allocated);
//! - a count of at least [`PROBE_BYTES`] is then asked of the allocator with
//!   [`Vec::try_reserve_exact`] and given back at once. The reservation touches no page, so it
//!   costs a system call, and it fails for what the operating system will not provide (on
//!   Linux, by default, more than its RAM and swap).
//!
//! The layer checks its weights in [`Lstm::new`](crate::Lstm::new) and the activations of
//! a call in `forward` and `forward_train`; the file readers check every header's claim
//! against the file's length before allocating.

use crate::error::{Error, Result};
use crate::layer::config::LstmConfig;

/// Requests below this many bytes are not probed: they are far below any machine this runs
/// on, and the hot paths (a batch-1 step) then pay nothing.
pub const PROBE_BYTES: u128 = 1 << 28;

/// `Ok` if `elements` values of `element_size` bytes each can be allocated; `what` names
/// the buffer in the error (`the weights of hidden_size 100000000`).
///
/// # Errors
///
/// [`Error::Allocation`] naming `what` and the size in bytes.
pub fn check_allocation(what: &str, elements: u128, element_size: usize) -> Result<()> {
    let bytes = elements.checked_mul(element_size as u128);
    let reject = || Error::Allocation {
        what: what.into(),
        bytes: bytes.unwrap_or(u128::MAX),
    };
    let Some(bytes) = bytes else {
        return Err(reject());
    };
    if bytes > isize::MAX as u128 {
        return Err(reject());
    }
    if bytes >= PROBE_BYTES {
        let mut probe: Vec<u8> = Vec::new();
        // `bytes` fits `isize` (checked above), so the cast keeps it.
        probe
            .try_reserve_exact(bytes as usize)
            .map_err(|_| reject())?;
    }
    Ok(())
}

/// The product of `factors`, saturating at `u128::MAX` (which no allocation passes).
pub fn product(factors: &[usize]) -> u128 {
    factors
        .iter()
        .try_fold(1u128, |total, &factor| total.checked_mul(factor as u128))
        .unwrap_or(u128::MAX)
}

/// An upper estimate of the values a layer of `config` with `gates` gates stores as weights.
pub(crate) fn weight_elements(config: &LstmConfig, gates: usize) -> u128 {
    let cells = product(&[config.num_layers, config.num_directions()]);
    let dims = config.cell_dims(config.num_layers.saturating_sub(1));
    let widest_input = config.input_size.max(dims.input_size);
    // W_ih, W_hh, two biases, the constant projection, and up to a few per-unit parameters.
    let per_gate_row = product(&[widest_input])
        .saturating_add(dims.recurrent_size as u128)
        .saturating_add(config.constant_size as u128)
        .saturating_add(8);
    let per_cell = product(&[gates, config.hidden_size])
        .saturating_mul(per_gate_row)
        .saturating_add(product(&[config.proj_size, config.hidden_size]));
    cells.saturating_mul(per_cell)
}

/// An upper estimate of the values a training call over `(seq_len, batch)` keeps at once:
/// per time step and sequence, the input, each layer's output, and each layer's tape (its
/// pre-activations, gates and states, a few times the gate width).
pub(crate) fn activation_elements(
    config: &LstmConfig,
    gates: usize,
    seq_len: usize,
    batch: usize,
) -> u128 {
    let per_cell = product(&[gates.max(1) + 4, config.hidden_size]).saturating_mul(2);
    let per_position = (config.input_size as u128).saturating_add(
        product(&[config.num_layers, config.num_directions()]).saturating_mul(per_cell),
    );
    product(&[seq_len, batch]).saturating_mul(per_position)
}

/// An upper estimate of the values an inference call over `(seq_len, batch)` returns and
/// keeps: the output of every step and the current layer's input.
pub(crate) fn output_elements(config: &LstmConfig, seq_len: usize, batch: usize) -> u128 {
    let per_position = (config.input_size as u128)
        .saturating_add(product(&[config.num_directions(), config.hidden_size]).saturating_mul(2));
    product(&[seq_len, batch]).saturating_mul(per_position)
}

/// A byte count as people read it: `1.6 TB`, `12.0 MB`, `512 bytes`.
pub fn human_bytes(bytes: u128) -> String {
    if bytes == u128::MAX {
        return "more than 2^128 bytes".into();
    }
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 1000 {
        return format!("{bytes} bytes");
    }
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 1000.0 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflowing_and_impossible_sizes_are_errors_naming_them() {
        let err = check_allocation("the input", product(&[usize::MAX, 3]), 4).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot allocate the input: 221.4 EB is more than this machine can provide"
        );
        // 2^62 bytes fit `isize` but no machine: the probe refuses them.
        let err = check_allocation("the weights", 1 << 60, 4).unwrap_err();
        assert!(matches!(err, Error::Allocation { bytes, .. } if bytes == 1 << 62));
        assert!(check_allocation("small", 1000, 8).is_ok());
        assert!(check_allocation("probed but possible", PROBE_BYTES, 1).is_ok());
    }

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(1_600_000_000_000), "1.6 TB");
        assert_eq!(human_bytes(30_000_000_000), "30.0 GB");
    }

    #[test]
    fn the_weight_estimate_covers_the_weights() {
        let config = LstmConfig::new(7, 5)
            .with_num_layers(2)
            .with_bidirectional(true);
        // Layer 2 reads 10 inputs: 4·5·(10 + 5 + 2) per direction, and layer 1 less.
        let exact = 2 * 4 * 5 * (7 + 5 + 2) + 2 * 4 * 5 * (10 + 5 + 2);
        let estimate = weight_elements(&config, 4);
        assert!(
            estimate >= exact as u128 && estimate < 4 * exact as u128,
            "{estimate}"
        );
    }
}
