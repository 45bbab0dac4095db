//! The cells the command line runs by name: the zoo's, and those a binary of one's own adds
//! through [`main_with`](super::main_with). The subcommands that are generic over the cell
//! type (`infer`, `train`, `bench`, `predict`) look the name of `--cell` up here and run
//! their work with the type registered under it; `lstm cells` lists them all.
//!
//! A cell type is chosen at compile time, a name at run time: each entry keeps, per element
//! type, an object whose methods are the subcommands' work instantiated for its cell type.

use std::marker::PhantomData;

use lstm::{Cell, CellSpec, CellVisitor, Error, Float, Result, visit_zoo_cell};

use super::bench::{Bench, Measurement};
use super::infer::Infer;
use super::predict::Predict;
#[cfg(feature = "mpi")]
use super::train::TrainCellDistributed;
use super::train::{TrainCell, TrainData};

/// A cell the command line can run by name (`--cell NAME`, its `SPEC.name`), in f32 and f64.
///
/// ```no_run
/// use lstm::cli::CliCell;
/// use lstm::lstm_cell;
///
/// /// Coupled input and forget gates.
/// #[lstm_cell(i = 1.0 - f)]
/// pub struct Coupled;
///
/// fn main() -> std::process::ExitCode {
///     // `my-lstm infer --cell coupled …`, `my-lstm train --cell coupled`, and so on.
///     lstm::cli::main_with(&[CliCell::of::<Coupled<f32>, Coupled<f64>>()])
/// }
/// ```
#[derive(Clone, Copy)]
pub struct CliCell {
    spec: &'static CellSpec,
    spec_f64: &'static CellSpec,
    f32: &'static dyn Jobs<f32>,
    f64: &'static dyn Jobs<f64>,
    bench: &'static dyn BenchJob,
}

impl CliCell {
    /// The cell whose type is `C32` in f32 and `C64` in f64: for a cell `MyCell` defined with
    /// `#[lstm_cell]`, `CliCell::of::<MyCell<f32>, MyCell<f64>>()`.
    /// [`main_with`](super::main_with) rejects a pair whose specs differ.
    pub fn of<C32: Cell<Elem = f32>, C64: Cell<Elem = f64>>() -> CliCell {
        CliCell {
            spec: C32::SPEC,
            spec_f64: C64::SPEC,
            f32: typed::<C32>(),
            f64: typed::<C64>(),
            bench: typed::<C32>(),
        }
    }

    /// The name `--cell` selects it by.
    pub fn name(&self) -> &'static str {
        self.spec.name
    }

    /// Its spec: gates, parameters, equations.
    pub fn spec(&self) -> &'static CellSpec {
        self.spec
    }

    /// The subcommands' work for its cell type in precision `F`.
    pub(crate) fn jobs<F: Precision>(&self) -> &'static dyn Jobs<F> {
        F::jobs(self)
    }

    /// `lstm bench` for its cell type (benchmarks run in f32).
    pub(crate) fn bench(&self, job: Bench<'_>) -> Result<Measurement> {
        self.bench.bench(job)
    }
}

impl std::fmt::Debug for CliCell {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CliCell")
            .field("name", &self.spec.name)
            .field("type_name", &self.spec.type_name)
            .finish_non_exhaustive()
    }
}

