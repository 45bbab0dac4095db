//! The two generic layouts of hand-written cells, described by flags rather than by a
//! framework: [`Combined`] (one matrix holding every gate's block, as seed 000's
//! `gate_linear`, TF1's fused `kernel` or Keras' `kernel`) and [`PerGate`] (one tensor per
//! gate, as seed 003's `NaiveLSTM` or seed 001's `customLSTM1`).
//!
//! Both end the same way: a matrix of gate blocks in storage order over the input columns
//! (and the hidden columns, side by side or as a second matrix), biases in storage order; the
//! blocks are reordered into PyTorch's i, f, g, o and the matrix split into `weight_ih_l0`
//! and `weight_hh_l0`. Values are copied, never computed, so a conversion is exact.

use std::collections::BTreeSet;

use ndarray::{Array1, Array2, ArrayD, ArrayView1, ArrayView2, Axis, concatenate, s};

use super::gates::{Columns, GateOrder};
use crate::direction::Direction;
use crate::error::{Error, Result};
use crate::io::tensor::{Dtype, Tensor, TensorMap, dtype_mismatch};
use crate::params::name::ParamName;

/// One matrix with every gate's rows (`--from combined`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Combined {
    /// Key of the matrix `(gates·H, I + H)` over the concatenated columns, or `(gates·H, I)`
    /// when [`Self::weight_h`] is given; `(in, out)` when [`Self::transposed`].
    pub weight: String,
    /// Key of a separate recurrent matrix `(gates·H, H)`, if the layout has one.
    pub weight_h: Option<String>,
    /// Key of the bias, `gates·H` elements in any shape (`(4H,)`, `(1, 4H)`).
    pub bias: Option<String>,
    /// Key of a second bias, for layouts with two (PyTorch's `bias_hh`).
    pub bias_h: Option<String>,
    /// Order of the input and hidden columns in [`Self::weight`]; needed unless
    /// [`Self::weight_h`] is given.
    pub columns: Option<Columns>,
    /// The gate blocks in storage order.
    pub gates: GateOrder,
    /// Whether the matrices are stored `(in, out)`, as Keras and TensorFlow keep them.
    pub transposed: bool,
}

/// One tensor per gate (`--from per-gate`): every pattern holds `{g}`, replaced by each
/// letter of [`Self::gates`] as written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PerGate {
    /// Pattern of the gates' matrices, `(H, I + H)` over the concatenated columns or `(H, I)`
    /// when [`Self::weight_h`] is given; `(in, H)` when [`Self::transposed`].
    pub weight: String,
    /// Pattern of separate recurrent matrices `(H, H)`.
    pub weight_h: Option<String>,
    /// Pattern of the biases, `H` elements in any shape (`(H,)`, `(H, 1)`, `(1, H)`).
    pub bias: Option<String>,
    /// Pattern of second biases (PyTorch-style `b_h{g}`).
    pub bias_h: Option<String>,
    /// The gates, and the letters substituted for `{g}`.
    pub gates: GateOrder,
    /// Order of the input and hidden columns; needed unless [`Self::weight_h`] is given.
    pub columns: Option<Columns>,
    /// Whether the matrices are stored `(in, out)`.
    pub transposed: bool,
}

/// What a pattern must hold to name one tensor per gate.
const GATE_PLACEHOLDER: &str = "{g}";

