//! A call checked and put in the shape the time loops read ([`Prepared`]): the input
//! time-major in standard layout (reversed for `go_backwards`), the validity of its steps, the
//! initial states (given, carried or zeros), the constants, and the masks and dropout seed a
//! training call draws.

use std::borrow::Cow;

use ndarray::{Array3, ArrayView, ArrayView2, ArrayView3, CowArray, Dimension, Ix3};
use rand::Rng;

use super::call::{Call, Mode};
use super::{Lstm, StatePair, states};
use crate::cell::Cell;
use crate::error::{Error, Result, expect_shape};
use crate::recurrence::mask::Validity;
use crate::regularization::masks::RecurrentMasks;

/// A call's inputs, checked and put in the shape the time loop reads: the input borrowed for
/// `'i`, the call's other arrays for `'c`.
pub(super) struct Prepared<'i, 'c, F: Clone> {
    /// Time-major, standard layout, reversed when `go_backwards`.
    pub(super) input: CowArray<'i, F, Ix3>,
    /// `input` when it is the caller's own array (not copied to reverse or lay it out).
    pub(super) borrowed: Option<ArrayView3<'i, F>>,
    /// Of the (reversed) input.
    pub(super) validity: Validity,
    pub(super) h0: Array3<F>,
    pub(super) c0: Array3<F>,
    pub(super) constants: Option<ArrayView2<'c, F>>,
    /// Seeds the between-layer dropout masks when that dropout applies to this call.
    pub(super) dropout_seed: Option<u64>,
    /// The call's mode.
    pub(super) mode: Mode,
    /// The masks of the regularisers inside the recurrence: injected, or drawn for a
    /// training call of a layer that has any.
    pub(super) masks: Option<Cow<'c, RecurrentMasks<F>>>,
    /// The values to record at every step ([`Call::record`]), each once; empty for none.
    pub(super) record: Vec<&'static str>,
}

impl<C: Cell> Lstm<C> {
    /// Checks the call and puts its inputs in the shape the time loop reads.
    pub(super) fn prepare<'i, 'c, D: Dimension>(
        &mut self,
        input: ArrayView<'i, C::Elem, D>,
        call: &Call<'c, C::Elem>,
    ) -> Result<Prepared<'i, 'c, C::Elem>> {
        self.config.validate_for::<C>()?;
        if input.ndim() != 3 {
            return Err(Error::invalid_value(
                "input",
                format!(
                    "expected 3 dimensions ({}), found {} (shape {:?})",
                    if self.config.batch_first {
                        "batch, seq_len, input_size"
                    } else {
                        "seq_len, batch, input_size"
                    },
                    input.ndim(),
                    input.shape()
                ),
            ));
        }
        let caller_shape = input.shape().to_vec();
        let input = input
            .into_dimensionality::<Ix3>()
            // Three dimensions, checked above: infallible.
            .expect("a 3-dimensional input");
        let input = if self.config.batch_first {
            input.permuted_axes([1, 0, 2])
        } else {
            input
        };
        let (seq_len, batch, features) = input.dim();
        if features != self.config.input_size {
            let mut expected = caller_shape.clone();
            expected[2] = self.config.input_size;
            return Err(Error::shape_mismatch("input", &expected, &caller_shape));
        }
        // Before the input is copied: recording a call too long to record is an error.
        let record = self.record_names(call, seq_len, batch)?;
        let validity = Validity::of_call(call.lengths, call.mask, seq_len, batch)?;
        let (input, borrowed, validity) = if self.config.go_backwards {
            let reversed = validity.reverse_time(input);
            (CowArray::from(reversed), None, validity.reversed())
        } else if input.is_standard_layout() {
            (CowArray::from(input), Some(input), validity)
        } else {
            (
                CowArray::from(input.as_standard_layout().into_owned()),
                None,
                validity,
            )
        };
        let (h0, c0) = self.initial_state(call, batch)?;
        let constants = self.constants(call, batch)?;
        let mode = Mode::of(call);
        let training = mode == Mode::Training;
        if let Some(masks) = call.masks {
            if !training {
                return Err(Error::Config {
                    option: "masks".into(),
                    reason: "masks apply to training calls; this call has training off".into(),
                });
            }
            let shapes = self.config.mask_shapes(C::SPEC.num_gates(), seq_len, batch);
            masks.check(&self.config.recurrent_rates(), &shapes)?;
        }
        let between = training && self.config.dropout > 0.0 && self.config.num_layers > 1;
        let draw_masks = training && self.config.regularizes_recurrence() && call.masks.is_none();
        // One seed per call for everything it draws, as `sample_masks` draws it.
        let call_seed = (between || draw_masks).then(|| self.rng.random::<u64>());
        let masks = match (call.masks, call_seed) {
            (Some(masks), _) => Some(Cow::Borrowed(masks)),
            (None, Some(seed)) if draw_masks => {
                Some(Cow::Owned(self.draw_masks(seq_len, batch, seed)))
            }
            _ => None,
        };
        let dropout_seed = call_seed.filter(|_| between);
        Ok(Prepared {
            input,
            borrowed,
            validity,
            h0,
            c0,
            constants,
            dropout_seed,
            mode,
            masks,
            record,
        })
    }

