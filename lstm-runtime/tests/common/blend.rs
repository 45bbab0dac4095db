//! A one-gate cell that reads `h_prev` elementwise and has a per-unit parameter:
//!
//! ```text
//! a = σ(zx + b_ih + zh + b_hh)          (one gate, stored in the forget-gate rows)
//! c = a ⊙ c_prev + (1 − a) ⊙ h_prev
//! h = tanh(c + shift)
//! ```
//!
//! Not a useful cell: a probe that the runtime sizes everything from `SPEC` (one gate, not
//! four), passes `h_prev` when the spec asks for it, and checks spec parameters' shapes.

use ndarray::{Array1, Array2, ArrayViewD, ArrayViewMutD};
use rand::Rng;

use lstm_runtime::ops::sigmoid;
use lstm_runtime::{
    BackwardIo, Cell, CellDims, CellSpec, Float, Gate, Init, ParamShape, ParamSpec, StepIo,
    Weights, WeightsMut, Workspace,
};

use super::{default_biases, default_init};

/// The blend cell; see the module documentation.
#[derive(Clone, Debug, PartialEq)]
pub struct Blend<F: Float> {
    pub dims: CellDims,
    pub weight_ih: Array2<F>,
    pub weight_hh: Array2<F>,
    pub bias_ih: Option<Array1<F>>,
    pub bias_hh: Option<Array1<F>>,
    /// Added to `c` inside the `tanh` of `h`: `(hidden,)`.
    pub shift: Array1<F>,
}

impl<F: Float> Blend<F> {
    /// The gate `a` of every row into `gates` (`rows × H`), then `h` and `c`.
    fn forward_rows(&self, io: StepIo<'_, F>, gates: &mut [F]) {
        let hidden = self.dims.hidden_size;
        for row in 0..io.rows {
            for j in 0..hidden {
                let at = row * hidden + j;
                let a = sigmoid(io.zx[at] + io.bias_ih[j] + io.zh[at] + io.bias_hh[j]);
                let c = a * io.c_prev[at] + (F::one() - a) * io.h_prev[at];
                gates[at] = a;
                io.c[at] = c;
                io.h[at] = (c + self.shift[j]).tanh();
            }
        }
    }
}

impl<F: Float> Cell for Blend<F> {
    type Elem = F;

    const SPEC: &'static CellSpec = &CellSpec {
        name: "blend",
        type_name: "Blend",
        gates: &[Gate::Forget],
        params: &[ParamSpec {
            name: "shift",
            shape: ParamShape::PerUnit,
            init: Init::Default,
        }],
        constant: None,
        equations: &[],
        reads_h_prev: true,
        scratch: Workspace {
            per_unit: 1,
            per_row: 0,
        },
        cache: Workspace {
            per_unit: 1,
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
        let hidden = dims.hidden_size;
        let weight_ih = default_init(hidden, dims.input_size, hidden, rng);
        let weight_hh = default_init(hidden, dims.recurrent_size, hidden, rng);
        let (bias_ih, bias_hh) = default_biases(dims, hidden, rng);
        let shift = default_init(1, hidden, hidden, rng).remove_axis(ndarray::Axis(0));
        Blend {
            dims,
            weight_ih,
            weight_hh,
            bias_ih,
            bias_hh,
            shift,
        }
    }

    fn zeros(dims: CellDims) -> Self {
        let hidden = dims.hidden_size;
        let bias = || dims.bias.then(|| Array1::zeros(hidden));
        Blend {
            dims,
            weight_ih: Array2::zeros((hidden, dims.input_size)),
            weight_hh: Array2::zeros((hidden, dims.recurrent_size)),
            bias_ih: bias(),
            bias_hh: bias(),
            shift: Array1::zeros(hidden),
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
        visitor("shift", self.shift.view().into_dyn());
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
        visitor("shift", self.shift.view_mut().into_dyn());
    }

    fn step(&self, mut io: StepIo<'_, F>) {
        let scratch = std::mem::take(&mut io.scratch);
        self.forward_rows(io, scratch);
    }

    fn step_train(&self, io: StepIo<'_, F>, cache: &mut [F]) {
        self.forward_rows(io, cache);
    }

    fn step_backward(&self, io: BackwardIo<'_, F>, grads: &mut Self) {
        let hidden = self.dims.hidden_size;
        let one = F::one();
        for row in 0..io.rows {
            for j in 0..hidden {
                let at = row * hidden + j;
                let a = io.cache[at];
                let h = (io.c[at] + self.shift[j]).tanh();
                let dpre_h = io.dh[at] * (one - h * h);
                let dc = io.dc[at] + dpre_h;
                let dz = dc * (io.c_prev[at] - io.h_prev[at]) * a * (one - a);
                io.dzx[at] = dz;
                io.dbias_ih[j] += dz;
                io.dbias_hh[j] += dz;
                io.dc_prev[at] = dc * a;
                io.dh_prev[at] = dc * (one - a);
                grads.shift[j] += dpre_h;
            }
        }
    }
}