/// The subcommands' work, generic over the cell type, for one cell type in precision `F`.
pub(crate) trait Jobs<F: Float>: Sync {
    /// `lstm infer`.
    fn infer(&self, job: Infer<'_, F>) -> Result<()>;
    /// `lstm train` on a built-in task.
    fn train_cell(&self, job: TrainCell<'_>) -> <TrainCell<'_> as CellVisitor<F>>::Output;
    /// `lstm train --data`.
    fn train_data(&self, job: TrainData<'_>) -> <TrainData<'_> as CellVisitor<F>>::Output;
    /// `lstm train --distributed` on a built-in task.
    #[cfg(feature = "mpi")]
    fn train_distributed(
        &self,
        job: TrainCellDistributed<'_>,
    ) -> <TrainCellDistributed<'_> as CellVisitor<F>>::Output;
    /// `lstm predict`.
    fn predict(&self, job: Predict<'_, F>) -> <Predict<'_, F> as CellVisitor<F>>::Output;
}

/// `lstm bench`, which runs in f32 only.
trait BenchJob: Sync {
    /// Measures the cell type.
    fn bench(&self, job: Bench<'_>) -> Result<Measurement>;
}

/// The cell type `C`, as a value. `fn() -> C` keeps it `Sync` whatever `C` is.
struct Typed<C>(PhantomData<fn() -> C>);

/// The jobs of the cell type `C`. A zero-sized value: leaking its box allocates nothing.
fn typed<C: Cell>() -> &'static Typed<C> {
    Box::leak(Box::new(Typed(PhantomData)))
}

impl<C: Cell> Jobs<C::Elem> for Typed<C> {
    fn infer(&self, job: Infer<'_, C::Elem>) -> Result<()> {
        job.visit::<C>()
    }

    fn train_cell(&self, job: TrainCell<'_>) -> <TrainCell<'_> as CellVisitor<C::Elem>>::Output {
        CellVisitor::<C::Elem>::visit::<C>(job)
    }

    fn train_data(&self, job: TrainData<'_>) -> <TrainData<'_> as CellVisitor<C::Elem>>::Output {
        CellVisitor::<C::Elem>::visit::<C>(job)
    }

    #[cfg(feature = "mpi")]
    fn train_distributed(
        &self,
        job: TrainCellDistributed<'_>,
    ) -> <TrainCellDistributed<'_> as CellVisitor<C::Elem>>::Output {
        CellVisitor::<C::Elem>::visit::<C>(job)
    }

    fn predict(
        &self,
        job: Predict<'_, C::Elem>,
    ) -> <Predict<'_, C::Elem> as CellVisitor<C::Elem>>::Output {
        job.visit::<C>()
    }
}

impl<C: Cell<Elem = f32>> BenchJob for Typed<C> {
    fn bench(&self, job: Bench<'_>) -> Result<Measurement> {
        job.visit::<C>()
    }
}

/// The element types a cell runs in, each picking its jobs from a [`CliCell`].
pub(crate) trait Precision: Float {
    /// `cell`'s jobs in this precision.
    fn jobs(cell: &CliCell) -> &'static dyn Jobs<Self>;
}

impl Precision for f32 {
    fn jobs(cell: &CliCell) -> &'static dyn Jobs<f32> {
        cell.f32
    }
}

impl Precision for f64 {
    fn jobs(cell: &CliCell) -> &'static dyn Jobs<f64> {
        cell.f64
    }
}

/// Every cell the command line knows: the zoo's, then a binary's own.
#[derive(Debug)]
pub struct Catalog {
    cells: Vec<CliCell>,
}

impl Catalog {
    /// The zoo's cells.
    pub fn zoo() -> Catalog {
        let cells = lstm::zoo::all()
            .iter()
            .map(|spec| zoo_cell(spec.name))
            .collect();
        Catalog { cells }
    }

    /// The zoo's cells and `own`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the option `cell` if one of `own` has the name of a zoo cell
    /// or of another of `own`, or was registered with two different cells for f32 and f64.
    pub fn with(own: &[CliCell]) -> Result<Catalog> {
        let mut catalog = Catalog::zoo();
        for cell in own {
            if cell.spec.name != cell.spec_f64.name {
                return Err(Error::Config {
                    option: "cell".into(),
                    reason: format!(
                        "`{}` was registered with `{}` for f32 and `{}` for f64; expected the \
                         same cell in both precisions",
                        cell.spec.name, cell.spec.type_name, cell.spec_f64.type_name
                    ),
                });
            }
            if catalog.find(cell.name()).is_ok() {
                return Err(Error::Config {
                    option: "cell".into(),
                    reason: format!(
                        "two cells are called `{}`; expected each name once (the zoo's: {})",
                        cell.name(),
                        Catalog::zoo().names().join(", ")
                    ),
                });
            }
            catalog.cells.push(*cell);
        }
        Ok(catalog)
    }

    /// The cell called `name`.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] naming the option `cell` and listing every name if none is `name`.
    pub fn find(&self, name: &str) -> Result<&CliCell> {
        self.cells
            .iter()
            .find(|cell| cell.name() == name)
            .ok_or_else(|| Error::Config {
                option: "cell".into(),
                reason: format!(
                    "no cell is called `{name}`; expected one of {}",
                    self.names().join(", ")
                ),
            })
    }

    /// Every cell's spec, zoo first.
    pub fn specs(&self) -> Vec<&'static CellSpec> {
        self.cells.iter().map(CliCell::spec).collect()
    }

    fn names(&self) -> Vec<&'static str> {
        self.cells.iter().map(CliCell::name).collect()
    }
}

