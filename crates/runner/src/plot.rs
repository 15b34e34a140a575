//! A small SVG bar chart: one bar per case, a line at the threshold. No plotting
//! dependency: records must render anywhere, and the chart is simple.

/// Horizontal bars of `value` per label, green at or above `threshold`, red below.
pub fn bar_chart(title: &str, bars: &[(String, f64)], threshold: f64) -> String {
    let (label_w, plot_w, row_h, top) = (300.0, 460.0, 22.0, 40.0);
    let max = bars.iter().map(|b| b.1).fold(threshold * 1.2, f64::max).max(1e-9);
    let height = top + row_h * bars.len() as f64 + 30.0;
    let width = label_w + plot_w + 70.0;
    let x = |v: f64| label_w + plot_w * v / max;
    let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"22\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
        esc(title)
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = top + row_h * i as f64;
        let color = if *value >= threshold { "#2e7d32" } else { "#c62828" };
        svg += &format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{}</text>\n\
             <rect x=\"{label_w}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{color}\"/>\n\
             <text x=\"{:.1}\" y=\"{:.1}\">{value:.3}</text>\n",
            label_w - 8.0,
            y + row_h * 0.7,
            esc(label),
            y + 3.0,
            (x(*value) - label_w).max(0.0),
            row_h - 6.0,
            x(*value) + 4.0,
            y + row_h * 0.7
        );
    }
    let tx = x(threshold);
    svg += &format!(
        "<line x1=\"{tx:.1}\" y1=\"{:.1}\" x2=\"{tx:.1}\" y2=\"{:.1}\" stroke=\"black\" stroke-dasharray=\"4,3\"/>\n\
         <text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">threshold {threshold:.2}</text>\n</svg>\n",
        top - 4.0,
        top + row_h * bars.len() as f64,
        top + row_h * bars.len() as f64 + 16.0
    );
    svg
}

#[cfg(test)]
mod tests {
    #[test]
    fn chart_has_one_bar_per_case_and_escapes_labels() {
        let svg = super::bar_chart("t", &[("a<b".into(), 0.5), ("c".into(), 1.0)], 0.8);
        assert_eq!(svg.matches("<rect x=").count(), 2);
        assert!(svg.contains("a&lt;b"));
        assert!(svg.contains("#c62828") && svg.contains("#2e7d32"));
    }
}
