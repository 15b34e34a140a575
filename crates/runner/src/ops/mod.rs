//! Per operator: how one case is measured and checked. Gates, benches and the fuzzer all
//! go through these, over the operator crate's one variants table.

pub mod elementwise;
pub mod gemm;
pub mod norm;
pub mod reduce;

/// `2^k` for powers of two, else the number.
pub fn size_label(n: usize) -> String {
    if n.is_power_of_two() && n >= 1024 {
        format!("2^{}", n.trailing_zeros())
    } else {
        n.to_string()
    }
}
