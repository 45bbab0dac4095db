//! The regularisers inside the recurrence as command-line options, shared by `lstm train` and
//! `lstm bench`.

use clap::Args;
use lstm::train::LayerOptions;

/// `--dropout`, `--recurrent-dropout`, `--weight-drop`, `--zoneout-c`, `--zoneout-h`: rates
/// in `[0, 1]`, all 0 by default.
#[derive(Clone, Debug, Default, PartialEq, Args)]
pub struct RegularizationArgs {
    /// Keras `dropout`: variational dropout of each layer's input, one mask per sequence
    /// (`LstmConfig::input_dropout`).
    #[arg(long, default_value_t = 0.0)]
    pub dropout: f64,
    /// Keras `recurrent_dropout`: variational dropout of `h_prev` before the recurrent
    /// product.
    #[arg(long, default_value_t = 0.0)]
    pub recurrent_dropout: f64,
    /// AWD-LSTM weight drop: DropConnect on `weight_hh`, one mask per call.
    #[arg(long, default_value_t = 0.0)]
    pub weight_drop: f64,
    /// Zoneout rate of the cell state `c` (Krueger et al. 2017).
    #[arg(long, default_value_t = 0.0)]
    pub zoneout_c: f64,
    /// Zoneout rate of the hidden state `h`.
    #[arg(long, default_value_t = 0.0)]
    pub zoneout_h: f64,
}

impl RegularizationArgs {
    /// The layer options with these rates and chrono initialisation's `chrono_t_max`.
    pub fn layer_options(&self, chrono_t_max: Option<f64>) -> LayerOptions {
        LayerOptions {
            input_dropout: self.dropout,
            recurrent_dropout: self.recurrent_dropout,
            weight_drop: self.weight_drop,
            zoneout_c: self.zoneout_c,
            zoneout_h: self.zoneout_h,
            chrono_t_max,
            ..LayerOptions::default()
        }
    }

    /// The rates that are on, as `name=rate` pairs joined by commas; `none` when all are 0.
    pub fn describe(&self) -> String {
        let on: Vec<String> = [
            ("dropout", self.dropout),
            ("recurrent_dropout", self.recurrent_dropout),
            ("weight_drop", self.weight_drop),
            ("zoneout_c", self.zoneout_c),
            ("zoneout_h", self.zoneout_h),
        ]
        .iter()
        .filter(|(_, rate)| *rate > 0.0)
        .map(|(name, rate)| format!("{name}={rate}"))
        .collect();
        if on.is_empty() {
            "none".into()
        } else {
            on.join(",")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lstm::LstmConfig;

    #[test]
    fn rates_reach_the_config_by_their_keras_names() {
        let args = RegularizationArgs {
            dropout: 0.1,
            recurrent_dropout: 0.2,
            weight_drop: 0.3,
            zoneout_c: 0.4,
            zoneout_h: 0.5,
        };
        let config = args.layer_options(None).apply(LstmConfig::new(2, 3));
        assert_eq!(
            (
                config.input_dropout,
                config.recurrent_dropout,
                config.weight_drop,
                config.zoneout_c,
                config.zoneout_h
            ),
            (0.1, 0.2, 0.3, 0.4, 0.5)
        );
        assert_eq!(
            args.describe(),
            "dropout=0.1,recurrent_dropout=0.2,weight_drop=0.3,zoneout_c=0.4,zoneout_h=0.5"
        );
        assert_eq!(RegularizationArgs::default().describe(), "none");
    }
}
