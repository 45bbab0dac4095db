//! A naive reference for whole layers, independent of the runtime's fast path: `f64`, one
//! batch row at a time, explicit matrix-vector loops, explicit per-row masks, and explicit
//! reversal of each sequence (the runtime walks time backwards instead; this reverses the data
//! and walks forwards). A cell's equations are a closure over one row's pre-activations.
//!
//! Semantics, as the runtime documents them: PyTorch lengths (invalid steps output zeros,
//! the reverse direction runs over the reversed valid part), Keras masks (masked steps carry
//! the state and repeat the previous output, zeros before the first, or output zeros), Keras
//! `go_backwards` (the input reversed, outputs in processing order), merge modes, stacking
//! (layer k + 1 reads layer k's merged output), LSTMP projection and constants.

// Each test crate that includes this module uses a part of it.
#![allow(dead_code)]

use std::rc::Rc;

use ndarray::{Array1, Array2, Array3, ArrayD, IxDyn};

use lstm_runtime::{Cell, Direction, Float, Lstm, LstmConfig, MergeMode};

/// The pre-activation parts of one row at one step, gate-stacked in the cell's gate order.
pub struct Pre {
    /// Gate letters in weight-row order.
    pub gates: Vec<char>,
    pub hidden: usize,
    /// `W_ih · x`, no bias.
    pub zx: Vec<f64>,
    /// `W_hh · h_prev`, no bias.
    pub zh: Vec<f64>,
    pub b_ih: Vec<f64>,
    pub b_hh: Vec<f64>,
    /// `W_c · constant`, or empty.
    pub constant: Vec<f64>,
}

impl Pre {
    /// Index of unit `j` of `gate` in the gate-stacked vectors.
    pub fn at(&self, gate: char, j: usize) -> usize {
        let block = self
            .gates
            .iter()
            .position(|&g| g == gate)
            .unwrap_or_else(|| panic!("gate {gate} not in {:?}", self.gates));
        block * self.hidden + j
    }

    /// The default pre-activation `zx + b_ih + zh + b_hh` of `gate` at unit `j`.
    pub fn z(&self, gate: char, j: usize) -> f64 {
        let k = self.at(gate, j);
        self.zx[k] + self.b_ih[k] + self.zh[k] + self.b_hh[k]
    }
}

/// One row's step: `(pre, c_prev, h_prev)` to the new `(h, c)` (h before projection).
pub type RowStep = Rc<dyn Fn(&Pre, &[f64], &[f64]) -> (Vec<f64>, Vec<f64>)>;

/// One (layer, direction)'s weights in `f64` and its equations.
#[derive(Clone)]
pub struct RefCell {
    pub gates: Vec<char>,
    pub weight_ih: Array2<f64>,
    pub weight_hh: Array2<f64>,
    pub bias_ih: Array1<f64>,
    pub bias_hh: Array1<f64>,
    pub weight_hr: Option<Array2<f64>>,
    pub weight_c: Option<Array2<f64>>,
    pub step: RowStep,
}

/// Per-row validity, as the call gives it.
#[derive(Clone, Debug)]
pub enum RefValidity {
    All,
    Lengths(Vec<usize>),
    /// `(batch, seq_len)`.
    Mask(Array2<bool>),
}

/// What the reference returns: time-major sequences or last outputs, as `ArrayD`.
#[derive(Clone, Debug)]
pub struct RefOutput {
    pub output: ArrayD<f64>,
    pub output_reverse: Option<ArrayD<f64>>,
    pub h_n: Array3<f64>,
    pub c_n: Array3<f64>,
}

/// `W · v` by explicit loops.
fn matvec(weight: &Array2<f64>, v: &[f64]) -> Vec<f64> {
    (0..weight.nrows())
        .map(|r| (0..weight.ncols()).map(|k| weight[[r, k]] * v[k]).sum())
        .collect()
}

/// The reference cells of `layer`: weights copied from the runtime, equations from `step_of`.
pub fn ref_cells<C: Cell>(layer: &Lstm<C>, step_of: &dyn Fn(&C) -> RowStep) -> Vec<RefCell> {
    let config = layer.config();
    let mut cells = Vec::new();
    for l in 0..config.num_layers {
        for &direction in &Direction::BOTH[..config.num_directions()] {
            let cell = layer.cell(l, direction).expect("cell exists");
            let weights = cell.weights();
            let rows = weights.weight_ih.nrows();
            let to64 = |a: &Array2<C::Elem>| a.mapv(Float::to_f64_lossy);
            let bias = |b: Option<&Array1<C::Elem>>| {
                b.map_or_else(|| Array1::zeros(rows), |b| b.mapv(Float::to_f64_lossy))
            };
            cells.push(RefCell {
                gates: C::SPEC
                    .gates
                    .iter()
                    .map(|g| g.letter().chars().next().expect("one letter"))
                    .collect(),
                weight_ih: to64(weights.weight_ih),
                weight_hh: to64(weights.weight_hh),
                bias_ih: bias(weights.bias_ih),
                bias_hh: bias(weights.bias_hh),
                weight_hr: layer.weight_hr(l, direction).map(to64),
                weight_c: weights.weight_constant.map(to64),
                step: step_of(cell),
            });
        }
    }
    cells
}