impl Combined {
    /// The layer under PyTorch's names (`weight_ih_l0`, `weight_hh_l0`, `bias_ih_l0`,
    /// `bias_hh_l0`), gate blocks in PyTorch's order; a missing second bias is zeros, a
    /// layout without bias has none.
    ///
    /// # Errors
    ///
    /// - [`Error::MissingTensor`] for a key not in `map`.
    /// - [`Error::ShapeMismatch`] or [`Error::InvalidValue`] for a tensor whose shape does not
    ///   hold the gate blocks (naming it and, where known, the shape expected).
    /// - [`Error::DtypeMismatch`] for a tensor that is not f32/f64, or not of the weight's
    ///   dtype.
    /// - [`Error::Config`] for `columns` missing when needed.
    /// - [`Error::UnexpectedTensor`] for a tensor of `map` no key names (it would be lost).
    pub fn to_pytorch(&self, map: &TensorMap) -> Result<TensorMap> {
        let mut reader = Reader::new(map);
        let weight = reader.matrix(&self.weight, self.transposed)?;
        let gates = self.gates.len();
        let hidden = gate_block_rows(&self.weight, weight.nrows(), gates, self.transposed)?;
        let weight_h = match &self.weight_h {
            Some(key) => {
                Some(reader.matrix_shaped(key, self.transposed, [gates * hidden, hidden])?)
            }
            None => None,
        };
        let bias = match &self.bias {
            Some(key) => Some(reader.vector(key, gates * hidden)?),
            None => None,
        };
        let bias_h = match &self.bias_h {
            Some(key) => Some(reader.vector(key, gates * hidden)?),
            None => None,
        };
        reader.check_all_used()?;
        let stacked = Stacked {
            weight,
            weight_h,
            bias,
            bias_h,
            hidden,
        };
        stacked.into_pytorch(&self.gates, self.columns, reader.output(map))
    }
}

impl PerGate {
    /// The layer under PyTorch's names, as [`Combined::to_pytorch`].
    ///
    /// # Errors
    ///
    /// As [`Combined::to_pytorch`], and [`Error::Config`] for a pattern without `{g}`, or
    /// gates whose tensors differ in shape (naming the first that differs).
    pub fn to_pytorch(&self, map: &TensorMap) -> Result<TensorMap> {
        let mut reader = Reader::new(map);
        let keys = |option: &str, pattern: &str| -> Result<Vec<String>> {
            if !pattern.contains(GATE_PLACEHOLDER) {
                return Err(Error::Config {
                    option: option.into(),
                    reason: format!(
                        "`{pattern}` has no `{GATE_PLACEHOLDER}`, which each gate's letter \
                         replaces"
                    ),
                });
            }
            Ok(self
                .gates
                .letters()
                .iter()
                .map(|letter| pattern.replace(GATE_PLACEHOLDER, &letter.to_string()))
                .collect())
        };
        let weight_keys = keys("weight", &self.weight)?;
        let first = reader.matrix(&weight_keys[0], self.transposed)?;
        let hidden = first.nrows();
        let stored = |shape: [usize; 2]| {
            if self.transposed {
                [shape[1], shape[0]]
            } else {
                shape
            }
        };
        let mut blocks = vec![first];
        for key in &weight_keys[1..] {
            let expected = stored([blocks[0].nrows(), blocks[0].ncols()]);
            blocks.push(reader.matrix_shaped(key, self.transposed, expected)?);
        }
        let weight = stack_rows(&blocks);
        let weight_h = match &self.weight_h {
            Some(pattern) => {
                let mut blocks = Vec::new();
                for key in keys("weight_h", pattern)? {
                    blocks.push(reader.matrix_shaped(
                        &key,
                        self.transposed,
                        stored([hidden, hidden]),
                    )?);
                }
                Some(stack_rows(&blocks))
            }
            None => None,
        };
        let mut stacked_bias = |option: &str, pattern: &Option<String>| -> Result<_> {
            let Some(pattern) = pattern else {
                return Ok(None);
            };
            let mut parts = Vec::new();
            for key in keys(option, pattern)? {
                parts.push(reader.vector(&key, hidden)?);
            }
            let views: Vec<ArrayView1<'_, f64>> = parts.iter().map(|part| part.view()).collect();
            // Every part has `hidden` elements, checked by `vector`.
            Ok(Some(
                concatenate(Axis(0), &views).expect("1-D parts concatenate"),
            ))
        };
        let bias = stacked_bias("bias", &self.bias)?;
        let bias_h = stacked_bias("bias_h", &self.bias_h)?;
        reader.check_all_used()?;
        let stacked = Stacked {
            weight,
            weight_h,
            bias,
            bias_h,
            hidden,
        };
        stacked.into_pytorch(&self.gates, self.columns, reader.output(map))
    }
}

