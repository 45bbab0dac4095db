//! The shapes and backends both GEMM benchmarks share: the matrix products of one layer call at the
//! exact shapes of the three cases of the performance issue (f32, row-major operands laid out as
//! `recurrence/forward.rs` and `recurrence/backward.rs` hold them), and each candidate backend.

use faer::{Accum, MatMut, MatRef, Par};
use gemm::Parallelism;
use lstm_runtime::linalg;
use ndarray::{Array2, ArrayView2, ArrayViewMut2};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

pub const THREADS: usize = 2;

/// Which operand is stored transposed, as in the three wrappers of `linalg`.
#[derive(Clone, Copy)]
pub enum Layout {
    /// `a · bᵀ`, `b` stored `n×k` (the input and recurrent projections).
    Nt,
    /// `aᵀ · b`, `a` stored `k×m` (the weight gradients).
    Tn,
    /// `a · b` (the gradients of `h_prev` and of the input).
    Nn,
}

pub struct Shape {
    pub case: &'static str,
    pub product: &'static str,
    pub layout: Layout,
    pub m: usize,
    pub k: usize,
    pub n: usize,
}

/// `(batch, seq_len, input_size, hidden_size)` of each case; the forward pass projects the
/// input in chunks of `__private::chunk_steps` steps.
const CASES: &[(&str, usize, usize, usize, usize)] = &[
    ("case1", 64, 100, 512, 512),
    ("case2", 32, 200, 128, 256),
    ("latency", 1, 1000, 64, 128),
];

pub fn shapes() -> Vec<Shape> {
    let mut shapes = Vec::new();
    for &(case, batch, seq_len, input_size, hidden_size) in CASES {
        let gates = 4 * hidden_size;
        let rows = seq_len * batch;
        let chunk_rows = seq_len.min(lstm_runtime::__private::chunk_steps(batch, gates)) * batch;
        let mut push = |product, layout, m, k, n| {
            shapes.push(Shape {
                case,
                product,
                layout,
                m,
                k,
                n,
            });
        };
        push(
            "input_projection",
            Layout::Nt,
            chunk_rows,
            input_size,
            gates,
        );
        push("recurrent", Layout::Nt, batch, hidden_size, gates);
        push("dh_prev", Layout::Nn, batch, gates, hidden_size);
        push("dw_ih", Layout::Tn, gates, rows, input_size);
        push("dw_hh", Layout::Tn, gates, rows, hidden_size);
        push("dx", Layout::Nn, rows, gates, input_size);
    }
    shapes
}

fn random(rng: &mut ChaCha8Rng, rows: usize, cols: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| rng.random_range(-1.0..1.0))
}

/// The two operands as stored, and the logical views `a: m×k`, `b: k×n` of them.
pub struct Operands {
    a: Array2<f32>,
    b: Array2<f32>,
    layout: Layout,
}

impl Operands {
    pub fn new(rng: &mut ChaCha8Rng, shape: &Shape) -> Self {
        let (m, k, n) = (shape.m, shape.k, shape.n);
        let (a, b) = match shape.layout {
            Layout::Nt => (random(rng, m, k), random(rng, n, k)),
            Layout::Tn => (random(rng, k, m), random(rng, k, n)),
            Layout::Nn => (random(rng, m, k), random(rng, k, n)),
        };
        Self {
            a,
            b,
            layout: shape.layout,
        }
    }

    pub fn logical(&self) -> (ArrayView2<'_, f32>, ArrayView2<'_, f32>) {
        match self.layout {
            Layout::Nt => (self.a.view(), self.b.t()),
            Layout::Tn => (self.a.t(), self.b.view()),
            Layout::Nn => (self.a.view(), self.b.view()),
        }
    }
}

fn with_gemm_crate(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    mut c: ArrayViewMut2<'_, f32>,
    parallelism: Parallelism,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    // SAFETY: shapes fit by construction; every pointer and stride is its view's own.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c.strides()[1],
            c.strides()[0],
            false,
            a.as_ptr(),
            a.strides()[1],
            a.strides()[0],
            b.as_ptr(),
            b.strides()[1],
            b.strides()[0],
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

fn with_faer(
    a: ArrayView2<'_, f32>,
    b: ArrayView2<'_, f32>,
    mut c: ArrayViewMut2<'_, f32>,
    par: Par,
) {
    let (m, k) = a.dim();
    let n = b.ncols();
    // SAFETY: shapes fit by construction; every pointer and stride is its view's own.
    let (a, b, c) = unsafe {
        (
            MatRef::from_raw_parts(a.as_ptr(), m, k, a.strides()[0], a.strides()[1]),
            MatRef::from_raw_parts(b.as_ptr(), k, n, b.strides()[0], b.strides()[1]),
            MatMut::from_raw_parts_mut(c.as_mut_ptr(), m, n, c.strides()[0], c.strides()[1]),
        )
    };
    faer::linalg::matmul::matmul(c, Accum::Replace, a, b, 1.0, par);
}

fn with_matrixmultiply(a: ArrayView2<'_, f32>, b: ArrayView2<'_, f32>, c: ArrayViewMut2<'_, f32>) {
    let mut c = c;
    ndarray::linalg::general_mat_mul(1.0, &a, &b, 0.0, &mut c);
}

pub type Backend = (
    &'static str,
    fn(ArrayView2<'_, f32>, ArrayView2<'_, f32>, ArrayViewMut2<'_, f32>),
);

pub const BACKENDS: &[Backend] = &[
    ("gemm_rayon2", |a, b, c| {
        with_gemm_crate(a, b, c, Parallelism::Rayon(THREADS));
    }),
    ("gemm_seq", |a, b, c| {
        with_gemm_crate(a, b, c, Parallelism::None);
    }),
    ("faer_rayon2", |a, b, c| {
        with_faer(a, b, c, Par::rayon(THREADS));
    }),
    ("faer_seq", |a, b, c| with_faer(a, b, c, Par::Seq)),
    ("matrixmultiply_seq", with_matrixmultiply),
    ("linalg", |a, b, c| {
        linalg::matmul_nn(1.0, a, b, 0.0, c).expect("shapes fit by construction");
    }),
];
