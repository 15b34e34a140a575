//! Memory-bound streaming kernels: reductions and the element-wise family.

pub mod reference;