/// Hidden units of a matrix whose `rows` (in PyTorch's orientation) hold `gates` blocks.
fn gate_block_rows(key: &str, rows: usize, gates: usize, transposed: bool) -> Result<usize> {
    if rows == 0 || !rows.is_multiple_of(gates) {
        let side = if transposed { "columns" } else { "rows" };
        return Err(Error::invalid_value(
            key,
            format!("its {rows} {side} do not split into {gates} gate blocks of equal size"),
        ));
    }
    Ok(rows / gates)
}

/// Matrices stacked by rows; all have the same number of columns (checked by the reader).
fn stack_rows(blocks: &[Array2<f64>]) -> Array2<f64> {
    let views: Vec<ArrayView2<'_, f64>> = blocks.iter().map(|block| block.view()).collect();
    concatenate(Axis(0), &views).expect("blocks of one shape concatenate")
}

/// A layer's tensors in PyTorch's orientation but the layout's gate order.
struct Stacked {
    /// `(gates·H, I + H)` or `(gates·H, I)`.
    weight: Array2<f64>,
    /// `(gates·H, H)`.
    weight_h: Option<Array2<f64>>,
    /// `(gates·H,)` each.
    bias: Option<Array1<f64>>,
    bias_h: Option<Array1<f64>>,
    hidden: usize,
}

impl Stacked {
    /// Splits the columns, reorders the gate blocks and names the tensors.
    fn into_pytorch(
        self,
        gates: &GateOrder,
        columns: Option<Columns>,
        mut output: Output,
    ) -> Result<TensorMap> {
        let hidden = self.hidden;
        let (weight_ih, weight_hh) = match self.weight_h {
            Some(weight_h) => (self.weight, weight_h),
            None => {
                let columns = columns.ok_or_else(|| Error::Config {
                    option: "columns".into(),
                    reason: "the weight spans the input and hidden columns together (no \
                             separate recurrent weight); say their order, `x,h` or `h,x`"
                        .into(),
                })?;
                let total = self.weight.ncols();
                if total <= hidden {
                    return Err(Error::invalid_value(
                        "weight",
                        format!(
                            "{total} columns cannot hold the input and {hidden} hidden columns \
                             side by side"
                        ),
                    ));
                }
                let input = total - hidden;
                let (x, h) = match columns {
                    Columns::InputHidden => (s![.., ..input], s![.., input..]),
                    Columns::HiddenInput => (s![.., hidden..], s![.., ..hidden]),
                };
                (
                    self.weight.slice(x).to_owned(),
                    self.weight.slice(h).to_owned(),
                )
            }
        };
        let positions = gates.pytorch_positions();
        let name = |param: &str| ParamName::new(param, 0, Direction::Forward).to_string();
        output.insert(
            name("weight_ih"),
            reorder_rows(&weight_ih, &positions, hidden),
        );
        output.insert(
            name("weight_hh"),
            reorder_rows(&weight_hh, &positions, hidden),
        );
        if self.bias.is_some() || self.bias_h.is_some() {
            let zeros = || Array1::zeros(gates.len() * hidden);
            let bias = self.bias.unwrap_or_else(zeros);
            let bias_h = self.bias_h.unwrap_or_else(zeros);
            output.insert(name("bias_ih"), reorder_vector(&bias, &positions, hidden));
            output.insert(name("bias_hh"), reorder_vector(&bias_h, &positions, hidden));
        }
        Ok(output.map)
    }
}

/// The row blocks of `matrix` (`hidden` rows each) at `positions`, one after another.
fn reorder_rows(matrix: &Array2<f64>, positions: &[usize], hidden: usize) -> ArrayD<f64> {
    let blocks: Vec<ArrayView2<'_, f64>> = positions
        .iter()
        .map(|&p| matrix.slice(s![p * hidden..(p + 1) * hidden, ..]))
        .collect();
    concatenate(Axis(0), &blocks)
        .expect("blocks of one matrix concatenate")
        .into_dyn()
}

