//! PyTorch's layout: the `state_dict` names of `nn.LSTM` (`weight_ih_l0`,
//! `bias_hh_l1_reverse`, `weight_hr_l0`), extended to custom cells by naming each spec
//! parameter `{param}_l{k}[_reverse]` (`forget_bias_l0`, `peephole_i_l0_reverse`).
//!
//! [`ParamName`] (`params/name.rs`) parses and formats those names; [`PytorchLayout`] reads
//! the layer's configuration off the names and shapes of a weights file; [`load_parameters`]
//! and [`TensorMap::from_parameters`] move tensors between a file and anything with
//! [`Parameters`]; [`cell_from_pytorch`] and [`cell_to_pytorch`] do it for one cell (one layer
//! in one direction).

use ndarray::{ArrayD, IxDyn};

use super::tensor::{Tensor, TensorMap};
use crate::cell::{Cell, CellDims, CellSpec};
use crate::direction::Direction;
use crate::error::{Error, Result};
use crate::float::Float;
use crate::params::Parameters;
use crate::params::name::ParamName;

/// What an `nn.LSTM` weights file says about the layer that wrote it: PyTorch's constructor
/// arguments (and a cell's constant width).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PytorchLayout {
    /// Features of the input (`input_size`): columns of `weight_ih_l0`.
    pub input_size: usize,
    /// Hidden units (`hidden_size`).
    pub hidden_size: usize,
    /// Stacked layers (`num_layers`): one more than the largest `l{k}`.
    pub num_layers: usize,
    /// Whether any tensor is `_reverse` (`bidirectional`).
    pub bidirectional: bool,
    /// Whether `bias_ih_l0` exists (`bias`).
    pub bias: bool,
    /// Rows of `weight_hr_l0`, 0 without projection (`proj_size`).
    pub proj_size: usize,
    /// Heads of a block-diagonal recurrence (`heads`): `hidden_size` over the columns of
    /// `weight_hh_l0`, 1 for the dense `(gates · hidden, hidden)`.
    pub heads: usize,
    /// Columns of the cell's constant projection `weight_{constant}_l0`; 0 for cells without
    /// a constant input.
    pub constant_size: usize,
}

impl PytorchLayout {
    /// Reads the layout off the names and shapes of `map`, for a layer of the cell `spec`.
    ///
    /// Only the tensors that fix a size are read (`weight_ih_l0`, `weight_hh_l0`,
    /// `weight_hr_l0`, the constant projection); [`load_parameters`] checks every tensor
    /// against the layout.
    ///
    /// # Errors
    ///
    /// - [`Error::UnexpectedTensor`] for a name not of the form `{param}_l{k}[_reverse]`.
    /// - [`Error::MissingTensor`] if `weight_ih_l{k}` or `weight_hh_l{k}` is absent for a
    ///   layer some other tensor names, or the file has no layer at all.
    /// - [`Error::ShapeMismatch`] for a size-fixing tensor that is not 2-D, or whose rows do
    ///   not hold the cell's gate blocks, or naming `weight_hh_l0` if its columns are no
    ///   head width `hidden_size / K` (nor the projection's width).
    pub fn infer(map: &TensorMap, spec: &CellSpec) -> Result<Self> {
        let mut num_layers = 0;
        let mut bidirectional = false;
        for key in map.names() {
            let name = ParamName::parse(key).ok_or_else(|| Error::UnexpectedTensor {
                name: key.into(),
                source_name: map.source().into(),
                reason: "not a PyTorch LSTM name `{param}_l{layer}[_reverse]`".into(),
            })?;
            num_layers = num_layers.max(name.layer + 1);
            bidirectional |= name.direction == Direction::Reverse;
        }
        if num_layers == 0 {
            return Err(Error::MissingTensor {
                name: "weight_ih_l0".into(),
                source_name: map.source().into(),
            });
        }
        let weight_ih = matrix_shape(map, &ParamName::new("weight_ih", 0, Direction::Forward))?;
        let weight_hh = matrix_shape(map, &ParamName::new("weight_hh", 0, Direction::Forward))?;
        let weight_hr = ParamName::new("weight_hr", 0, Direction::Forward).to_string();
        let (proj_size, hidden_size) = match map.get(&weight_hr) {
            Some(tensor) => match *tensor.shape() {
                [proj, hidden] => (proj, hidden),
                _ => {
                    return Err(Error::shape_mismatch(
                        weight_hr,
                        &[weight_hh[1], weight_ih[0] / spec.num_gates().max(1)],
                        tensor.shape(),
                    ));
                }
            },
            None => (0, hidden_without_projection(spec, weight_ih, weight_hh)),
        };
        let gate_rows = spec.num_gates() * hidden_size;
        let heads = heads_of(proj_size, hidden_size, weight_hh).ok_or_else(|| {
            let width = if proj_size > 0 {
                proj_size
            } else {
                hidden_size
            };
            Error::shape_mismatch(
                ParamName::new("weight_hh", 0, Direction::Forward).to_string(),
                &[gate_rows, width],
                &weight_hh,
            )
        })?;
        if weight_ih[0] != gate_rows {
            return Err(Error::shape_mismatch(
                ParamName::new("weight_ih", 0, Direction::Forward).to_string(),
                &[gate_rows, weight_ih[1]],
                &weight_ih,
            ));
        }
        for layer in 0..num_layers {
            for param in ["weight_ih", "weight_hh"] {
                map.require(&ParamName::new(param, layer, Direction::Forward).to_string())?;
            }
        }
        let constant_size = match spec.constant {
            Some(constant) => matrix_shape(
                map,
                &ParamName::new(format!("weight_{constant}"), 0, Direction::Forward),
            )?[1],
            None => 0,
        };
        Ok(PytorchLayout {
            input_size: weight_ih[1],
            hidden_size,
            num_layers,
            bidirectional,
            bias: map.contains(&ParamName::new("bias_ih", 0, Direction::Forward).to_string()),
            proj_size,
            heads,
            constant_size,
        })
    }

