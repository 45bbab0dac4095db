//! Backpropagation through the layers: from the caller's output gradient down the stack,
//! each layer's directions through the reverse time loop (`recurrence/backward.rs`) over what
//! the [`Tape`] recorded, merged outputs split back into their directions' gradients, and the
//! between-layer dropout masks applied to the gradients they multiplied.

use ndarray::{Array2, Array3, ArrayView3, ArrayViewD, Axis, CowArray, Ix2, Ix3};

use super::bidirectional::{MergeMode, merge_backward};
use super::call::{LstmGradients, OutputGrad};
use super::tape::{LayerTape, Tape};
use super::{Lstm, dim2, dim3, states};
use crate::cell::Cell;
use crate::direction::Direction;
use crate::error::{Error, Result, expect_shape};
use crate::float::Float;
use crate::params::Gradients;
use crate::params::name::ParamName;
use crate::recurrence::backward::{InputGrads, Seeds};

/// The gradient of one direction's output, time-major: the caller's own array where it can
/// be read in place, else computed (split from a merge, or the layer above's input gradient).
enum DOutput<'g, F> {
    /// `(seq_len, batch, features)`.
    Sequence(CowArray<'g, F, Ix3>),
    /// `(batch, features)`.
    Last(CowArray<'g, F, Ix2>),
}

impl<C: Cell> Lstm<C> {
    /// Backpropagation through time: the gradients of a loss with respect to every
    /// parameter, the input, the initial states and the constants, given the loss's gradient
    /// with respect to what [`Lstm::forward_train`] returned (absent parts count as zero).
    ///
    /// Gradients of `h_n`/`c_n` are accepted even when `return_state` is off (they are the
    /// gradients of the states the layer reached).
    ///
    /// Consumes the tape, as PyTorch frees a graph's saved tensors in its backward pass: a
    /// step's cached gate values are spent once its backward step has run, and their memory
    /// takes that step's pre-activation gradients for the batched weight products. To run
    /// backward twice, clone the tape first.
    ///
    /// # Errors
    ///
    /// [`Error::ShapeMismatch`] naming `grad output`, `grad output_reverse`, `grad h_n` or
    /// `grad c_n` if shaped unlike what the call returned; [`Error::Config`] naming `tape` if
    /// the tape comes from a layer of another shape, or `output_reverse` if given without
    /// [`MergeMode::None`].
    pub fn backward(
        &self,
        mut tape: Tape<'_, C::Elem>,
        grad: OutputGrad<'_, C::Elem>,
    ) -> Result<LstmGradients<C::Elem>> {
        self.check_tape(&tape)?;
        let (seq_len, batch) = (tape.seq_len, tape.batch);
        if let Some((at, halves)) = tape.halves.take() {
            return self.backward_by_rows((seq_len, batch, at), *halves, grad);
        }
        let directions = self.config.num_directions();
        let states = self.config.num_layers * directions;
        let width = self.config.output_size();
        let hidden = self.config.hidden_size;
        let dh_n = grad_or_zeros("grad h_n", grad.h_n, (states, batch, width))?;
        let mut dc_n = states::zeros(C::SPEC, states, batch, hidden);
        if let Some(grad_c_n) = grad.c_n {
            states::put(C::SPEC, &mut dc_n, "c", grad_c_n, "grad c_n")?;
        }
        for (index, (name, value)) in grad.states.iter().enumerate() {
            let what = format!("grad {name}_n");
            let again = grad.states[..index].iter().any(|(other, _)| other == name);
            if again || (*name == "c" && grad.c_n.is_some()) {
                return Err(Error::Config {
                    option: what,
                    reason: "given twice".into(),
                });
            }
            states::put(C::SPEC, &mut dc_n, name, *value, &what)?;
        }
        let mut d_directions = self.top_gradients(&tape, &grad)?;
        let mut params = Gradients::new();
        let mut h0 = Array3::zeros((states, batch, width));
        let mut c0 = states::zeros(C::SPEC, states, batch, hidden);
        let mut d_constants = tape.constants.as_ref().map(|c| Array2::zeros(c.raw_dim()));
        let mut d_input = None;
        for layer in (0..self.config.num_layers).rev() {
            let layer_tape = &mut tape.layers[layer];
            let features = layer_tape.input.len_of(Axis(2));
            let mut d_layer_input = Array2::zeros((seq_len * batch, features));
            for (direction, d_output) in Direction::BOTH.into_iter().zip(&d_directions) {
                let index = layer * directions + direction.index();
                let pass = self.pass(
                    layer,
                    direction,
                    &tape.validity,
                    tape.constants.as_ref().map(|c| c.view()),
                    self.regularization(tape.masks.as_ref(), tape.mode, index),
                )?;
                let mut dh_final = dh_n.index_axis(Axis(0), index).to_owned();
                let d_sequence = match d_output {
                    DOutput::Sequence(d_sequence) => Some(d_sequence.view()),
                    DOutput::Last(d_last) => {
                        // The last valid output is the final `h` of a row with a valid step.
                        for (row, mut dh) in dh_final.axis_iter_mut(Axis(0)).enumerate() {
                            if tape.validity.any_valid(row, seq_len) {
                                dh += &d_last.row(row);
                            }
                        }
                        None
                    }
                };
                let grads = pass.backward(
                    &mut layer_tape.directions[direction.index()],
                    Seeds {
                        input: layer_tape.input.view(),
                        d_output: d_sequence,
                        dh_n: dh_final.view(),
                        dc_n: dc_n.index_axis(Axis(0), index),
                        constants: tape.constants.as_ref().map(|c| c.view()),
                    },
                    InputGrads {
                        input: d_layer_input.view_mut(),
                        constants: d_constants.as_mut().map(|c| c.view_mut()),
                    },
                )?;
                let suffix = ParamName::suffix(layer, direction);
                grads.cell.visit(&mut |name, values| {
                    params.insert(format!("{name}{suffix}"), values.to_owned());
                });
                if let Some(weight_hr) = grads.weight_hr {
                    params.insert(format!("weight_hr{suffix}"), weight_hr.into_dyn());
                }
                h0.index_axis_mut(Axis(0), index).assign(&grads.h0);
                c0.index_axis_mut(Axis(0), index).assign(&grads.c0);
            }
            let mut d_layer_input = d_layer_input
                .into_shape_with_order((seq_len, batch, features))
                // (seq_len · batch, features) elements in standard layout: infallible.
                .expect("the layer input gradient has seq_len · batch rows");
            if layer == 0 {
                d_input = Some(d_layer_input);
            } else {
                if let Some(mask) = &layer_tape.dropout {
                    d_layer_input *= mask;
                }
                d_directions = self.split_merged(
                    DOutput::Sequence(CowArray::from(d_layer_input)),
                    &tape.layers[layer - 1],
                );
            }
        }
        // `num_layers ≥ 1` is validated, and the loop ends with layer 0.
        let mut d_input = d_input.expect("layer 0 sets the input gradient");
        if self.config.go_backwards {
            d_input = tape.validity.reverse_time(d_input.view());
        }
        Ok(LstmGradients {
            params,
            input: self.to_caller_layout(d_input),
            h0,
            c0: states::block(C::SPEC, &c0, "c", hidden)
                .unwrap_or_else(|| Array3::zeros((states, batch, 0))),
            states: states::extras(C::SPEC, &c0, hidden),
            constants: d_constants,
        })
    }

    /// The per-direction gradients of a layer's outputs from the gradient of its merged
    /// output.
    fn split_merged<'g>(
        &self,
        d_merged: DOutput<'g, C::Elem>,
        layer: &LayerTape<'_, C::Elem>,
    ) -> Vec<DOutput<'g, C::Elem>> {
        if self.config.num_directions() == 1 {
            return vec![d_merged];
        }
        let mode = self.config.merge_mode;
        let operands = layer.merge_operands.as_ref();
        match d_merged {
            DOutput::Sequence(d) => {
                let operands = operands.map(|(f, r)| (dim3(f.view()), dim3(r.view())));
                let (df, dr) = merge_backward(mode, d.view(), operands);
                vec![DOutput::Sequence(df.into()), DOutput::Sequence(dr.into())]
            }
            DOutput::Last(d) => {
                let operands = operands.map(|(f, r)| (dim2(f.view()), dim2(r.view())));
                let (df, dr) = merge_backward(mode, d.view(), operands);
                vec![DOutput::Last(df.into()), DOutput::Last(dr.into())]
            }
        }
    }

    /// The gradients of the last layer's direction outputs, time-major, from the caller's.
    fn top_gradients<'g>(
        &self,
        tape: &Tape<'_, C::Elem>,
        grad: &OutputGrad<'g, C::Elem>,
    ) -> Result<Vec<DOutput<'g, C::Elem>>> {
        let split_none = self.config.bidirectional && self.config.merge_mode == MergeMode::None;
        let width = if split_none {
            self.config.output_size()
        } else {
            self.config.merged_size()
        };
        let d_output = self.caller_gradient("grad output", grad.output.clone(), tape, width)?;
        if split_none {
            let d_reverse = self.caller_gradient(
                "grad output_reverse",
                grad.output_reverse.clone(),
                tape,
                width,
            )?;
            return Ok(vec![d_output, d_reverse]);
        }
        if grad.output_reverse.is_some() {
            return Err(Error::Config {
                option: "output_reverse".into(),
                reason: "only merge_mode none returns the reverse output apart".into(),
            });
        }
        Ok(self.split_merged(d_output, &tape.layers[self.config.num_layers - 1]))
    }

    /// A caller's output gradient checked against the output's shape, time-major (a view of
    /// the caller's array, permuted when `batch_first`); zeros when absent.
    fn caller_gradient<'g>(
        &self,
        what: &str,
        grad: Option<ArrayViewD<'g, C::Elem>>,
        tape: &Tape<'_, C::Elem>,
        width: usize,
    ) -> Result<DOutput<'g, C::Elem>> {
        let (seq_len, batch) = (tape.seq_len, tape.batch);
        if !self.config.return_sequences {
            let shape = [batch, width];
            return Ok(DOutput::Last(match grad {
                Some(grad) => {
                    expect_shape(what, &shape, grad.shape())?;
                    dim2(grad).into()
                }
                None => Array2::zeros(shape).into(),
            }));
        }
        let Some(grad) = grad else {
            return Ok(DOutput::Sequence(
                Array3::zeros((seq_len, batch, width)).into(),
            ));
        };
        let expected = if self.config.batch_first {
            [batch, seq_len, width]
        } else {
            [seq_len, batch, width]
        };
        expect_shape(what, &expected, grad.shape())?;
        let grad = dim3(grad);
        Ok(DOutput::Sequence(if self.config.batch_first {
            grad.permuted_axes([1, 0, 2]).into()
        } else {
            grad.into()
        }))
    }

    /// Checks that `tape` was recorded by a layer of this one's shape: backward slices it by
    /// this layer's sizes.
    fn check_tape(&self, tape: &Tape<'_, C::Elem>) -> Result<()> {
        if let Some((at, halves)) = &tape.halves {
            let [first, second] = &**halves;
            let fits = first.seq_len == tape.seq_len
                && second.seq_len == tape.seq_len
                && first.batch == *at
                && first.batch + second.batch == tape.batch;
            if !fits {
                return Err(Error::Config {
                    option: "tape".into(),
                    reason: "its two halves do not make up the recorded call".into(),
                });
            }
            return halves.iter().try_for_each(|half| self.check_tape(half));
        }
        let directions = self.config.num_directions();
        let rows = tape.seq_len * tape.batch;
        let hidden = self.config.hidden_size;
        let projected_rows = if self.config.proj_size > 0 { rows } else { 0 };
        let zoned_rows = if self.config.zoneout_c > 0.0 { rows } else { 0 };
        let fits = |layer: usize, layer_tape: &LayerTape<'_, C::Elem>| {
            layer_tape.input.dim()
                == (
                    tape.seq_len,
                    tape.batch,
                    self.config.layer_input_size(layer),
                )
                && layer_tape.directions.len() == directions
                && layer_tape.directions.iter().all(|d| {
                    d.seq_len == tape.seq_len
                        && d.cache.dim() == (rows, C::SPEC.cache.len(hidden))
                        && d.h_prev.dim() == (rows, self.config.output_size())
                        && d.h_cell.dim() == (projected_rows, hidden)
                        && d.c_states.dim() == (rows + tape.batch, C::SPEC.state_width(hidden))
                        && d.c_cell.dim() == (zoned_rows, hidden)
                })
        };
        if tape.layers.len() != self.config.num_layers
            || !tape.layers.iter().enumerate().all(|(l, t)| fits(l, t))
        {
            return Err(Error::Config {
                option: "tape".into(),
                reason: format!(
                    "recorded by a layer of another shape; expected {} layers of {} \
                     directions",
                    self.config.num_layers, directions
                ),
            });
        }
        Ok(())
    }
}

/// A gradient given for a state, checked, or zeros.
fn grad_or_zeros<F: Float>(
    what: &str,
    grad: Option<ArrayView3<'_, F>>,
    shape: (usize, usize, usize),
) -> Result<Array3<F>> {
    let mut values = Array3::zeros(shape);
    if let Some(grad) = grad {
        expect_shape(what, values.shape(), grad.shape())?;
        values.assign(&grad);
    }
    Ok(values)
}
