//! CPU reference (float64 accumulation).
