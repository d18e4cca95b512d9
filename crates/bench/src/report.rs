//! The results: a text table for the terminal, a markdown section for docs/performance.md and
//! an SVG chart of the ratios.

use crate::{load::Measured, procs::ROOT};
use std::{fmt::Write, path::Path, time::Duration};

pub struct Row {
    pub scenario: String,
    pub variant: String,
    pub concurrency: usize,
    pub rps: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub errors: u64,
}

impl Row {
    pub fn new(scenario: &str, variant: &str, concurrency: usize, m: &Measured) -> Self {
        Self {
            scenario: scenario.into(),
            variant: variant.into(),
            concurrency,
            rps: m.per_second(),
            p50_us: m.p50_us(),
            p99_us: m.p99_us(),
            errors: m.errors,
        }
    }
}

pub struct Comparison {
    pub name: String,
    pub ratio: f64,
    pub target: f64,
    /// True: the ratio must be at least the target; false: at most.
    pub higher_is_better: bool,
}

impl Comparison {
    pub fn at_least(name: &str, ours: f64, theirs: f64, target: f64) -> Self {
        Self {
            name: name.into(),
            ratio: ours / theirs.max(f64::MIN_POSITIVE),
            target,
            higher_is_better: true,
        }
    }

    pub fn at_most(name: &str, ours: f64, theirs: f64, target: f64) -> Self {
        Self {
            name: name.into(),
            ratio: ours / theirs.max(f64::MIN_POSITIVE),
            target,
            higher_is_better: false,
        }
    }

    pub fn pass(&self) -> bool {
        if self.higher_is_better {
            self.ratio >= self.target
        } else {
            self.ratio <= self.target
        }
    }

    /// The ratio to two decimals, or three where two would round it onto the target and hide
    /// which side it fell (0.997 against 1.00 would read "1.00 not met").
    fn ratio_text(&self) -> String {
        if format!("{:.2}", self.ratio) == format!("{:.2}", self.target) {
            format!("{:.3}", self.ratio)
        } else {
            format!("{:.2}", self.ratio)
        }
    }

    fn target_text(&self) -> String {
        format!(
            "{} {:.2}",
            if self.higher_is_better { "≥" } else { "≤" },
            self.target
        )
    }
}

pub struct Report {
    pub duration: Duration,
    pub connections: usize,
    pub rounds: usize,
    pub rows: Vec<Row>,
    pub comparisons: Vec<Comparison>,
    pub memory: Option<(usize, u64, u64)>,
    pub small_get: Option<Measured>,
    /// Figures that bound a target without being one, shown under the targets.
    pub notes: Vec<String>,
}

impl Report {
    pub fn new(duration: Duration, connections: usize, rounds: usize) -> Self {
        Self {
            duration,
            connections,
            rounds,
            rows: Vec::new(),
            comparisons: Vec::new(),
            memory: None,
            small_get: None,
            notes: Vec::new(),
        }
    }

