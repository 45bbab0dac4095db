//! The checks of an [`LstmConfig`]: options against each other ([`LstmConfig::validate`]) and
//! against a cell type ([`LstmConfig::validate_for`]), each failure an [`Error::Config`] that
//! names the option.

use super::LstmConfig;
use crate::cell::{Cell, Gate};
use crate::error::{Error, Result};
use crate::layer::bidirectional::MergeMode;

impl LstmConfig {
    /// Checks the options against each other.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the option: `num_layers` of 0, `hidden_size` of 0,
    /// `proj_size` not below `hidden_size`, `heads` of 0, not dividing `hidden_size` or with
    /// `proj_size`, a dropout or zoneout rate (`dropout`,
    /// `input_dropout`, `recurrent_dropout`, `weight_drop`, `zoneout_c`, `zoneout_h`)
    /// outside `[0, 1]`, `merge_mode` [`MergeMode::None`] with more than one bidirectional
    /// layer, a negative or non-finite
    /// regularization factor (`regularizers.kernel`, …), a constraint with impossible values
    /// or axis (`constraints.bias`, …), `chrono_t_max` not above 2, or `unit_forget_bias` /
    /// `chrono_t_max` without `bias` or together.
    pub fn validate(&self) -> Result<()> {
        let reject = |option: &str, reason: String| {
            Err(Error::Config {
                option: option.into(),
                reason,
            })
        };
        if self.num_layers == 0 {
            return reject("num_layers", "expected at least 1 layer, found 0".into());
        }
        if self.hidden_size == 0 {
            return reject("hidden_size", "expected at least 1 unit, found 0".into());
        }
        if self.proj_size >= self.hidden_size {
            return reject(
                "proj_size",
                format!(
                    "expected 0 (no projection) or a size below hidden_size {}, found {}",
                    self.hidden_size, self.proj_size
                ),
            );
        }
        self.validate_heads()?;
        for (option, rate) in [
            ("dropout", self.dropout),
            ("input_dropout", self.input_dropout),
            ("recurrent_dropout", self.recurrent_dropout),
            ("weight_drop", self.weight_drop),
            ("zoneout_c", self.zoneout_c),
            ("zoneout_h", self.zoneout_h),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return reject(
                    option,
                    format!("expected a probability in [0, 1], found {rate}"),
                );
            }
        }
        if self.bidirectional && self.merge_mode == MergeMode::None && self.num_layers > 1 {
            return reject(
                "merge_mode",
                format!(
                    "`none` returns the two directions apart, but layer 2 of {} needs one \
                     merged input; use concat, sum, mul or ave",
                    self.num_layers
                ),
            );
        }
        self.regularizers.validate()?;
        self.constraints.validate()?;
        self.validate_bias_init()
    }

    /// The checks of [`LstmConfig::heads`]: at least one head, heads of whole units, and no
    /// projection (a projected `h_prev` is `proj_size` wide, not split into the cell's heads).
    fn validate_heads(&self) -> Result<()> {
        let reason = if self.heads == 0 {
            "expected at least 1 head (1 is a dense recurrence), found 0".to_string()
        } else if !self.hidden_size.is_multiple_of(self.heads) {
            format!(
                "expected a divisor of hidden_size {} (each head holds hidden_size / heads \
                 units), found {}",
                self.hidden_size, self.heads
            )
        } else if self.heads > 1 && self.proj_size > 0 {
            format!(
                "{} heads split h_prev by units, but proj_size {} projects it; use heads 1 \
                 or proj_size 0",
                self.heads, self.proj_size
            )
        } else {
            return Ok(());
        };
        Err(Error::Config {
            option: "heads".into(),
            reason,
        })
    }

    /// The checks of [`LstmConfig::unit_forget_bias`] and [`LstmConfig::chrono_t_max`] that
    /// need no cell.
    fn validate_bias_init(&self) -> Result<()> {
        let reject = |option: &str, reason: String| {
            Err(Error::Config {
                option: option.into(),
                reason,
            })
        };
        if let Some(t_max) = self.chrono_t_max {
            if !(t_max.is_finite() && t_max > 2.0) {
                return reject(
                    "chrono_t_max",
                    format!(
                        "expected a finite number of steps above 2 (the forget bias is drawn \
                         from log U(1, T_max − 1)), found {t_max}"
                    ),
                );
            }
            if self.unit_forget_bias {
                return reject(
                    "unit_forget_bias",
                    "contradicts chrono_t_max: both set the forget bias; choose one".into(),
                );
            }
        }
        for (option, asked) in [
            ("unit_forget_bias", self.unit_forget_bias),
            ("chrono_t_max", self.chrono_t_max.is_some()),
        ] {
            if asked && !self.bias {
                return reject(
                    option,
                    "initialises the biases, but bias is false; enable bias".into(),
                );
            }
        }
        Ok(())
    }

    /// Checks that cells of type `C` can run under this config: a cell that reads `h_prev`
    /// elementwise cannot be projected, a cell with a constant input needs its width, and
    /// the forget-bias inits need a forget gate.
    ///
    /// # Errors
    ///
    /// As [`LstmConfig::validate`], and [`Error::Config`] naming `proj_size`,
    /// `constant_size`, `unit_forget_bias` or `chrono_t_max`.
    pub fn validate_for<C: Cell>(&self) -> Result<()> {
        self.validate()?;
        let spec = C::SPEC;
        for (option, asked) in [
            ("unit_forget_bias", self.unit_forget_bias),
            ("chrono_t_max", self.chrono_t_max.is_some()),
        ] {
            if asked && !spec.gates.contains(&Gate::Forget) {
                return Err(Error::Config {
                    option: option.into(),
                    reason: format!(
                        "sets the forget gate's bias, but cell `{}` computes no gate `f`",
                        spec.name
                    ),
                });
            }
        }
        if self.zoneout_c > 0.0 && spec.states != ["c"] {
            return Err(Error::Config {
                option: "zoneout_c".into(),
                reason: format!(
                    "zones out the cell state `c`, but cell `{}` carries the states [{}]; \
                     zoneout of c is for cells whose only state besides h is c",
                    spec.name,
                    spec.states.join(", ")
                ),
            });
        }
        if self.proj_size > 0 && spec.reads_h_prev {
            return Err(Error::Config {
                option: "proj_size".into(),
                reason: format!(
                    "cell `{}` reads h_prev elementwise, which has hidden_size values; a \
                     projection would make it proj_size wide (use proj_size 0)",
                    spec.name
                ),
            });
        }
        match (spec.constant, self.constant_size) {
            (Some(constant), 0) => Err(Error::Config {
                option: "constant_size".into(),
                reason: format!(
                    "cell `{}` reads the constant input `{constant}`; give its width",
                    spec.name
                ),
            }),
            (None, size) if size > 0 => Err(Error::Config {
                option: "constant_size".into(),
                reason: format!(
                    "cell `{}` declares no constant input; expected 0, found {size}",
                    spec.name
                ),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn impossible_options_are_named() {
        let option = |config: LstmConfig| match config.validate() {
            Err(Error::Config { option, .. }) => option,
            other => panic!("expected a config error, found {other:?}"),
        };
        assert_eq!(
            option(LstmConfig::new(3, 5).with_num_layers(0)),
            "num_layers"
        );
        assert_eq!(option(LstmConfig::new(3, 0)), "hidden_size");
        assert_eq!(option(LstmConfig::new(3, 5).with_proj_size(5)), "proj_size");
        assert_eq!(option(LstmConfig::new(3, 6).with_heads(0)), "heads");
        assert_eq!(option(LstmConfig::new(3, 6).with_heads(4)), "heads");
        let projected = LstmConfig::new(3, 6).with_heads(2).with_proj_size(2);
        assert_eq!(option(projected), "heads");
        for heads in [1, 2, 3, 6] {
            LstmConfig::new(3, 6).with_heads(heads).validate().unwrap();
        }
        assert_eq!(option(LstmConfig::new(3, 5).with_dropout(1.5)), "dropout");
        assert_eq!(
            option(LstmConfig::new(3, 5).with_recurrent_dropout(-0.1)),
            "recurrent_dropout"
        );
        assert_eq!(
            option(LstmConfig::new(3, 5).with_zoneout(0.1, f64::NAN)),
            "zoneout_h"
        );
        let stacked_none = LstmConfig::new(3, 5)
            .with_num_layers(2)
            .with_bidirectional(true)
            .with_merge_mode(MergeMode::None);
        assert_eq!(option(stacked_none), "merge_mode");
    }
}
