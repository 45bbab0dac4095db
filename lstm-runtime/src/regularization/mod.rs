//! Regularisation, in two kinds.
//!
//! Inside the recurrence, as masks the time loops apply: Keras' variational input and
//! recurrent dropout, AWD-LSTM's weight drop and zoneout. `masks.rs` draws and checks a call's
//! masks, `in_recurrence.rs` is what one (layer, direction)'s loop applies of them.
//!
//! Outside it, as Keras' penalties and constraints, which a training loop adds to the loss and
//! applies after its optimizer step: `penalty.rs` ([`penalty::Regularizer`],
//! [`penalty::Regularizers`]), `constraint.rs` ([`constraint::Constraint`],
//! [`constraint::Constraints`]), both configured per Keras weight ([`role::WeightRole`],
//! `role.rs`) over the PyTorch-named tensors of any model.
//!
//! Dropout between stacked layers belongs to the layer (`layer/dropout.rs`), as does the
//! layer's use of the penalties (`layer/penalties.rs`).

pub(crate) mod constraint;
pub(crate) mod in_recurrence;
pub(crate) mod masks;
pub(crate) mod penalty;
pub(crate) mod role;