    /// Directions per layer: 2 if bidirectional, else 1.
    pub fn num_directions(&self) -> usize {
        self.config().num_directions()
    }

    /// Width of each direction's output and recurrent input: `proj_size`, or `hidden_size`
    /// without projection.
    pub fn output_size(&self) -> usize {
        self.config().output_size()
    }

    /// The dims of the cells of `layer`: the first reads the input, later ones the previous
    /// layer's directions side by side (as `LstmConfig::cell_dims` of [`Self::config`]).
    pub fn cell_dims(&self, layer: usize) -> CellDims {
        self.config().cell_dims(layer)
    }
}

/// The hidden size of a layer without projection, from the tensor that is consistent in
/// itself: `weight_hh` `(gates · hidden, hidden)` if its rows fit its columns, else
/// `weight_ih` `(gates · hidden, input)`; the other one then fails the shape check with the
/// right expected shape.
fn hidden_without_projection(
    spec: &CellSpec,
    weight_ih: [usize; 2],
    weight_hh: [usize; 2],
) -> usize {
    let gates = spec.num_gates().max(1);
    if weight_hh[0] == gates * weight_hh[1] || !weight_ih[0].is_multiple_of(gates) {
        weight_hh[1]
    } else {
        weight_ih[0] / gates
    }
}

/// The heads `K` of a layer whose `weight_hh` is `weight_hh`: `hidden / columns`
/// (`weight_hh` is `(gates · hidden, hidden / K)`), 1 for a projected layer whose `weight_hh`
/// is `proj_size` wide (heads are not projected); `None` for columns that divide neither.
/// The rows are checked with the other tensors.
fn heads_of(proj_size: usize, hidden: usize, weight_hh: [usize; 2]) -> Option<usize> {
    let columns = weight_hh[1];
    if proj_size > 0 {
        return (columns == proj_size).then_some(1);
    }
    (columns > 0 && hidden.is_multiple_of(columns)).then(|| hidden / columns)
}

/// The shape of a tensor that must be a matrix.
fn matrix_shape(map: &TensorMap, name: &ParamName) -> Result<[usize; 2]> {
    let key = name.to_string();
    match *map.require(&key)?.shape() {
        [rows, cols] => Ok([rows, cols]),
        ref other => Err(Error::ShapeMismatch {
            what: key,
            // The rank is what is wrong; the sizes are not known yet.
            expected: vec![0, 0],
            found: other.to_vec(),
        }),
    }
}

/// Fails with [`Error::MissingCellParameter`] if a parameter of `spec` is absent for one of
/// the `(layer, direction)` pairs of `layers` (so a cell asked for by name reports that the
/// weights are another cell's, not just a missing tensor).
pub(super) fn check_cell_parameters(
    map: &TensorMap,
    spec: &CellSpec,
    layers: impl IntoIterator<Item = (usize, Direction)>,
) -> Result<()> {
    for (layer, direction) in layers {
        for param in spec.params {
            let key = ParamName::new(param.name, layer, direction).to_string();
            if !map.contains(&key) {
                return Err(Error::MissingCellParameter {
                    cell: spec.name.into(),
                    name: key,
                    source_name: map.source().into(),
                });
            }
        }
    }
    Ok(())
}

