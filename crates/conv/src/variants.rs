//! The variants table and the planner: every launch runs the [`ConvPlan`] that
//! [`plan`] makes here, once, in Rust; the launchers execute it as given.
//!
//! Today the table holds the direct kernel, which takes every valid problem; the implicit
//! GEMM (3A) and the specialized kernels (3C: depthwise, stem, 1x1) join it as rows the
//! planner prefers where they apply.

use std::fmt;

use crate::problem::{Conv2dProblem, ConvResult};

/// A kernel of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConvVariant {
    /// One thread per output element, any shape: the variant every problem can take.
    Direct,
}

/// Every variant, with its name in plans, records and `--variant`.
pub const CONV_VARIANTS: &[(ConvVariant, &str)] = &[(ConvVariant::Direct, "direct")];

impl ConvVariant {
    /// Its name in the table.
    pub fn name(self) -> &'static str {
        CONV_VARIANTS.iter().find(|(v, _)| *v == self).map(|(_, n)| *n).expect("every variant is in the table")
    }

    /// The variant named `name`, if any.
    pub fn by_name(name: &str) -> Option<ConvVariant> {
        CONV_VARIANTS.iter().find(|(_, n)| *n == name).map(|(v, _)| *v)
    }
}

/// Threads of a direct CTA (`__launch_bounds__(256)`).
const DIRECT_THREADS: usize = 256;
/// Direct CTAs per SM that the grid-stride launch keeps resident (62 registers a thread: 4).
const DIRECT_CTAS_PER_SM: usize = 4;

/// What a launch runs: the variant and its grid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ConvPlan {
    /// The kernel.
    pub variant: ConvVariant,
    /// CTAs of the launch.
    pub grid: usize,
    /// Threads per CTA.
    pub threads: usize,
}

impl fmt::Display for ConvPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}, {} CTAs x {} thr", self.variant.name(), self.grid, self.threads)
    }
}

/// The plan for a validated, non-empty `problem` on a GPU of `sms` multiprocessors: a
/// grid-stride launch of as many direct CTAs as are resident at once, fewer for small
/// outputs.
pub fn plan(problem: &Conv2dProblem, sms: usize) -> ConvResult<ConvPlan> {
    problem.validate()?;
    let outputs = problem.output_len()?;
    let blocks = outputs.div_ceil(DIRECT_THREADS).max(1);
    let grid = blocks.min(sms.max(1) * DIRECT_CTAS_PER_SM);
    Ok(ConvPlan { variant: ConvVariant::Direct, grid, threads: DIRECT_THREADS })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_grids_cover_small_outputs_and_stay_resident_on_large_ones() {
        // 2 x 9 x 11 x 24 outputs: 19 CTAs of 256 threads.
        let small = Conv2dProblem::new(2, (9, 11), 16, 24, (3, 3)).with_padding(1, 1);
        assert_eq!(plan(&small, 132).unwrap(), ConvPlan { variant: ConvVariant::Direct, grid: 19, threads: 256 });
        let large = Conv2dProblem::new(256, (56, 56), 64, 64, (3, 3)).with_padding(1, 1);
        assert_eq!(plan(&large, 132).unwrap().grid, 4 * 132);
        assert_eq!(plan(&Conv2dProblem::new(1, (1, 1), 1, 1, (1, 1)), 132).unwrap().grid, 1);
        assert!(plan(&small.with_groups(5), 132).is_err());
        assert_eq!(ConvVariant::by_name("direct"), Some(ConvVariant::Direct));
        assert_eq!(plan(&small, 132).unwrap().to_string(), "direct, 19 CTAs x 256 thr");
    }
}