/// The blocks of `vector` (`hidden` values each) at `positions`, one after another.
fn reorder_vector(vector: &Array1<f64>, positions: &[usize], hidden: usize) -> ArrayD<f64> {
    let blocks: Vec<ArrayView1<'_, f64>> = positions
        .iter()
        .map(|&p| vector.slice(s![p * hidden..(p + 1) * hidden]))
        .collect();
    concatenate(Axis(0), &blocks)
        .expect("blocks of one vector concatenate")
        .into_dyn()
}

/// Reads the tensors a layout names, as f64 (exact for f32), remembering which it read and
/// their common dtype.
struct Reader<'m> {
    map: &'m TensorMap,
    dtype: Option<Dtype>,
    used: BTreeSet<String>,
}

impl<'m> Reader<'m> {
    fn new(map: &'m TensorMap) -> Self {
        Reader {
            map,
            dtype: None,
            used: BTreeSet::new(),
        }
    }

    /// The tensor `key` as f64, which must be of the first tensor's dtype.
    fn float(&mut self, key: &str) -> Result<ArrayD<f64>> {
        let tensor = self.map.require(key)?;
        let dtype = tensor.dtype();
        if !matches!(dtype, Dtype::F32 | Dtype::F64) {
            return Err(dtype_mismatch(key, "f32 or f64", dtype));
        }
        match self.dtype {
            Some(first) if first != dtype => {
                return Err(dtype_mismatch(key, first.name(), dtype));
            }
            _ => self.dtype = Some(dtype),
        }
        self.used.insert(key.into());
        tensor.to_float(key)
    }

    /// The matrix `key` in PyTorch's orientation `(out, in)`.
    fn matrix(&mut self, key: &str, transposed: bool) -> Result<Array2<f64>> {
        let values = self.float(key)?;
        let found = values.shape().to_vec();
        let matrix = values
            .into_dimensionality()
            .map_err(|_| Error::ShapeMismatch {
                what: key.into(),
                // The rank is what is wrong; the sizes are not known yet.
                expected: vec![0, 0],
                found,
            })?;
        Ok(if transposed {
            matrix.reversed_axes().as_standard_layout().into_owned()
        } else {
            matrix
        })
    }

    /// The matrix `key`, stored with the shape `stored`, in PyTorch's orientation.
    fn matrix_shaped(
        &mut self,
        key: &str,
        transposed: bool,
        stored: [usize; 2],
    ) -> Result<Array2<f64>> {
        let shape = self.map.require(key)?.shape().to_vec();
        if shape != stored {
            return Err(Error::shape_mismatch(key, &stored, &shape));
        }
        self.matrix(key, transposed)
    }

    /// The `len` values of `key`, in any shape with at most one dimension other than 1.
    fn vector(&mut self, key: &str, len: usize) -> Result<Array1<f64>> {
        let values = self.float(key)?;
        let shape = values.shape().to_vec();
        let long_dims = shape.iter().filter(|&&d| d != 1).count();
        if values.len() != len || long_dims > 1 {
            return Err(Error::shape_mismatch(key, &[len], &shape));
        }
        Ok(values.iter().copied().collect())
    }

    /// Fails naming a tensor of the map no key named: converting without it would lose it.
    fn check_all_used(&self) -> Result<()> {
        match self.map.names().find(|key| !self.used.contains(*key)) {
            Some(extra) => Err(Error::UnexpectedTensor {
                name: extra.into(),
                source_name: self.map.source().into(),
                reason: "the layout names no such tensor; name it with a flag (a second \
                         bias is `--bias-h`), or remove it from the file"
                    .into(),
            }),
            None => Ok(()),
        }
    }

    /// Where the converted tensors go: the read dtype, the source named.
    fn output(&self, map: &TensorMap) -> Output {
        Output {
            dtype: self.dtype.unwrap_or(Dtype::F32),
            map: TensorMap::with_source(map.source()),
        }
    }
}

/// The converted tensors, in the dtype they were read in.
struct Output {
    dtype: Dtype,
    map: TensorMap,
}

