//! Where a report's rows go, one at a time: a JSON document whose `items`
//! array is written as rows arrive, or CSV records (RFC 4180, by the `csv`
//! crate). Both take the same serde rows; text a provider sent goes in a
//! [`Text`], which CSV neutralises and JSON keeps as it is.

use std::io::Write;

use chrono::{DateTime, SecondsFormat};
use serde::{Serialize, Serializer};
use serde_json::{Map, Value};

use super::{Format, ReportError};
use crate::money::Total;

pub(super) fn rfc3339(secs: i64) -> String {
    DateTime::from_timestamp(secs, 0)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true))
        .unwrap_or_else(|| secs.to_string())
}

pub(super) fn rfc3339_micros(micros: i64) -> String {
    DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
        .unwrap_or_else(|| micros.to_string())
}

pub(super) fn money(minor: i128) -> String {
    Total::from_minor(minor).to_string()
}

/// A cell a spreadsheet would execute (`=`, `+`, `-`, `@`, tab, CR first)
/// prefixed with `'`, as OWASP advises against CSV injection.
pub fn neutralise(text: &str) -> String {
    if executable(text) {
        format!("'{text}")
    } else {
        text.to_string()
    }
}

fn executable(text: &str) -> bool {
    matches!(
        text.as_bytes().first(),
        Some(b'=' | b'+' | b'-' | b'@' | b'\t' | b'\r')
    )
}

/// Text from a provider in a row: as it is in JSON, neutralised in CSV.
pub(super) struct Text<'a> {
    value: Option<&'a str>,
    csv: bool,
}

impl Serialize for Text<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.value {
            None => s.serialize_none(),
            Some(v) if self.csv && executable(v) => s.serialize_str(&neutralise(v)),
            Some(v) => s.serialize_str(v),
        }
    }
}

enum Out<'w> {
    Json(&'w mut (dyn Write + Send)),
    // Boxed: one per report, and the writer is large beside a reference.
    Csv(Box<csv::Writer<&'w mut (dyn Write + Send)>>),
}

/// A report's answer being written.
pub(super) struct Sink<'w> {
    out: Out<'w>,
    /// The JSON fields before the items: the report, its times, its seq.
    head: Map<String, Value>,
    items: u64,
}

impl<'w> Sink<'w> {
    pub fn new(
        format: Format,
        out: &'w mut (dyn Write + Send),
        head: Map<String, Value>,
    ) -> Sink<'w> {
        let out = match format {
            Format::Json => Out::Json(out),
            Format::Csv => Out::Csv(Box::new(
                csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(out),
            )),
        };
        Sink {
            out,
            head,
            items: 0,
        }
    }

    /// Adds a field written before the items (JSON only).
    pub fn head(&mut self, name: &str, value: Value) {
        self.head.insert(name.into(), value);
    }

    pub fn is_csv(&self) -> bool {
        matches!(self.out, Out::Csv(_))
    }

    /// Provider text for a row of this sink.
    pub fn text<'a>(&self, value: &'a str) -> Text<'a> {
        self.opt(Some(value))
    }

    pub fn opt<'a>(&self, value: Option<&'a str>) -> Text<'a> {
        Text {
            value,
            csv: self.is_csv(),
        }
    }

    /// Writes the head: the JSON fields and the opening of the array named
    /// `items`, or the CSV header row.
    pub fn begin(&mut self, items: &str, header: &[&str]) -> Result<(), ReportError> {
        match &mut self.out {
            Out::Json(w) => {
                w.write_all(b"{")?;
                for (name, value) in &self.head {
                    serde_json::to_writer(&mut **w, name)?;
                    w.write_all(b":")?;
                    serde_json::to_writer(&mut **w, value)?;
                    w.write_all(b",")?;
                }
                serde_json::to_writer(&mut **w, items)?;
                w.write_all(b":[")?;
            }
            Out::Csv(w) => w.write_record(header)?,
        }
        Ok(())
    }

    /// One item: an element of the JSON array, a CSV record.
    pub fn item<T: Serialize>(&mut self, row: &T) -> Result<(), ReportError> {
        match &mut self.out {
            Out::Json(w) => {
                if self.items > 0 {
                    w.write_all(b",")?;
                }
                serde_json::to_writer(&mut **w, row)?;
            }
            Out::Csv(w) => w.serialize(row)?,
        }
        self.items += 1;
        Ok(())
    }

    /// A CSV record for a report whose CSV rows are not its JSON items.
    pub fn record<I, T>(&mut self, cells: I) -> Result<(), ReportError>
    where
        I: IntoIterator<Item = T>,
        T: AsRef<[u8]>,
    {
        if let Out::Csv(w) = &mut self.out {
            w.write_record(cells)?;
        }
        Ok(())
    }

    /// A JSON item for such a report.
    pub fn json_item<T: Serialize>(&mut self, row: &T) -> Result<(), ReportError> {
        if let Out::Json(_) = self.out {
            self.item(row)?;
        }
        Ok(())
    }

    /// Closes the items and writes the fields that follow them (JSON), or
    /// flushes the records (CSV).
    pub fn end(self, tail: Map<String, Value>) -> Result<(), ReportError> {
        match self.out {
            Out::Json(w) => {
                w.write_all(b"]")?;
                for (name, value) in &tail {
                    w.write_all(b",")?;
                    serde_json::to_writer(&mut *w, name)?;
                    w.write_all(b":")?;
                    serde_json::to_writer(&mut *w, value)?;
                }
                w.write_all(b"}\n")?;
                w.flush()?;
            }
            Out::Csv(mut w) => w.flush()?,
        }
        Ok(())
    }
}
