//! [`MpiWorld`]: the [`Collective`] of a data-parallel run over MPI (feature `mpi`), through
//! rsmpi's `mpi` crate on the system's Open MPI or MPICH. A step's one all-reduce is an
//! `MPI_Allreduce` with `MPI_SUM` over the step's flat buffer in its own element type.
//!
//! MPI's default error handler (`MPI_ERRORS_ARE_FATAL`) ends the whole job when a call
//! fails, and `mpirun` ends every rank when one of them dies, so no rank is left waiting in
//! an all-reduce for a peer that is gone.

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Root};

use super::distributed::{Collective, DistributedError};

/// `MPI_COMM_WORLD` of this process, and MPI itself: MPI is finalized when this is dropped.
pub struct MpiWorld {
    /// Every process of the job.
    world: SimpleCommunicator,
    /// Finalizes MPI when dropped, after `world`.
    _universe: Universe,
}

impl std::fmt::Debug for MpiWorld {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("MpiWorld")
            .field("rank", &self.world.rank())
            .field("size", &self.world.size())
            .finish()
    }
}

impl MpiWorld {
    /// Initializes MPI (one thread calls it: the ranks' own threads only run matrix
    /// products between calls).
    ///
    /// # Errors
    ///
    /// [`DistributedError::Collective`] if MPI was already initialized in this process.
    pub fn init() -> Result<Self, DistributedError> {
        let universe = mpi::initialize().ok_or_else(|| DistributedError::Collective {
            operation: "MPI_Init",
            reason: "MPI is already initialized in this process".into(),
        })?;
        Ok(MpiWorld {
            world: universe.world(),
            _universe: universe,
        })
    }

    /// Ranks on this machine (those that share its memory), this one included: what the
    /// machine's cores are shared among.
    pub fn ranks_on_this_node(&self) -> usize {
        usize::try_from(self.world.split_shared(self.world.rank()).size()).unwrap_or(1)
    }

    /// Ends every rank of the job with `code` (`MPI_Abort`): what a rank does after an error
    /// the others cannot see, so that they do not wait for it forever.
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }

    /// `values` summed over the ranks in place (MPI has no in-place all-reduce in rsmpi's
    /// safe API, so the sum goes through a second buffer).
    fn all_reduce<T: mpi::datatype::Equivalence + Copy>(&self, values: &mut [T]) {
        let send = values.to_vec();
        self.world
            .all_reduce_into(&send[..], values, SystemOperation::sum());
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        // MPI ranks are never negative.
        usize::try_from(self.world.rank()).unwrap_or(0)
    }

    fn size(&self) -> usize {
        usize::try_from(self.world.size()).unwrap_or(1)
    }

    fn sum_f32(&self, values: &mut [f32]) -> Result<(), DistributedError> {
        check_count(values.len())?;
        self.all_reduce(values);
        Ok(())
    }

    fn sum_f64(&self, values: &mut [f64]) -> Result<(), DistributedError> {
        check_count(values.len())?;
        self.all_reduce(values);
        Ok(())
    }

    fn broadcast_bytes(&self, bytes: &mut Vec<u8>) -> Result<(), DistributedError> {
        let root = self.world.process_at_rank(0);
        let mut len = bytes.len() as u64;
        root.broadcast_into(&mut len);
        let len = usize::try_from(len).map_err(|_| DistributedError::Collective {
            operation: "broadcast",
            reason: format!("{len} bytes do not fit in this process' memory"),
        })?;
        check_count(len)?;
        bytes.resize(len, 0);
        root.broadcast_into(&mut bytes[..]);
        Ok(())
    }
}

/// `Ok` if MPI can send `count` elements in one call (its counts are C `int`s).
fn check_count(count: usize) -> Result<(), DistributedError> {
    if i32::try_from(count).is_err() {
        return Err(DistributedError::Collective {
            operation: "all-reduce",
            reason: format!(
                "{count} elements are past MPI's count limit of {}",
                i32::MAX
            ),
        });
    }
    Ok(())
}
