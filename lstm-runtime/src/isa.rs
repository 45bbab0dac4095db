//! The instruction-set level the kernels run at: the hand-written products and the generated
//! row kernels are compiled once per level and pick one at run time, never at build time (the
//! crate is built for baseline x86-64, so one binary runs on every x86-64 CPU).
//!
//! The level is the best one the CPU supports, unless lowered by the `LSTM_ISA` environment
//! variable (`baseline`, `avx2`, `avx512`; read once) or by [`set_active`], so that tests and
//! benchmarks can compare every level a machine supports against the scalar reference.

use std::sync::atomic::{AtomicU8, Ordering};

use crate::error::{Error, Result};

/// An instruction-set level a kernel is compiled for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Baseline x86-64 (SSE2, 4 f32 lanes), or any other architecture: portable code only.
    Baseline,
    /// AVX2 and FMA (x86-64-v3): 8 f32 lanes, fused multiply-adds.
    Avx2,
    /// AVX-512 F, VL, BW and DQ on top of AVX2 and FMA (x86-64-v4): 16 f32 lanes.
    Avx512,
}

impl Isa {
    /// Every level, lowest first.
    pub const ALL: [Isa; 3] = [Isa::Baseline, Isa::Avx2, Isa::Avx512];

    /// The level's name as `LSTM_ISA` and `lstm bench` spell it.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Baseline => "baseline",
            Isa::Avx2 => "avx2",
            Isa::Avx512 => "avx512",
        }
    }

    /// The level named `name` (`baseline`, `avx2`, `avx512`).
    pub fn from_name(name: &str) -> Result<Isa> {
        Isa::ALL
            .into_iter()
            .find(|isa| isa.name() == name.trim().to_ascii_lowercase())
            .ok_or_else(|| Error::InvalidValue {
                what: "LSTM_ISA".into(),
                reason: format!("`{name}` is not an ISA level; expected baseline, avx2 or avx512"),
            })
    }

    /// Whether this CPU runs code compiled for the level.
    pub fn supported(self) -> bool {
        match self {
            Isa::Baseline => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => {
                Isa::Avx2.supported()
                    && std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("avx512dq")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The best level this CPU supports.
    pub fn detected() -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|isa| isa.supported())
            .unwrap_or(Isa::Baseline)
    }

    /// The levels this CPU supports, lowest first.
    pub fn supported_levels() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|isa| isa.supported()).collect()
    }

    fn from_code(code: u8) -> Isa {
        Isa::ALL[usize::from(code).min(Isa::ALL.len() - 1)]
    }
}

impl std::fmt::Display for Isa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The active level's index in [`Isa::ALL`], or `UNSET` before the first call.
static ACTIVE: AtomicU8 = AtomicU8::new(UNSET);
const UNSET: u8 = u8::MAX;

/// The level the kernels run at now: [`set_active`]'s, else `LSTM_ISA`'s (lowered to what the
/// CPU supports; an unknown name is ignored, see [`requested`]), else [`Isa::detected`].
#[inline]
pub fn active() -> Isa {
    match ACTIVE.load(Ordering::Relaxed) {
        UNSET => {
            let detected = Isa::detected();
            let isa = match requested() {
                Ok(Some(wanted)) => wanted.min(detected),
                _ => detected,
            };
            ACTIVE.store(isa as u8, Ordering::Relaxed);
            isa
        }
        code => Isa::from_code(code),
    }
}

/// The level `LSTM_ISA` asks for, if it is set: an error names a value that is no level.
pub fn requested() -> Result<Option<Isa>> {
    match std::env::var("LSTM_ISA") {
        Ok(value) if !value.trim().is_empty() => Isa::from_name(&value).map(Some),
        _ => Ok(None),
    }
}

/// Runs the kernels at `isa` from now on, in every thread; an error if the CPU lacks it.
///
/// Meant for tests and benchmarks that compare levels: calls that run meanwhile on other
/// threads may switch level between two kernels, which changes rounding, never validity.
pub fn set_active(isa: Isa) -> Result<()> {
    if !isa.supported() {
        return Err(Error::Config {
            option: "isa".into(),
            reason: format!(
                "this CPU does not support {isa}; it supports {}",
                Isa::supported_levels()
                    .iter()
                    .map(|isa| isa.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    ACTIVE.store(isa as u8, Ordering::Relaxed);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_names_are_errors() {
        for isa in Isa::ALL {
            assert_eq!(Isa::from_name(isa.name()), Ok(isa));
        }
        assert_eq!(Isa::from_name(" AVX2 "), Ok(Isa::Avx2));
        let err = Isa::from_name("sse9").unwrap_err().to_string();
        assert!(err.contains("sse9"), "{err}");
    }

    #[test]
    fn baseline_is_always_supported_and_levels_are_ordered() {
        assert!(Isa::Baseline.supported());
        let levels = Isa::supported_levels();
        assert_eq!(levels.first(), Some(&Isa::Baseline));
        assert_eq!(levels.last(), Some(&Isa::detected()));
        // A level is supported only if every lower one is.
        for pair in Isa::ALL.windows(2) {
            assert!(!pair[1].supported() || pair[0].supported());
        }
    }
}