/// One row through one cell, forwards over `xs` with per-step validity `valid`.
/// Returns every step's output, the final `(h, c)`, and the last valid output.
#[allow(clippy::type_complexity)]
fn run_row(
    cell: &RefCell,
    xs: &[Vec<f64>],
    valid: &[bool],
    h0: Vec<f64>,
    c0: Vec<f64>,
    repeat: bool,
    constant: Option<&[f64]>,
) -> (Vec<Vec<f64>>, Vec<f64>, Vec<f64>, Vec<f64>) {
    let hidden = cell.weight_ih.nrows() / cell.gates.len();
    let (mut h, mut c) = (h0, c0);
    let width = h.len();
    let mut previous = vec![0.0; width];
    let mut outputs = Vec::new();
    for (x, &valid) in xs.iter().zip(valid) {
        if !valid {
            outputs.push(if repeat {
                previous.clone()
            } else {
                vec![0.0; width]
            });
            continue;
        }
        let pre = Pre {
            gates: cell.gates.clone(),
            hidden,
            zx: matvec(&cell.weight_ih, x),
            zh: matvec(&cell.weight_hh, &h),
            b_ih: cell.bias_ih.to_vec(),
            b_hh: cell.bias_hh.to_vec(),
            constant: match (&cell.weight_c, constant) {
                (Some(weight), Some(constant)) => matvec(weight, constant),
                _ => Vec::new(),
            },
        };
        let (h_cell, c_new) = (cell.step)(&pre, &c, &h);
        h = match &cell.weight_hr {
            Some(weight_hr) => matvec(weight_hr, &h_cell),
            None => h_cell,
        };
        c = c_new;
        previous = h.clone();
        outputs.push(h.clone());
    }
    (outputs, h, c, previous)
}

