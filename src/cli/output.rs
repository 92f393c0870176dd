//! How the client commands print: aligned columns for people, JSON for scripts.

use clap::ValueEnum;
use serde_json::Value;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum)]
pub enum Output {
    #[default]
    Table,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct OutputArg {
    /// `table` for people, `json` for scripts (the API's objects as they are).
    #[arg(long = "output", short = 'o', value_enum, default_value = "table")]
    pub output: Output,
}

/// Prints `value` as JSON, or `rows` under `header` as a table.
pub fn print(output: Output, value: &Value, header: &[&str], rows: Vec<Vec<String>>) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_default()
        ),
        Output::Table => {
            let mut table = comfy_table::Table::new();
            table
                .load_preset(comfy_table::presets::NOTHING)
                .set_header(header.to_vec())
                .add_rows(rows);
            // The preset pads each column with a space on both sides; lines start flush.
            for line in table.lines() {
                println!("{}", line.strip_prefix(' ').unwrap_or(&line).trim_end());
            }
        }
    }
}

/// A JSON field as a table cell: text as is, null as `-`, anything else as JSON.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().map(cell).collect::<Vec<_>>().join(","),
        other => other.to_string(),
    }
}
