//! The standard PyTorch LSTM written by hand against the `Cell` contract:
//!
//! ```text
//! z = zx + b_ih + zh + b_hh            (rows gate-stacked [i f g o], H values each)
//! i = σ(z_i)  f = σ(z_f)  g = tanh(z_g)  o = σ(z_o)
//! c = f ⊙ c_prev + i ⊙ g
//! h = o ⊙ tanh(c)
//! ```

use ndarray::{Array1, Array2, ArrayViewD, ArrayViewMutD};
use rand::Rng;

use lstm_runtime::ops::sigmoid;
use lstm_runtime::{
    BackwardIo, Cell, CellDims, CellSpec, Float, Gate, StepIo, Weights, WeightsMut, Workspace,
};

use super::{default_biases, default_init};

/// Gates per unit.
const GATES: usize = 4;

/// The standard LSTM. `dims` is kept apart from the weights, as a generated cell may keep it,
/// so tests can give a weight a shape that contradicts it.
#[derive(Clone, Debug, PartialEq)]
pub struct HandLstm<F: Float> {
    pub dims: CellDims,
    pub weight_ih: Array2<F>,
    pub weight_hh: Array2<F>,
    pub bias_ih: Option<Array1<F>>,
    pub bias_hh: Option<Array1<F>>,
}

impl<F: Float> HandLstm<F> {
    /// Activated gates `[i f g o]` of every row into `gates` (`rows × 4H`), then `h` and `c`.
    fn forward_rows(&self, io: StepIo<'_, F>, gates: &mut [F]) {
        let hidden = self.dims.hidden_size;
        let width = GATES * hidden;
        for row in 0..io.rows {
            let gates = &mut gates[row * width..(row + 1) * width];
            let zx = &io.zx[row * width..(row + 1) * width];
            let zh = &io.zh[row * width..(row + 1) * width];
            let pre = zx.iter().zip(zh).zip(io.bias_ih.iter().zip(io.bias_hh));
            for (k, (gate, ((zx, zh), (b_ih, b_hh)))) in gates.iter_mut().zip(pre).enumerate() {
                let z = *zx + *b_ih + *zh + *b_hh;
                *gate = if k / hidden == 2 {
                    z.tanh()
                } else {
                    sigmoid(z)
                };
            }
            for j in 0..hidden {
                let [i, f, g, o] = [0, 1, 2, 3].map(|gate| gates[gate * hidden + j]);
                let at = row * hidden + j;
                let c = f * io.c_prev[at] + i * g;
                io.c[at] = c;
                io.h[at] = o * c.tanh();
            }
        }
    }
}

impl<F: Float> Cell for HandLstm<F> {
    type Elem = F;

    const SPEC: &'static CellSpec = &CellSpec {
        name: "hand_lstm",
        type_name: "HandLstm",
        gates: &Gate::ALL,
        params: &[],
        constant: None,
        equations: &[],
        reads_h_prev: false,
        // The activated gates, so a wrongly sized scratch buffer shows.
        scratch: Workspace {
            per_unit: GATES,
            per_row: 0,
        },
        cache: Workspace {
            per_unit: GATES,
            per_row: 0,
        },
        backward_scratch: Workspace {
            per_unit: 0,
            per_row: 0,
        },
        shared_preactivation_grad: true,
        unit_local: false,
        record: &[],
        states: &["c"],
    };

    fn init<R: Rng + ?Sized>(dims: CellDims, rng: &mut R) -> Self {
        let gate_rows = GATES * dims.hidden_size;
        let weight_ih = default_init(gate_rows, dims.input_size, dims.hidden_size, rng);
        let weight_hh = default_init(gate_rows, dims.recurrent_size, dims.hidden_size, rng);
        let (bias_ih, bias_hh) = default_biases(dims, gate_rows, rng);
        HandLstm {
            dims,
            weight_ih,
            weight_hh,
            bias_ih,
            bias_hh,
        }
    }

    fn zeros(dims: CellDims) -> Self {
        let gate_rows = GATES * dims.hidden_size;
        let bias = || dims.bias.then(|| Array1::zeros(gate_rows));
        HandLstm {
            dims,
            weight_ih: Array2::zeros((gate_rows, dims.input_size)),
            weight_hh: Array2::zeros((gate_rows, dims.recurrent_size)),
            bias_ih: bias(),
            bias_hh: bias(),
        }
    }

    fn dims(&self) -> CellDims {
        self.dims
    }

    fn weights(&self) -> Weights<'_, F> {
        Weights {
            weight_ih: &self.weight_ih,
            weight_hh: &self.weight_hh,
            bias_ih: self.bias_ih.as_ref(),
            bias_hh: self.bias_hh.as_ref(),
            weight_constant: None,
        }
    }

    fn weights_mut(&mut self) -> WeightsMut<'_, F> {
        WeightsMut {
            weight_ih: &mut self.weight_ih,
            weight_hh: &mut self.weight_hh,
            bias_ih: self.bias_ih.as_mut(),
            bias_hh: self.bias_hh.as_mut(),
            weight_constant: None,
        }
    }

    fn visit(&self, visitor: &mut dyn FnMut(&'static str, ArrayViewD<'_, F>)) {
        visitor("weight_ih", self.weight_ih.view().into_dyn());
        visitor("weight_hh", self.weight_hh.view().into_dyn());
        if let Some(bias) = &self.bias_ih {
            visitor("bias_ih", bias.view().into_dyn());
        }
        if let Some(bias) = &self.bias_hh {
            visitor("bias_hh", bias.view().into_dyn());
        }
    }

    fn visit_mut(&mut self, visitor: &mut dyn FnMut(&'static str, ArrayViewMutD<'_, F>)) {
        visitor("weight_ih", self.weight_ih.view_mut().into_dyn());
        visitor("weight_hh", self.weight_hh.view_mut().into_dyn());
        if let Some(bias) = &mut self.bias_ih {
            visitor("bias_ih", bias.view_mut().into_dyn());
        }
        if let Some(bias) = &mut self.bias_hh {
            visitor("bias_hh", bias.view_mut().into_dyn());
        }
    }

    fn step(&self, mut io: StepIo<'_, F>) {
        let scratch = std::mem::take(&mut io.scratch);
        self.forward_rows(io, scratch);
    }

    fn step_train(&self, io: StepIo<'_, F>, cache: &mut [F]) {
        self.forward_rows(io, cache);
    }

    fn step_backward(&self, io: BackwardIo<'_, F>, _grads: &mut Self) {
        let hidden = self.dims.hidden_size;
        let width = GATES * hidden;
        let one = F::one();
        for row in 0..io.rows {
            let gates = &io.cache[row * width..(row + 1) * width];
            for j in 0..hidden {
                let [i, f, g, o] = [0, 1, 2, 3].map(|gate| gates[gate * hidden + j]);
                let at = row * hidden + j;
                let tanh_c = io.c[at].tanh();
                let dh = io.dh[at];
                let dc = io.dc[at] + dh * o * (one - tanh_c * tanh_c);
                let dz = [
                    dc * g * i * (one - i),
                    dc * io.c_prev[at] * f * (one - f),
                    dc * i * (one - g * g),
                    dh * tanh_c * o * (one - o),
                ];
                for (gate, dz) in dz.into_iter().enumerate() {
                    let k = gate * hidden + j;
                    io.dzx[row * width + k] = dz;
                    io.dbias_ih[k] += dz;
                    io.dbias_hh[k] += dz;
                }
                io.dc_prev[at] = dc * f;
            }
        }
    }
}