/// `config`'s layer over `x: (T, B, I)` time-major, from `(h0, c0)`.
pub fn reference(
    cells: &[RefCell],
    config: &LstmConfig,
    x: &Array3<f64>,
    validity: &RefValidity,
    h0: &Array3<f64>,
    c0: &Array3<f64>,
    constants: Option<&Array2<f64>>,
) -> RefOutput {
    let (seq_len, batch, _) = x.dim();
    let directions = config.num_directions();
    let width = config.output_size();
    let states = config.num_layers * directions;
    let merged_width = if directions == 2 && config.merge_mode == MergeMode::None {
        width
    } else {
        config.merged_size()
    };
    let mut output = Vec::new();
    let mut output_reverse = Vec::new();
    let mut h_n = Array3::zeros((states, batch, width));
    let mut c_n = Array3::zeros((states, batch, config.hidden_size));
    for b in 0..batch {
        let mut valid: Vec<bool> = (0..seq_len)
            .map(|t| match validity {
                RefValidity::All => true,
                RefValidity::Lengths(lengths) => t < lengths[b],
                RefValidity::Mask(mask) => mask[[b, t]],
            })
            .collect();
        let length = match validity {
            RefValidity::Lengths(lengths) => Some(lengths[b]),
            _ => None,
        };
        let mut xs: Vec<Vec<f64>> = (0..seq_len)
            .map(|t| (0..x.dim().2).map(|i| x[[t, b, i]]).collect())
            .collect();
        if config.go_backwards {
            match length {
                Some(length) => xs[..length].reverse(),
                None => {
                    xs.reverse();
                    valid.reverse();
                }
            }
        }
        let repeat = matches!(validity, RefValidity::Mask(_)) && !config.zero_output_for_mask;
        let constant: Option<Vec<f64>> = constants.map(|c| c.row(b).to_vec());
        let mut row_output = (Vec::new(), Vec::new());
        let mut row_last = (Vec::new(), Vec::new());
        for l in 0..config.num_layers {
            let mut per_direction = Vec::new();
            for d in 0..directions {
                let index = l * directions + d;
                let state = |a: &Array3<f64>| a.slice(ndarray::s![index, b, ..]).to_vec();
                let (outs, h, c, last) = if d == 0 {
                    run_row(
                        &cells[index],
                        &xs,
                        &valid,
                        state(h0),
                        state(c0),
                        repeat,
                        constant.as_deref(),
                    )
                } else {
                    // Reverse the data explicitly, run forwards, reverse the outputs back.
                    match length {
                        Some(length) => {
                            let reversed: Vec<Vec<f64>> =
                                xs[..length].iter().rev().cloned().collect();
                            let (mut outs, h, c, last) = run_row(
                                &cells[index],
                                &reversed,
                                &vec![true; length],
                                state(h0),
                                state(c0),
                                false,
                                constant.as_deref(),
                            );
                            outs.reverse();
                            outs.resize(seq_len, vec![0.0; width]);
                            (outs, h, c, last)
                        }
                        None => {
                            let reversed: Vec<Vec<f64>> = xs.iter().rev().cloned().collect();
                            let reversed_valid: Vec<bool> = valid.iter().rev().copied().collect();
                            let (mut outs, h, c, last) = run_row(
                                &cells[index],
                                &reversed,
                                &reversed_valid,
                                state(h0),
                                state(c0),
                                repeat,
                                constant.as_deref(),
                            );
                            outs.reverse();
                            (outs, h, c, last)
                        }
                    }
                };
                for (j, v) in h.iter().enumerate() {
                    h_n[[index, b, j]] = *v;
                }
                for (j, v) in c.iter().enumerate() {
                    c_n[[index, b, j]] = *v;
                }
                per_direction.push((outs, last));
            }
            let merge = |f: &[f64], r: &[f64]| -> Vec<f64> {
                match config.merge_mode {
                    MergeMode::Concat => f.iter().chain(r).copied().collect(),
                    MergeMode::Sum => f.iter().zip(r).map(|(a, b)| a + b).collect(),
                    MergeMode::Mul => f.iter().zip(r).map(|(a, b)| a * b).collect(),
                    MergeMode::Ave => f.iter().zip(r).map(|(a, b)| (a + b) / 2.0).collect(),
                    MergeMode::None => f.to_vec(),
                }
            };
            let (merged, merged_last): (Vec<Vec<f64>>, Vec<f64>) = if directions == 1 {
                per_direction[0].clone()
            } else {
                let (f, r) = (&per_direction[0], &per_direction[1]);
                (
                    f.0.iter().zip(&r.0).map(|(a, b)| merge(a, b)).collect(),
                    merge(&f.1, &r.1),
                )
            };
            if directions == 2 && config.merge_mode == MergeMode::None {
                row_output = (per_direction[0].0.clone(), per_direction[1].0.clone());
                row_last = (per_direction[0].1.clone(), per_direction[1].1.clone());
            } else {
                row_output = (merged.clone(), Vec::new());
                row_last = (merged_last, Vec::new());
            }
            xs = merged;
        }
        output.push(row_output.0);
        output_reverse.push(row_output.1);
        let _ = &row_last;
        if !config.return_sequences {
            output.last_mut().expect("pushed").clear();
            output.last_mut().expect("pushed").push(row_last.0.clone());
            output_reverse.last_mut().expect("pushed").clear();
            output_reverse
                .last_mut()
                .expect("pushed")
                .push(row_last.1.clone());
        }
    }
    let assemble = |rows: &[Vec<Vec<f64>>]| -> ArrayD<f64> {
        if config.return_sequences {
            ArrayD::from_shape_fn(IxDyn(&[seq_len, batch, merged_width]), |i| {
                rows[i[1]][i[0]][i[2]]
            })
        } else {
            ArrayD::from_shape_fn(IxDyn(&[batch, merged_width]), |i| rows[i[0]][0][i[1]])
        }
    };
    RefOutput {
        output: assemble(&output),
        output_reverse: (directions == 2 && config.merge_mode == MergeMode::None)
            .then(|| assemble(&output_reverse)),
        h_n,
        c_n,
    }
}

/// Max |found − expected| over two arrays of the same shape (panics on a shape mismatch).
pub fn max_diff<F: Float>(
    found: ndarray::ArrayViewD<'_, F>,
    expected: ndarray::ArrayViewD<'_, f64>,
) -> f64 {
    assert_eq!(found.shape(), expected.shape(), "shapes differ");
    found
        .iter()
        .zip(expected.iter())
        .map(|(a, b)| (a.to_f64_lossy() - b).abs())
        .fold(0.0, f64::max)
}
