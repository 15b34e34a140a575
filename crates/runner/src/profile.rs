//! `ckb profile <family> ARGS`: any shape from the command line, sweeps included. The
//! family parses its own arguments; they are checked before the GPU is opened, so bad input
//! fails at once with one line.

use anyhow::Result;

use crate::measure::Context;
use crate::ops;

/// Runs the profile; returns whether every case was correct.
pub fn run(device: usize, family: &str, args: &[String]) -> Result<bool> {
    let family = ops::find(family)?;
    let mut full = vec![format!("ckb profile {}", family.name())];
    full.extend(args.iter().cloned());
    family.check_profile_args(&full)?;
    let ctx = Context::open(device)?;
    let rows = family.profile(&ctx, &full)?;
    Ok(rows.iter().all(|r| r.correct))
}

#[cfg(test)]
mod tests {
    use crate::ops;

    fn check(family: &str, args: &str) -> anyhow::Result<()> {
        let mut full = vec![format!("ckb profile {family}")];
        full.extend(args.split_whitespace().map(String::from));
        ops::find(family)?.check_profile_args(&full)
    }

    #[test]
    fn the_documented_forms_parse() {
        check("gemm", "--m 2304 --n 6144 --k 1000 --layout rc --dtype bf16").unwrap();
        check("gemm", "--m 2304 --n 6144 --k 1000 --layout rc --dtype bf16 --out-dtype f32 --alpha 0.5 --beta 1")
            .unwrap();
        check("gemm", "--m 1024:8192:1024 --n 4096 --k 4096,4100 --ld 4200,4200,4200 --variant all").unwrap();
        check("reduce", "--op argmax --dtype bf16 --shape 8192x32768 --axis 0").unwrap();
        check("norm", "--op layernorm --dtype bf16 --rows 4096 --cols 50257 --row-stride 50264").unwrap();
        check("elementwise", "--op axpy --dtype f16 --n 100000001").unwrap();
    }

    #[test]
    fn bad_input_is_a_one_line_error() {
        let bad = [
            ("gemm", "--m 0 --n 4 --k 4"),
            ("gemm", "--m 99999999999 --n 4 --k 4"),
            ("gemm", "--m 4 --n 4 --k 4 --dtype f64"),
            ("gemm", "--m 4 --n 4 --k 4 --layout rx"),
            ("gemm", "--m 4 --n 4 --k 4 --ld 1,4,4"),
            ("gemm", "--m 4 --n 4 --k 4 --variant nope"),
            ("gemm", "--n 4 --k 4"),
            ("reduce", "--op median --shape 10"),
            ("reduce", "--op sum --shape 10x0"),
            ("reduce", "--op sum --shape 10x10 --axis 2"),
            ("norm", "--op layernorm --rows 4 --cols 8 --row-stride 4"),
            ("norm", "--op groupnorm --rows 4 --cols 8"),
            ("elementwise", "--op cast --dtype f32 --n 10"),
            ("elementwise", "--op add --n 0"),
            ("conv", "--n 1"),
        ];
        for (family, args) in bad {
            let err = check(family, args).expect_err(args);
            let text = format!("{err:#}");
            assert!(!text.contains('\n'), "{family} {args}: error spans lines: {text}");
        }
    }
}