/// Copies every tensor of `map` into `model`, by name: each of the model's tensors must be in
/// `map` with its shape, and every tensor of `map` must be one of the model's. f32 and f64
/// are converted to the model's precision.
///
/// Nothing is written unless everything fits.
///
/// # Errors
///
/// [`Error::MissingTensor`], [`Error::ShapeMismatch`] (the model's shape expected),
/// [`Error::DtypeMismatch`] naming the first tensor that does not fit, or
/// [`Error::UnexpectedTensor`] naming a tensor of `map` the model does not have.
pub fn load_parameters<F: Float>(model: &mut impl Parameters<F>, map: &TensorMap) -> Result<()> {
    let shapes = model.parameter_shapes();
    let mut values = Vec::with_capacity(shapes.len());
    for (name, shape) in &shapes {
        values.push(fitted::<F>(name, map.require(name)?, shape)?);
    }
    if let Some(extra) = map
        .names()
        .find(|key| !shapes.iter().any(|(name, _)| name == key))
    {
        return Err(Error::UnexpectedTensor {
            name: extra.into(),
            source_name: map.source().into(),
            reason: "the model has no tensor of that name".into(),
        });
    }
    let mut values = values.into_iter();
    model.visit_parameters_mut(&mut |_, mut target| {
        // `values` holds one checked array per tensor, in visiting order.
        if let Some(source) = values.next() {
            target.assign(&source);
        }
    });
    Ok(())
}

/// The values of the tensor `key` for a parameter of shape `expected`, converted to `F`. A
/// `Scalar` parameter (`[1]`) also takes a 0-d tensor, as PyTorch saves
/// `nn.Parameter(torch.tensor(1.5))`.
fn fitted<F: Float>(key: &str, tensor: &Tensor, expected: &[usize]) -> Result<ArrayD<F>> {
    let scalar = tensor.shape().is_empty() && expected == [1];
    if tensor.shape() != expected && !scalar {
        return Err(Error::shape_mismatch(key, expected, tensor.shape()));
    }
    let values = tensor.to_float::<F>(key)?;
    if scalar {
        // One value either way.
        return Ok(values
            .into_shape_with_order(IxDyn(&[1]))
            .expect("a 0-d array holds one value"));
    }
    Ok(values)
}

/// The cell of `layer` in `direction`, from PyTorch-named weights:
/// `weight_ih_l{layer}[_reverse]` and its siblings, plus the spec's parameters.
///
/// Tensors of other layers and directions, and the layer's projection `weight_hr_l{k}` (which
/// the layer, not the cell, applies), are left alone.
///
/// # Errors
///
/// [`Error::MissingCellParameter`] if a parameter of the cell `C` is absent (the weights
/// belong to another cell), [`Error::MissingTensor`] for an absent weight,
/// [`Error::ShapeMismatch`] or [`Error::DtypeMismatch`] naming a tensor that does not fit,
/// [`Error::UnexpectedTensor`] for a tensor of this layer and direction the cell does not
/// have (a parameter of another cell).
pub fn cell_from_pytorch<C: Cell>(
    map: &TensorMap,
    layer: usize,
    direction: Direction,
) -> Result<C> {
    let layout = PytorchLayout::infer(map, C::SPEC)?;
    check_cell_parameters(map, C::SPEC, [(layer, direction)])?;
    let mut cell = C::zeros(layout.cell_dims(layer));
    let mut owned = Vec::new();
    let mut loaded = Ok(());
    cell.visit_mut(&mut |param, mut target| {
        let key = ParamName::new(param, layer, direction).to_string();
        let values = map
            .require(&key)
            .and_then(|tensor| fitted::<C::Elem>(&key, tensor, target.shape()));
        match values {
            Ok(values) if loaded.is_ok() => target.assign(&values),
            Ok(_) => {}
            Err(err) => {
                if loaded.is_ok() {
                    loaded = Err(err);
                }
            }
        }
        owned.push(param);
    });
    loaded?;
    for key in map.names() {
        let Some(name) = ParamName::parse(key) else {
            continue;
        };
        let same_cell = name.layer == layer && name.direction == direction;
        if same_cell && name.param != "weight_hr" && !owned.contains(&name.param.as_str()) {
            return Err(Error::UnexpectedTensor {
                name: key.into(),
                source_name: map.source().into(),
                reason: format!("cell `{}` has no parameter `{}`", C::SPEC.name, name.param),
            });
        }
    }
    Ok(cell)
}

/// Adds every tensor of `cell` to `map` under its PyTorch name for `layer` and `direction`.
pub fn cell_to_pytorch<C: Cell>(cell: &C, layer: usize, direction: Direction, map: &mut TensorMap) {
    cell.visit(&mut |param, values| {
        let key = ParamName::new(param, layer, direction).to_string();
        map.insert(key, Tensor::from_float::<C::Elem>(values.to_owned()));
    });
}
