//! The one table of compiled kernel variants, and the choice among them.
//!
//! Element-wise: one compiled configuration per op and type (256 threads, 4 packs of 16
//! bytes per thread and operand, kernels/elementwise.cuh); the variants differ in how the
//! grid is sized, a launch-time choice. A view whose operands are misaligned by different
//! amounts takes the scalar path of the same kernel (not a variant: chosen by address).

use ckb_common::Gpu;
use cudarc::driver::sys::CUdevice_attribute;

use crate::problem::ReduceResult;

/// How an element-wise launch sizes its grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GridPolicy {
    /// One block per tile of 256 x 4 packs; the hardware balances blocks over SMs.
    OneTilePerBlock,
    /// `blocks_per_sm` blocks per SM, each looping over tiles (grid-stride).
    Persistent { blocks_per_sm: u32 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EwVariant {
    pub name: &'static str,
    pub grid: GridPolicy,
}

/// Every element-wise variant; the first is the default.
pub const EW_VARIANTS: &[EwVariant] = &[
    EwVariant { name: "vec16-tile-per-block", grid: GridPolicy::OneTilePerBlock },
    EwVariant { name: "vec16-persistent-4", grid: GridPolicy::Persistent { blocks_per_sm: 4 } },
    EwVariant { name: "vec16-persistent-8", grid: GridPolicy::Persistent { blocks_per_sm: 8 } },
];

impl Default for EwVariant {
    fn default() -> Self {
        EW_VARIANTS[0]
    }
}

impl EwVariant {
    pub fn by_name(name: &str) -> Option<EwVariant> {
        EW_VARIANTS.iter().copied().find(|v| v.name == name)
    }

    /// The most blocks a launch may use; the kernel loops over what remains.
    pub(crate) fn grid_limit(&self, gpu: &Gpu) -> ReduceResult<i64> {
        Ok(match self.grid {
            GridPolicy::OneTilePerBlock => i64::MAX,
            GridPolicy::Persistent { blocks_per_sm } => i64::from(sm_count(gpu)?) * i64::from(blocks_per_sm),
        })
    }
}

/// Streaming multiprocessors on the stream's device.
pub(crate) fn sm_count(gpu: &Gpu) -> ReduceResult<u32> {
    let sms = gpu.ctx.attribute(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT).map_err(ckb_common::GpuError::from)?;
    Ok(sms.max(1) as u32)
}