    /// The names [`Call::record`] asks for, each once, as the cell spells them.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming `record` for a name that is neither `c`, `h` nor a gate the
    /// cell records; [`Error::Allocation`] if the recorded values cannot be allocated.
    fn record_names(
        &self,
        call: &Call<'_, C::Elem>,
        seq_len: usize,
        batch: usize,
    ) -> Result<Vec<&'static str>> {
        let known: Vec<&'static str> = C::SPEC
            .record
            .iter()
            .chain(C::SPEC.states)
            .copied()
            .chain(["h"])
            .collect();
        let mut names = Vec::new();
        for asked in call.record.unwrap_or_default() {
            let Some(name) = known.iter().find(|name| **name == asked.trim()) else {
                return Err(Error::Config {
                    option: "record".into(),
                    reason: format!(
                        "cell `{}` has no value `{asked}` to record; it records {}",
                        C::SPEC.name,
                        known.join(", ")
                    ),
                });
            };
            if !names.contains(name) {
                names.push(*name);
            }
        }
        let states = self.config.num_layers * self.config.num_directions();
        let elements = (names.len() as u128)
            * states as u128
            * seq_len as u128
            * batch as u128
            * self.config.hidden_size as u128;
        crate::alloc::check_allocation(
            &format!(
                "{} recorded value(s) of batch {batch}, seq_len {seq_len}",
                names.len()
            ),
            elements,
            std::mem::size_of::<C::Elem>(),
        )?;
        Ok(names)
    }

    /// `(h0, c0)` of a call, `c0` packing every carried state (`layer/states.rs`): given,
    /// carried (stateful), or zeros.
    pub(crate) fn initial_state(
        &self,
        call: &Call<'_, C::Elem>,
        batch: usize,
    ) -> Result<StatePair<C::Elem>> {
        let states = self.config.num_layers * self.config.num_directions();
        let hidden = self.config.hidden_size;
        let h_shape = [states, batch, self.config.output_size()];
        let mut h0 = Array3::zeros(h_shape);
        let mut c0 = states::zeros(C::SPEC, states, batch, hidden);
        let given = call.initial_state.is_some()
            || call.initial_h.is_some()
            || !call.initial_states.is_empty();
        if call.initial_state.is_some() && call.initial_h.is_some() {
            return Err(Error::Config {
                option: "h0".into(),
                reason: "given twice: by `initial_state` and by `initial_h`".into(),
            });
        }
        if given {
            if let Some(h) = call.initial_h {
                expect_shape("h0", &h_shape, h.shape())?;
                h0.assign(&h);
            }
            if let Some((h, c)) = call.initial_state {
                expect_shape("h0", &h_shape, h.shape())?;
                h0.assign(&h);
                if !C::SPEC.carries_cell_state() {
                    return Err(Error::Config {
                        option: "c0".into(),
                        reason: format!(
                            "cell `{}` carries no cell state; give h0 alone (`Call::with_h0`)",
                            C::SPEC.name
                        ),
                    });
                }
                states::put(C::SPEC, &mut c0, "c", c, "c0")?;
            }
            for (name, value) in call.initial_states {
                let what = format!("initial state {name}");
                if *name == "c" && call.initial_state.is_some() {
                    return Err(Error::Config {
                        option: "c0".into(),
                        reason: "given twice: by `initial_state` and by `initial_states`".into(),
                    });
                }
                if !C::SPEC.states.contains(name) {
                    return Err(states::unknown(C::SPEC, name, &what));
                }
                states::put(C::SPEC, &mut c0, name, *value, &what)?;
            }
        } else if let (true, Some((h, c))) = (self.config.stateful, &self.state) {
            expect_shape(
                "h0 (carried by the stateful layer; reset_states() clears it)",
                &h_shape,
                h.shape(),
            )?;
            h0.assign(h);
            c0.assign(c);
        }
        Ok((h0, c0))
    }

    /// The call's constants, checked against the cell and the config.
    fn constants<'a>(
        &self,
        call: &Call<'a, C::Elem>,
        batch: usize,
    ) -> Result<Option<ArrayView2<'a, C::Elem>>> {
        match (C::SPEC.constant, call.constants) {
            (Some(_), Some(constants)) => {
                expect_shape(
                    "constants",
                    &[batch, self.config.constant_size],
                    constants.shape(),
                )?;
                Ok(Some(constants))
            }
            (Some(name), None) => Err(Error::Config {
                option: "constants".into(),
                reason: format!(
                    "cell `{}` reads the constant input `{name}`; pass `constants` of shape \
                     (batch, {})",
                    C::SPEC.name,
                    self.config.constant_size
                ),
            }),
            (None, Some(_)) => Err(Error::Config {
                option: "constants".into(),
                reason: format!(
                    "cell `{}` declares no constant input; pass none",
                    C::SPEC.name
                ),
            }),
            (None, None) => Ok(None),
        }
    }
}
