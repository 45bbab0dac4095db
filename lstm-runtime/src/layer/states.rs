//! The carried states at the layer's boundary: a call's initial states and its final states
//! as the caller names them (`c0`/`c_n`, and `n`, `m`, … for the states a spec declares),
//! packed into and out of the runtime's per-row state buffers, which hold every carried
//! state of a row one block of `hidden` values after another
//! ([`CellSpec::states`](crate::CellSpec::states)).

use std::collections::BTreeMap;

use ndarray::{Array3, ArrayView3, s};

use crate::cell::CellSpec;
use crate::error::{Error, Result, expect_shape};
use crate::float::Float;

/// Copies `value` `(n, batch, hidden)` into state `name`'s block of `packed`
/// `(n, batch, states · hidden)`, checking its shape under the name `what`.
pub(crate) fn put<F: Float>(
    spec: &CellSpec,
    packed: &mut Array3<F>,
    name: &str,
    value: ArrayView3<'_, F>,
    what: &str,
) -> Result<()> {
    let (n, batch, width) = packed.dim();
    let hidden = width.checked_div(spec.states.len()).unwrap_or(0);
    let Some(block) = spec.state_block(name) else {
        return Err(unknown(spec, name, what));
    };
    expect_shape(what, &[n, batch, hidden], value.shape())?;
    packed
        .slice_mut(s![.., .., block * hidden..(block + 1) * hidden])
        .assign(&value);
    Ok(())
}

/// State `name`'s block of `packed` `(n, batch, states · hidden)`, if the cell carries it.
pub(crate) fn block<F: Float>(
    spec: &CellSpec,
    packed: &Array3<F>,
    name: &str,
    hidden: usize,
) -> Option<Array3<F>> {
    let block = spec.state_block(name)?;
    Some(
        packed
            .slice(s![.., .., block * hidden..(block + 1) * hidden])
            .to_owned(),
    )
}

/// The declared states' blocks of `packed`, by name (everything but `c`).
pub(crate) fn extras<F: Float>(
    spec: &CellSpec,
    packed: &Array3<F>,
    hidden: usize,
) -> BTreeMap<String, Array3<F>> {
    spec.extra_states()
        .iter()
        .filter_map(|name| Some((name.to_string(), block(spec, packed, name, hidden)?)))
        .collect()
}

/// `(n, batch, states · hidden)` zeros: the packed states of `n` (layer, direction) pairs.
pub(crate) fn zeros<F: Float>(spec: &CellSpec, n: usize, batch: usize, hidden: usize) -> Array3<F> {
    Array3::zeros((n, batch, spec.state_width(hidden)))
}

/// The error for a state the cell does not carry, naming what the caller gave.
pub(crate) fn unknown(spec: &CellSpec, name: &str, what: &str) -> Error {
    let carried = if spec.states.is_empty() {
        "none besides h".to_string()
    } else {
        spec.states.join(", ")
    };
    Error::Config {
        option: what.to_string(),
        reason: format!(
            "cell `{}` carries no state `{name}` (its states: {carried})",
            spec.name
        ),
    }
}
