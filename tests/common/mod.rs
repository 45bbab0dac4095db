//! Helpers shared by the integration tests.

pub mod fixtures;
pub mod parity;
pub mod reference;
