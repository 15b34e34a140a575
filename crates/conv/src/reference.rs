//! CPU reference for 2-D convolution (cross-correlation, as in cuDNN and PyTorch), in float64.
//!
//! Tensor layouts:
//! - input  `N x H x W x C`, NHWC, densely packed;
//! - weights `K x R x S x (C / groups)`, KRSC: filter `k` reads the channels of its group,
//!   `g = k / (K / groups)`, namely channels `g * C/groups .. (g + 1) * C/groups`;
//! - output `N x P x Q x K`, NHWK.
//!
//! Output pixel `(p, q)` reads input row `p * stride_h - pad_h + r * dilation_h` for filter
//! row `r` (likewise for columns). Padding is symmetric per dimension and reads as zero.
//! NaN and inf propagate as in plain arithmetic; positions that fall in the padding do not
//! multiply anything, so `0 * inf` never arises from them.
//!
//! The shape is a [`Conv2dProblem`]. The reference takes every shape that
//! [`Conv2dProblem::check_shape`] accepts, also those beyond the kernels' index limits.

use rayon::prelude::*;

use crate::problem::{checked_product, Activation, Conv2dProblem, ConvShapeError};

impl Conv2dProblem {
    /// For output pixel number `pixel` (in NPQ order), each filter tap `r * S + s` that lands
    /// inside the input, with the offset of the input pixel it reads (channel 0).
    fn taps(&self, pixel: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
        let (p_size, q_size) = self.output_hw().expect("checked shape");
        let (n, p, q) = (pixel / (p_size * q_size), pixel / q_size % p_size, pixel % q_size);
        // Input index read by output index `out` through filter tap `tap`; None in the padding.
        let source = |out: usize, tap: usize, stride: usize, pad: usize, dilation: usize, extent: usize| {
            (out * stride + tap * dilation).checked_sub(pad).filter(|&at| at < extent)
        };
        let rows = (0..self.filter_h)
            .filter_map(move |r| source(p, r, self.stride_h, self.pad_h, self.dilation_h, self.in_h).map(|h| (r, h)));
        rows.flat_map(move |(r, h)| {
            (0..self.filter_w).filter_map(move |s| {
                let w = source(q, s, self.stride_w, self.pad_w, self.dilation_w, self.in_w)?;
                Some((r * self.filter_w + s, ((n * self.in_h + h) * self.in_w + w) * self.in_channels))
            })
        })
    }

    fn check_lengths(&self, input: &[f64], weights: Option<&[f64]>) -> Result<(), ConvShapeError> {
        self.check_shape()?;
        check_len("input", self.input_len()?, input.len())?;
        if let Some(weights) = weights {
            check_len("weights", self.weights_len()?, weights.len())?;
        }
        Ok(())
    }
}

fn check_len(what: &'static str, expected: usize, actual: usize) -> Result<(), ConvShapeError> {
    if expected == actual {
        Ok(())
    } else {
        Err(ConvShapeError::LengthMismatch { what, expected, actual })
    }
}

/// Forward convolution: NHWC input and KRSC weights to an NPQK output, computed directly
/// (not through [`im2col`]), in parallel over output pixels.
pub fn conv2d(params: &Conv2dProblem, input: &[f64], weights: &[f64]) -> Result<Vec<f64>, ConvShapeError> {
    params.check_lengths(input, Some(weights))?;
    let mut output = vec![0.0; params.output_len()?];
    let (c_group, k_group) = (params.channels_per_group(), params.filters_per_group());
    let filter_len = params.filter_h * params.filter_w * c_group;
    output.par_chunks_mut(params.out_channels).enumerate().for_each(|(pixel, out_pixel)| {
        let taps: Vec<(usize, usize)> = params.taps(pixel).collect();
        for (k, out) in out_pixel.iter_mut().enumerate() {
            let channel_base = (k / k_group) * c_group;
            let filter = &weights[k * filter_len..(k + 1) * filter_len];
            *out = taps
                .iter()
                .map(|&(tap, pixel_at)| {
                    let channels = &input[pixel_at + channel_base..][..c_group];
                    channels.iter().zip(&filter[tap * c_group..][..c_group]).map(|(x, w)| x * w).sum::<f64>()
                })
                .sum();
        }
    });
    Ok(output)
}

/// The im2col matrix of one group: row-major `m x k` (see [`Conv2dProblem::gemm_dims`]), row
/// `(n * P + p) * Q + q` for each output pixel, column `(r * S + s) * C/groups + c` for each
/// filter tap and channel of the group, zero where the tap lands in the padding.
///
/// The columns follow the KRSC weight order, so filter `k` of group `g` is one contiguous row
/// of the weights and `output[pixel][g * K/groups + j] = sum_col im2col[pixel][col] *
/// weights[g * K/groups + j][col]`: a GEMM with the group's weights read as a column-major
/// `k x n` matrix.
pub fn im2col(params: &Conv2dProblem, input: &[f64], group: usize) -> Result<Vec<f64>, ConvShapeError> {
    params.check_lengths(input, None)?;
    assert!(group < params.groups, "group {group} out of range for {} groups", params.groups);
    let dims = params.gemm_dims()?;
    let c_group = params.channels_per_group();
    let channel_base = group * c_group;
    let mut columns = vec![0.0; checked_product("im2col", &[dims.m, dims.k])?];
    columns.par_chunks_mut(dims.k).enumerate().for_each(|(pixel, row)| {
        for (tap, pixel_at) in params.taps(pixel) {
            row[tap * c_group..][..c_group].copy_from_slice(&input[pixel_at + channel_base..][..c_group]);
        }
    });
    Ok(columns)
}

/// The fused epilogue on a reference output (NPQK, `out_channels` fastest): `bias[k]` added
/// where given, then `activation`, in float64.
pub fn epilogue(output: &mut [f64], out_channels: usize, bias: Option<&[f64]>, activation: Activation) {
    output.par_chunks_mut(out_channels).for_each(|pixel| {
        for (k, v) in pixel.iter_mut().enumerate() {
            let biased = *v + bias.map_or(0.0, |b| b[k]);
            *v = activate(biased, activation);
        }
    });
}

/// One value through `activation`, in float64.
pub fn activate(v: f64, activation: Activation) -> f64 {
    match activation {
        Activation::Identity => v,
        Activation::Relu => v.max(0.0),
        Activation::Silu => v / (1.0 + (-v).exp()),
        Activation::Gelu => 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2)),
    }
}