    pub fn rps(&self, scenario: &str, variant: &str) -> f64 {
        self.rows
            .iter()
            .find(|r| r.scenario == scenario && r.variant == variant)
            .map_or(0.0, |r| r.rps)
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n{:<44} {:<30} {:>5} {:>10} {:>9} {:>9} {:>6}",
            "measurement", "variant", "conc", "req/s", "p50 us", "p99 us", "errors"
        );
        for r in &self.rows {
            let _ = writeln!(
                out,
                "{:<44} {:<30} {:>5} {:>10.0} {:>9} {:>9} {:>6}",
                r.scenario, r.variant, r.concurrency, r.rps, r.p50_us, r.p99_us, r.errors
            );
        }
        if let Some((n, rss, redis)) = self.memory {
            let _ = writeln!(
                out,
                "\nmemory with {n} sessions of 1 KB: server RSS {} MiB, Redis used_memory {} MiB, payload {} MiB",
                rss >> 20,
                redis >> 20,
                (n * 1024) >> 20
            );
        }
        let _ = writeln!(
            out,
            "\n{:<52} {:>7} {:>8} result",
            "target", "ratio", "needed"
        );
        for c in &self.comparisons {
            let _ = writeln!(
                out,
                "{:<52} {:>7} {:>8} {}",
                c.name,
                c.ratio_text(),
                c.target_text(),
                if c.pass() { "pass" } else { "FAIL" }
            );
        }
        for note in &self.notes {
            let _ = writeln!(out, "{note}");
        }
        out
    }

    fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(
            md,
            "Measured with `cargo run --release -p bench -- --write`: {} s per measurement, {} connections; cart pages and raw operations: the median of {} rounds, in each of which the variants take turns in half-second slices.\n",
            self.duration.as_secs(),
            self.connections,
            self.rounds
        );
        let _ = writeln!(
            md,
            "| target | ratio | needed | result |\n| --- | ---: | ---: | --- |"
        );
        for c in &self.comparisons {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} |",
                c.name,
                c.ratio_text(),
                c.target_text(),
                if c.pass() { "pass" } else { "**not met**" }
            );
        }
        if !self.notes.is_empty() {
            let _ = writeln!(md);
        }
        for note in &self.notes {
            let _ = writeln!(md, "{note}");
        }
        let _ = writeln!(
            md,
            "\n| measurement | variant | concurrency | req/s | p50 µs | p99 µs | errors |\n| --- | --- | ---: | ---: | ---: | ---: | ---: |"
        );
        for r in &self.rows {
            let _ = writeln!(
                md,
                "| {} | {} | {} | {:.0} | {} | {} | {} |",
                r.scenario, r.variant, r.concurrency, r.rps, r.p50_us, r.p99_us, r.errors
            );
        }
        if let Some((n, rss, redis)) = self.memory {
            let _ = writeln!(
                md,
                "\nMemory with {n} sessions of 1 KB: session-server RSS {} MiB, Redis `used_memory` {} MiB, payload {} MiB.",
                rss >> 20,
                redis >> 20,
                (n * 1024) >> 20
            );
        }
        md
    }

    /// Bars of each ratio against its target line.
    fn svg(&self) -> String {
        let (w, row_h, left) = (760.0, 26.0, 380.0);
        let h = 40.0 + row_h * self.comparisons.len() as f64;
        let scale = (w - left - 40.0) / 2.5; // ratios from 0 to 2.5
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"#fff\"/>\n<text x=\"10\" y=\"20\" font-weight=\"bold\">Ratios against their targets (black line); green meets it</text>\n"
        );
        for (i, c) in self.comparisons.iter().enumerate() {
            let y = 34.0 + row_h * i as f64;
            let bar = (c.ratio.min(2.5) * scale).max(1.0);
            let colour = if c.pass() { "#2a9d8f" } else { "#e76f51" };
            let name = c.name.replace('&', "&amp;").replace('<', "&lt;");
            let _ = writeln!(s, "<text x=\"10\" y=\"{}\">{name}</text>", y + 13.0);
            let _ = writeln!(
                s,
                "<rect x=\"{left}\" y=\"{y}\" width=\"{bar:.1}\" height=\"18\" fill=\"{colour}\"/>"
            );
            let _ = writeln!(
                s,
                "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{}\" y2=\"{}\" stroke=\"#000\" stroke-width=\"2\"/>",
                y - 2.0,
                y + 20.0,
                x = left + c.target * scale
            );
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{}\">{}</text>",
                left + bar + 6.0,
                y + 13.0,
                c.ratio_text()
            );
        }
        s.push_str("</svg>\n");
        s
    }

    /// Replaces the generated part of docs/performance.md and the chart.
    pub fn write(&self) -> anyhow::Result<()> {
        const START: &str = "<!-- bench:start -->";
        const END: &str = "<!-- bench:end -->";
        let path = Path::new(ROOT).join("docs/performance.md");
        let doc = std::fs::read_to_string(&path)?;
        let (Some(a), Some(b)) = (doc.find(START), doc.find(END)) else {
            anyhow::bail!("docs/performance.md lacks the {START} ... {END} markers");
        };
        let updated = format!("{}{START}\n{}{}", &doc[..a], self.markdown(), &doc[b..]);
        std::fs::write(&path, updated)?;
        std::fs::write(
            Path::new(ROOT).join("docs/images/performance.svg"),
            self.svg(),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Comparison;

    #[test]
    fn a_ratio_that_rounds_onto_its_target_shows_which_side_it_fell() {
        let just_under = Comparison::at_least("get", 997.0, 1000.0, 1.0);
        assert_eq!(
            (just_under.ratio_text(), just_under.pass()),
            ("0.997".into(), false)
        );
        let just_over = Comparison::at_least("get", 1003.0, 1000.0, 1.0);
        assert_eq!(
            (just_over.ratio_text(), just_over.pass()),
            ("1.003".into(), true)
        );
        assert_eq!(
            Comparison::at_most("p50", 98.0, 100.0, 1.2).ratio_text(),
            "0.98"
        );
        assert_eq!(
            Comparison::at_least("page", 1.5, 1.0, 1.3).ratio_text(),
            "1.50"
        );
    }
}
