//! The result table: printed, and written as JSON.

use serde_json::{json, Value};

/// One figure of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub figure: String,
    /// The measured value, as printed.
    pub value: String,
    /// The measured value as a number (in `unit`), when it is one.
    pub number: Option<f64>,
    pub unit: &'static str,
    /// The floor it is compared with (same unit), when there is one.
    pub floor: Option<f64>,
    pub ratio: Option<f64>,
    pub target: String,
    /// None: informational, no target.
    pub pass: Option<bool>,
    /// A correctness check (a failure fails the process), not a performance
    /// target.
    pub correctness: bool,
}

#[derive(Debug, Default)]
pub struct Report {
    pub rows: Vec<Row>,
    /// Per phase: name, seconds, cores other processes used meanwhile.
    pub background: Vec<(String, f64, f64)>,
}

/// `1234567.8` as `1,234,568`.
pub fn thousands(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let n = x.round() as i128;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        format!("-{out}")
    } else {
        out
    }
}

impl Report {
    /// An events/s (or req/s) figure.
    pub fn rate(&mut self, figure: &str, value: f64, unit: &'static str) -> &mut Row {
        self.push(Row {
            figure: figure.into(),
            value: format!("{} {unit}", thousands(value)),
            number: Some(value),
            unit,
            floor: None,
            ratio: None,
            target: String::new(),
            pass: None,
            correctness: false,
        })
    }

    /// A latency, in milliseconds.
    pub fn ms(&mut self, figure: &str, value: f64) -> &mut Row {
        self.push(Row {
            figure: figure.into(),
            value: format!("{value:.2} ms"),
            number: Some(value),
            unit: "ms",
            floor: None,
            ratio: None,
            target: String::new(),
            pass: None,
            correctness: false,
        })
    }

    /// Any other figure, as text.
    pub fn text(&mut self, figure: &str, value: String) -> &mut Row {
        self.push(Row {
            figure: figure.into(),
            value,
            number: None,
            unit: "",
            floor: None,
            ratio: None,
            target: String::new(),
            pass: None,
            correctness: false,
        })
    }

    /// A correctness check.
    pub fn check(&mut self, figure: &str, ok: bool, detail: String) -> &mut Row {
        let row = self.text(figure, detail);
        row.pass = Some(ok);
        row.correctness = true;
        row.target = "must hold".into();
        row
    }

    fn push(&mut self, row: Row) -> &mut Row {
        self.rows.push(row);
        self.rows.last_mut().expect("just pushed")
    }

    pub fn correctness_failed(&self) -> bool {
        self.rows
            .iter()
            .any(|r| r.correctness && r.pass == Some(false))
    }

    pub fn print(&self) {
        let floor = |r: &Row| match (r.floor, r.unit) {
            (None, _) => String::new(),
            (Some(f), "ms") => format!("{f:.2} ms"),
            (Some(f), u) => format!("{} {u}", thousands(f)),
        };
        let ratio = |r: &Row| r.ratio.map(|x| format!("{x:.2}x")).unwrap_or_default();
        let verdict = |r: &Row| match r.pass {
            None => "",
            Some(true) => "pass",
            Some(false) => "FAIL",
        };
        let headers = ["figure", "value", "floor", "ratio", "target", "pass/fail"];
        let cells: Vec<[String; 6]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.figure.clone(),
                    r.value.clone(),
                    floor(r),
                    ratio(r),
                    r.target.clone(),
                    verdict(r).to_string(),
                ]
            })
            .collect();
        let mut width = headers.map(|h| h.chars().count());
        for row in &cells {
            for (w, c) in width.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cols: [&str; 6]| {
            let mut s = String::new();
            for (i, (c, w)) in cols.iter().zip(width).enumerate() {
                let pad = w - c.chars().count();
                // Numbers right-aligned, words left-aligned.
                if (1..=3).contains(&i) {
                    s.push_str(&" ".repeat(pad));
                    s.push_str(c);
                } else {
                    s.push_str(c);
                    s.push_str(&" ".repeat(pad));
                }
                s.push_str("  ");
            }
            println!("{}", s.trim_end());
        };
        line(headers);
        let rule: Vec<String> = width.iter().map(|w| "-".repeat(*w)).collect();
        line(std::array::from_fn(|i| rule[i].as_str()));
        for row in &cells {
            line(std::array::from_fn(|i| row[i].as_str()));
        }
    }

    /// Cores other processes used, averaged over every phase, and the worst.
    pub fn background_summary(&self) -> Option<(f64, f64, &str)> {
        let seconds: f64 = self.background.iter().map(|b| b.1).sum();
        if seconds <= 0.0 {
            return None;
        }
        let mean = self.background.iter().map(|b| b.1 * b.2).sum::<f64>() / seconds;
        let worst = self.background.iter().max_by(|a, b| a.2.total_cmp(&b.2))?;
        Some((mean, worst.2, worst.0.as_str()))
    }

    pub fn background_json(&self) -> Value {
        Value::Array(
            self.background
                .iter()
                .map(|(name, seconds, cores)| {
                    json!({"phase": name, "seconds": seconds, "other_cores": cores})
                })
                .collect(),
        )
    }

    pub fn json(&self) -> Value {
        Value::Array(
            self.rows
                .iter()
                .map(|r| {
                    json!({
                        "figure": r.figure,
                        "value": r.number,
                        "display": r.value,
                        "unit": r.unit,
                        "floor": r.floor,
                        "ratio": r.ratio,
                        "target": r.target,
                        "pass": r.pass,
                        "correctness": r.correctness,
                    })
                })
                .collect(),
        )
    }
}
