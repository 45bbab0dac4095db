//! Learning-rate schedules for training on a data set (`lstm train --data --schedule`), as
//! PyTorch's schedulers compute them, with an optional linear warmup in front:
//!
//! - `constant`: the base rate throughout.
//! - `cosine`: `CosineAnnealingLR` to 0 over the steps after the warmup:
//!   `lr · (1 + cos(π · s / S)) / 2` at step `s` of `S`.
//! - `step`: `StepLR(step_size = max(1, epochs / 3), gamma = 0.1)`, per epoch.
//! - `plateau`: `ReduceLROnPlateau(mode = "min", factor = 0.1, patience = 2,
//!   threshold = 1e-4)` on the validation loss (the training loss without validation).
//!
//! Warmup (`--warmup STEPS`) multiplies the rate by `(s + 1) / STEPS` for the first `STEPS`
//! optimizer steps (`LinearLR(start_factor = 1 / STEPS)`, stepped per batch).

/// The schedule's shape.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Schedule {
    /// The base rate throughout.
    #[default]
    Constant,
    /// Cosine annealing to 0 over the run.
    Cosine,
    /// Divided by 10 every third of the epochs.
    Step,
    /// Divided by 10 after 2 epochs without improvement.
    Plateau,
}

impl Schedule {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::Cosine => "cosine",
            Schedule::Step => "step",
            Schedule::Plateau => "plateau",
        }
    }
}

/// `ReduceLROnPlateau`'s factor.
const PLATEAU_FACTOR: f64 = 0.1;
/// `ReduceLROnPlateau`'s patience, in epochs.
const PLATEAU_PATIENCE: usize = 2;
/// `ReduceLROnPlateau`'s relative threshold.
const PLATEAU_THRESHOLD: f64 = 1e-4;
/// `StepLR`'s gamma.
const STEP_GAMMA: f64 = 0.1;

/// A schedule under way: the rate of each step, and the plateau's state.
#[derive(Clone, Debug, PartialEq)]
pub struct LrSchedule {
    schedule: Schedule,
    base_lr: f64,
    warmup_steps: u64,
    total_steps: u64,
    epochs: usize,
    /// The plateau's current factor, its best loss and epochs since.
    plateau_scale: f64,
    plateau_best: f64,
    plateau_bad_epochs: usize,
}

impl LrSchedule {
    /// The schedule of a run of `epochs` epochs of `steps_per_epoch` steps from `base_lr`.
    pub fn new(
        schedule: Schedule,
        base_lr: f64,
        warmup_steps: u64,
        epochs: usize,
        steps_per_epoch: u64,
    ) -> Self {
        LrSchedule {
            schedule,
            base_lr,
            warmup_steps,
            total_steps: steps_per_epoch.saturating_mul(epochs as u64),
            epochs,
            plateau_scale: 1.0,
            plateau_best: f64::INFINITY,
            plateau_bad_epochs: 0,
        }
    }

    /// The rate of optimizer step `step` (from 0), in epoch `epoch` (from 0).
    pub fn lr(&self, step: u64, epoch: usize) -> f64 {
        let warmup = if step < self.warmup_steps {
            (step + 1) as f64 / self.warmup_steps as f64
        } else {
            1.0
        };
        let shaped = match self.schedule {
            Schedule::Constant => 1.0,
            Schedule::Cosine => {
                let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
                let progress = step.saturating_sub(self.warmup_steps).min(span);
                0.5 * (1.0 + (std::f64::consts::PI * progress as f64 / span as f64).cos())
            }
            Schedule::Step => {
                let step_size = (self.epochs / 3).max(1);
                STEP_GAMMA.powi(i32::try_from(epoch / step_size).unwrap_or(i32::MAX))
            }
            Schedule::Plateau => self.plateau_scale,
        };
        self.base_lr * warmup * shaped
    }

    /// Tells the schedule an epoch's monitored loss (the plateau schedule acts on it).
    pub fn end_epoch(&mut self, loss: f64) {
        if self.schedule != Schedule::Plateau {
            return;
        }
        if loss < self.plateau_best * (1.0 - PLATEAU_THRESHOLD) {
            self.plateau_best = loss;
            self.plateau_bad_epochs = 0;
        } else {
            self.plateau_bad_epochs += 1;
            if self.plateau_bad_epochs > PLATEAU_PATIENCE {
                self.plateau_scale *= PLATEAU_FACTOR;
                self.plateau_bad_epochs = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) {
        assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "{a} vs {b}");
    }

    #[test]
    fn warmup_ramps_linearly_then_hands_over() {
        let schedule = LrSchedule::new(Schedule::Constant, 0.1, 4, 2, 10);
        let rates: Vec<f64> = (0..6).map(|step| schedule.lr(step, 0)).collect();
        for (rate, expected) in rates.iter().zip([0.025, 0.05, 0.075, 0.1, 0.1, 0.1]) {
            close(*rate, expected);
        }
    }

    #[test]
    fn cosine_matches_pytorchs_closed_form() {
        // torch.optim.lr_scheduler.CosineAnnealingLR(T_max=8, eta_min=0) from lr 1, stepped
        // once per batch: 1, 0.9619, 0.8536, 0.6913, 0.5, 0.3087, 0.1464, 0.0381, 0.
        let expected = [
            1.0,
            0.961_939_766_255_643_4,
            0.853_553_390_593_273_8,
            0.691_341_716_182_544_9,
            0.5,
            0.308_658_283_817_455_1,
            0.146_446_609_406_726_24,
            0.038_060_233_744_356_63,
            0.0,
        ];
        let schedule = LrSchedule::new(Schedule::Cosine, 1.0, 0, 2, 4);
        for (step, rate) in expected.iter().enumerate() {
            close(schedule.lr(step as u64, 0), *rate);
        }
    }

    #[test]
    fn step_divides_by_ten_every_third_of_the_epochs() {
        let schedule = LrSchedule::new(Schedule::Step, 1.0, 0, 9, 5);
        let rates: Vec<f64> = (0..9).map(|epoch| schedule.lr(0, epoch)).collect();
        for (epoch, rate) in rates.iter().enumerate() {
            close(*rate, 0.1f64.powi((epoch / 3) as i32));
        }
    }

    #[test]
    fn plateau_waits_its_patience_before_reducing() {
        // ReduceLROnPlateau(factor=0.1, patience=2): improvement, then three epochs without
        // one reduce the rate once, at the end of the third.
        let mut schedule = LrSchedule::new(Schedule::Plateau, 1.0, 0, 10, 1);
        let mut rates = Vec::new();
        for loss in [1.0, 0.5, 0.5, 0.6, 0.5, 0.4, 0.39999, 0.4, 0.41] {
            schedule.end_epoch(loss);
            rates.push(schedule.lr(0, 0));
        }
        // 0.39999 is within the 1e-4 relative threshold of 0.4: not an improvement.
        let expected = [1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.1, 0.01];
        for (rate, expected) in rates.iter().zip(expected) {
            close(*rate, expected);
        }
    }
}
