//! A run's rows, as people read them: a Markdown table (or CSV) on stdout, JSON beside.

use anyhow::Result;

use crate::cli::OutputArgs;
use crate::record::{cases_table, CaseResult};

/// The rows as CSV, one header line and a line per case.
pub fn csv(cases: &[CaseResult]) -> String {
    let opt = |v: Option<f64>| v.map(|x| format!("{x}")).unwrap_or_default();
    let quote =
        |s: &str| if s.contains([',', '"']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() };
    let mut out = String::from("case,variant,ours_us,baseline_us,ratio,tflops,gbs,fraction_of_copy,correct,rel_err\n");
    for c in cases {
        out += &format!(
            "{},{},{},{},{},{},{},{},{},{}\n",
            quote(&c.name),
            quote(&c.variant),
            c.ours_us,
            opt(c.baseline_us),
            c.ratio,
            opt(c.tflops),
            opt(c.gbs),
            opt(c.fraction_of_copy),
            c.correct,
            c.rel_err
        );
    }
    out
}

/// Prints `cases` under `title` as the output switches say, and writes the JSON if asked.
pub fn emit(title: &str, cases: &[CaseResult], extra: serde_json::Value, output: &OutputArgs) -> Result<()> {
    if output.csv {
        print!("{}", csv(cases));
    } else {
        println!("{title}\n\n{}", cases_table(cases));
        let wrong = cases.iter().filter(|c| !c.correct).count();
        if wrong > 0 {
            println!("{wrong} of {} cases are WRONG", cases.len());
        }
    }
    if let Some(path) = &output.json {
        let doc = serde_json::json!({ "title": title, "run": extra, "cases": cases });
        std::fs::write(path, serde_json::to_string_pretty(&doc)? + "\n")?;
        eprintln!("JSON: {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_commas() {
        let c = CaseResult { name: "a,b".into(), variant: "v".into(), ratio: 1.5, correct: true, ..Default::default() };
        let text = csv(&[c]);
        assert!(text.lines().nth(1).unwrap().starts_with("\"a,b\",v,"));
        assert_eq!(text.lines().count(), 2);
    }
}