impl Output {
    fn insert(&mut self, name: String, values: ArrayD<f64>) {
        let tensor = match self.dtype {
            // The values were read from f32, so narrowing them back is exact.
            Dtype::F32 => Tensor::F32(values.mapv(|v| v as f32)),
            _ => Tensor::F64(values),
        };
        self.map.insert(name, tensor);
    }
}

#[cfg(test)]
mod tests {
    use ndarray::{Array, array};

    use super::*;

    fn map(tensors: &[(&str, ArrayD<f64>)]) -> TensorMap {
        let mut map = TensorMap::with_source("`cell.safetensors`");
        for (key, values) in tensors {
            map.insert(*key, Tensor::F64(values.clone()));
        }
        map
    }

    fn numbered(shape: (usize, usize), start: f64) -> Array2<f64> {
        Array::from_shape_fn(shape, |(r, c)| start + (r * 100 + c) as f64)
    }

    #[test]
    fn combined_splits_columns_and_reorders_blocks() {
        // Two hidden units, one input; gates stored i, f, o, g over [x, h].
        let weight = numbered((8, 3), 0.0);
        let bias = Array::from_iter((0..8).map(f64::from));
        let layout = Combined {
            weight: "gate_linear.weight".into(),
            weight_h: None,
            bias: Some("gate_linear.bias".into()),
            bias_h: None,
            columns: Some(Columns::InputHidden),
            gates: "ifog".parse().unwrap(),
            transposed: false,
        };
        let source = map(&[
            ("gate_linear.weight", weight.clone().into_dyn()),
            ("gate_linear.bias", bias.into_dyn()),
        ]);
        let out = layout.to_pytorch(&source).unwrap();
        let weight_ih = out.float::<f64>("weight_ih_l0").unwrap();
        let weight_hh = out.float::<f64>("weight_hh_l0").unwrap();
        assert_eq!(weight_ih.shape(), [8, 1]);
        assert_eq!(weight_hh.shape(), [8, 2]);
        // PyTorch's g block (rows 4, 5) is the stored block 3 (rows 6, 7).
        assert_eq!(weight_ih[[4, 0]], weight[[6, 0]]);
        assert_eq!(weight_hh[[5, 1]], weight[[7, 2]]);
        assert_eq!(weight_ih[[7, 0]], weight[[5, 0]]);
        let bias_ih = out.float::<f64>("bias_ih_l0").unwrap();
        assert_eq!(
            bias_ih.iter().copied().collect::<Vec<_>>(),
            [0., 1., 2., 3., 6., 7., 4., 5.]
        );
        assert!(
            out.float::<f64>("bias_hh_l0")
                .unwrap()
                .iter()
                .all(|&b| b == 0.0)
        );
    }

    #[test]
    fn per_gate_stacks_transposed_gates_over_h_then_x() {
        // customLSTM1: W{g} of shape (H + I, H) applied to cat([h, x]); H = 2, I = 3.
        let gates = ['f', 'i', 'o', 'c'];
        let mut tensors = Vec::new();
        for (n, g) in gates.iter().enumerate() {
            tensors.push((
                format!("W{g}"),
                numbered((5, 2), 1000.0 * n as f64).into_dyn(),
            ));
            tensors.push((
                format!("b{g}"),
                Array::from_elem((1, 2), n as f64).into_dyn(),
            ));
        }
        let refs: Vec<(&str, ArrayD<f64>)> = tensors
            .iter()
            .map(|(k, v)| (k.as_str(), v.clone()))
            .collect();
        let layout = PerGate {
            weight: "W{g}".into(),
            weight_h: None,
            bias: Some("b{g}".into()),
            bias_h: None,
            gates: "fioc".parse().unwrap(),
            columns: Some(Columns::HiddenInput),
            transposed: true,
        };
        let out = layout.to_pytorch(&map(&refs)).unwrap();
        let weight_ih = out.float::<f64>("weight_ih_l0").unwrap();
        let weight_hh = out.float::<f64>("weight_hh_l0").unwrap();
        assert_eq!(
            (weight_ih.shape(), weight_hh.shape()),
            (&[8, 3][..], &[8, 2][..])
        );
        // PyTorch row 0 is gate i (stored second), unit 0; input column 0 is stored row 2.
        assert_eq!(weight_ih[[0, 0]], 1000.0 + 200.0);
        // Row 5 is gate g (Wc, stored fourth), unit 1; hidden column 1 is stored row 1.
        assert_eq!(weight_hh[[5, 1]], 3000.0 + 100.0 + 1.0);
        let bias_ih = out.float::<f64>("bias_ih_l0").unwrap();
        assert_eq!(
            bias_ih.iter().copied().collect::<Vec<_>>(),
            [1., 1., 0., 0., 3., 3., 2., 2.]
        );
    }

