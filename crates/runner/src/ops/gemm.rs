//! GEMM against cuBLAS. (Filled in once the GEMM crate's API lands.)

use anyhow::{bail, Result};
use ckb_common::Gpu;

use crate::fuzz::FuzzReport;
use crate::record::CaseResult;

pub enum FuzzScope {
    SimpleKernel,
    AllVariants,
}

pub fn fuzz(_gpu: &Gpu, _cases: u32, _seed: u64, _scope: FuzzScope) -> Result<FuzzReport> {
    bail!("the GEMM crate has no kernels yet")
}

pub fn bench(_gpu: &Gpu, _variant: Option<&str>) -> Result<Vec<CaseResult>> {
    bail!("the GEMM crate has no kernels yet")
}
