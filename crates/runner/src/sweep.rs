//! Sweeps on the command line: a dimension is one value, a comma list, a range
//! `start:end[:step]` (end included), or a mix (`1,2,8:64:8`); a shape is dimensions joined
//! by `x` (`8192x32768`), and a shape list joins shapes by commas. `ckb profile` runs every
//! combination of the lists it is given.

use anyhow::{anyhow, bail, Result};

/// Most values one list may expand to, so that a typo (`1:100000000`) fails at once
/// instead of queueing a hundred million cases.
pub const MAX_VALUES: usize = 10_000;

/// A parsed list of sizes, in the order written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sizes(pub Vec<usize>);

impl std::str::FromStr for Sizes {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Sizes> {
        let mut values = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            if item.is_empty() {
                bail!("empty item in the list {text:?}");
            }
            let parts: Vec<&str> = item.split(':').collect();
            match parts.as_slice() {
                [one] => values.push(size(one)?),
                [start, end] | [start, end, _] => {
                    let (start, end) = (size(start)?, size(end)?);
                    let step = if parts.len() == 3 { size(parts[2])? } else { 1 };
                    if step == 0 {
                        bail!("range {item:?}: the step must be at least 1");
                    }
                    if end < start {
                        bail!("range {item:?} ends before it starts");
                    }
                    let count = (end - start) / step + 1;
                    if values.len() + count > MAX_VALUES {
                        bail!("the list {text:?} has more than {MAX_VALUES} values");
                    }
                    values.extend((0..count).map(|i| start + i * step));
                }
                _ => bail!("{item:?} is not a size or a range start:end[:step]"),
            }
            if values.len() > MAX_VALUES {
                bail!("the list {text:?} has more than {MAX_VALUES} values");
            }
        }
        Ok(Sizes(values))
    }
}

/// One size: decimal digits, with `_` allowed between them; `2^k` for powers of two.
fn size(text: &str) -> Result<usize> {
    let text = text.trim();
    if let Some(exp) = text.strip_prefix("2^") {
        let exp: u32 = exp.parse().map_err(|_| anyhow!("{text:?} is not a size"))?;
        return 1usize.checked_shl(exp).filter(|_| exp < usize::BITS).ok_or_else(|| anyhow!("{text} overflows"));
    }
    let digits: String = text.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        bail!("{text:?} is not a size");
    }
    digits.parse().map_err(|_| anyhow!("{text} does not fit in {} bits", usize::BITS))
}

/// A list of shapes: `8192x32768,4096x50257`; each shape's dimensions may themselves be
/// lists only through repetition of the shape, which keeps the notation unambiguous.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shapes(pub Vec<Vec<usize>>);

impl std::str::FromStr for Shapes {
    type Err = anyhow::Error;

    fn from_str(text: &str) -> Result<Shapes> {
        let shapes = text
            .split(',')
            .map(|shape| shape.split('x').map(size).collect::<Result<Vec<usize>>>())
            .collect::<Result<Vec<_>>>()?;
        if shapes.iter().any(Vec::is_empty) {
            bail!("empty shape in {text:?}");
        }
        Ok(Shapes(shapes))
    }
}

/// Every combination of the lists, the last list varying fastest.
pub fn combinations<T: Clone>(lists: &[&[T]]) -> Vec<Vec<T>> {
    lists.iter().fold(vec![Vec::new()], |acc, list| {
        acc.iter()
            .flat_map(|prefix| {
                list.iter().map(move |v| {
                    let mut next = prefix.clone();
                    next.push(v.clone());
                    next
                })
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sizes(text: &str) -> Vec<usize> {
        text.parse::<Sizes>().unwrap().0
    }

    #[test]
    fn lists_ranges_and_powers() {
        assert_eq!(sizes("4096"), [4096]);
        assert_eq!(sizes("4096,4100"), [4096, 4100]);
        assert_eq!(sizes("1024:4096:1024"), [1024, 2048, 3072, 4096]);
        assert_eq!(sizes("1:3"), [1, 2, 3]);
        assert_eq!(sizes("1,8:20:8,2^20"), [1, 8, 16, 1 << 20]);
        assert_eq!(sizes("100_000_001"), [100_000_001]);
    }

    #[test]
    fn bad_lists_are_errors_not_panics() {
        for bad in ["", "a", "1,,2", "5:1", "1:9:0", "1:2:3:4", "-3", "2^99", "99999999999999999999999", "1:1000000"] {
            assert!(bad.parse::<Sizes>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn shapes() {
        assert_eq!("8192x32768".parse::<Shapes>().unwrap().0, vec![vec![8192, 32768]]);
        assert_eq!("7,2x3x4".parse::<Shapes>().unwrap().0, vec![vec![7], vec![2, 3, 4]]);
        assert!("8x,3".parse::<Shapes>().is_err());
    }

    #[test]
    fn combinations_vary_the_last_list_fastest() {
        let all = combinations(&[&[1, 2][..], &[3, 4, 5][..]]);
        assert_eq!(all.len(), 6);
        assert_eq!(all[0], [1, 3]);
        assert_eq!(all[1], [1, 4]);
        assert_eq!(all[5], [2, 5]);
        assert_eq!(combinations::<u8>(&[]), vec![Vec::<u8>::new()]);
    }
}