/// The zoo cell called `name`, one of `zoo::all()`'s.
fn zoo_cell(name: &str) -> CliCell {
    // `visit_zoo_cell` owns the table from names to types; these names come from the same
    // zoo, so the lookups cannot fail.
    let (f32, spec, bench) =
        visit_zoo_cell::<f32, _>(name, Register).expect("every name of zoo::all() is a zoo cell");
    let (f64, spec_f64, _) =
        visit_zoo_cell::<f64, _>(name, Register).expect("every name of zoo::all() is a zoo cell");
    CliCell {
        spec,
        spec_f64,
        f32,
        f64,
        bench: bench.expect("f32 cells are benchmarked"),
    }
}

/// Turns the cell type a visit is made with into its jobs.
struct Register;

/// What [`Register`] returns: the jobs in one precision, the spec, and in f32 the benchmark.
type Registered<F> = (
    &'static dyn Jobs<F>,
    &'static CellSpec,
    Option<&'static dyn BenchJob>,
);

impl CellVisitor<f32> for Register {
    type Output = Registered<f32>;

    fn visit<C: Cell<Elem = f32>>(self) -> Registered<f32> {
        let bench: &'static dyn BenchJob = typed::<C>();
        (typed::<C>(), C::SPEC, Some(bench))
    }
}

impl CellVisitor<f64> for Register {
    type Output = Registered<f64>;

    fn visit<C: Cell<Elem = f64>>(self) -> Registered<f64> {
        (typed::<C>(), C::SPEC, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_the_zoo_and_finds_by_name() {
        let catalog = Catalog::zoo();
        let names: Vec<&str> = lstm::zoo::all().iter().map(|spec| spec.name).collect();
        assert_eq!(catalog.names(), names);
        for spec in lstm::zoo::all() {
            let cell = catalog.find(spec.name).unwrap();
            assert_eq!(cell.name(), spec.name);
            assert_eq!(cell.spec().type_name, spec.type_name);
        }
        let message = catalog.find("mgu").unwrap_err().to_string();
        assert!(message.contains("no cell is called `mgu`"), "{message}");
        assert!(message.contains("lstm, forget_bias"), "{message}");
    }

    #[test]
    fn adds_own_cells_and_rejects_clashes() {
        use lstm::zoo::{Cifg, Lstm, Peephole};
        // A zoo cell under its own name clashes with the zoo.
        let clash = Catalog::with(&[CliCell::of::<Lstm<f32>, Lstm<f64>>()]).unwrap_err();
        assert!(
            clash.to_string().contains("two cells are called `lstm`"),
            "{clash}"
        );
        let mixed = Catalog::with(&[CliCell::of::<Cifg<f32>, Peephole<f64>>()]).unwrap_err();
        assert!(mixed.to_string().contains("`Cifg` for f32"), "{mixed}");
    }
}