    #[test]
    fn mistakes_name_the_tensor_or_flag() {
        let layout = PerGate {
            weight: "w_i{g}".into(),
            weight_h: Some("w_h{g}".into()),
            bias: Some("b_i{g}".into()),
            bias_h: None,
            gates: "if".parse().unwrap(),
            columns: None,
            transposed: false,
        };
        let good = [
            ("w_ii", Array2::<f64>::zeros((2, 3)).into_dyn()),
            ("w_if", Array2::<f64>::zeros((2, 3)).into_dyn()),
            ("w_hi", Array2::<f64>::zeros((2, 2)).into_dyn()),
            ("w_hf", Array2::<f64>::zeros((2, 2)).into_dyn()),
            ("b_ii", Array2::<f64>::zeros((2, 1)).into_dyn()),
            ("b_if", Array2::<f64>::zeros((2, 1)).into_dyn()),
        ];
        assert!(layout.to_pytorch(&map(&good)).is_ok());
        let mut stray = good.to_vec();
        stray.push(("b_hi", array![0.0, 0.0].into_dyn()));
        let err = layout.to_pytorch(&map(&stray)).unwrap_err();
        assert!(
            matches!(&err, Error::UnexpectedTensor { name, .. } if name == "b_hi"),
            "{err}"
        );
        let mut misshapen = good.to_vec();
        misshapen[3] = ("w_hf", Array2::<f64>::zeros((2, 3)).into_dyn());
        let err = layout.to_pytorch(&map(&misshapen)).unwrap_err();
        assert_eq!(err, Error::shape_mismatch("w_hf", &[2, 2], &[2, 3]));
        let mut bad_bias = good.to_vec();
        bad_bias[5] = ("b_if", Array2::<f64>::zeros((2, 2)).into_dyn());
        let err = layout.to_pytorch(&map(&bad_bias)).unwrap_err();
        assert_eq!(err, Error::shape_mismatch("b_if", &[2], &[2, 2]));
        let no_placeholder = PerGate {
            weight: "w".into(),
            ..layout.clone()
        };
        let err = no_placeholder.to_pytorch(&map(&good)).unwrap_err();
        assert!(
            matches!(&err, Error::Config { option, .. } if option == "weight"),
            "{err}"
        );
        let err = layout.to_pytorch(&map(&good[1..])).unwrap_err();
        assert!(
            matches!(&err, Error::MissingTensor { name, .. } if name == "w_ii"),
            "{err}"
        );
    }

    #[test]
    fn combined_without_columns_or_with_odd_rows_is_refused() {
        let layout = Combined {
            weight: "kernel".into(),
            weight_h: None,
            bias: None,
            bias_h: None,
            columns: None,
            gates: "ijfo".parse().unwrap(),
            transposed: true,
        };
        let source = map(&[("kernel", Array2::<f64>::zeros((5, 8)).into_dyn())]);
        let err = layout.to_pytorch(&source).unwrap_err();
        assert!(
            matches!(&err, Error::Config { option, .. } if option == "columns"),
            "{err}"
        );
        let odd = map(&[("kernel", Array2::<f64>::zeros((5, 7)).into_dyn())]);
        let err = layout.to_pytorch(&odd).unwrap_err();
        assert!(
            matches!(&err, Error::InvalidValue { what, .. } if what == "kernel"),
            "{err}"
        );
    }
}
