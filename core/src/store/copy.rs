//! Rows in Postgres's binary `COPY` format, the cheapest way to hand Postgres many rows
//! at once: no SQL to parse or plan, no text to convert. The format is Postgres's own
//! (<https://www.postgresql.org/docs/current/sql-copy.html>, "Binary Format"); the
//! few column types strata copies are written here rather than through a driver that
//! sea-orm does not use.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// The signature, flags (none) and header extension length (none) every copy starts with.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";
/// Microseconds from the Unix epoch to Postgres's (2000-01-01 00:00 UTC).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Rows for `COPY … FROM STDIN WITH (FORMAT binary)`: each row starts with
/// [`BinaryRows::row`] and then gives its columns in the statement's order, each with
/// the method of the column's type.
pub struct BinaryRows {
    data: Vec<u8>,
}

impl BinaryRows {
    pub fn with_capacity(bytes: usize) -> Self {
        let mut data = Vec::with_capacity(HEADER.len() + bytes + 2);
        data.extend_from_slice(HEADER);
        Self { data }
    }

    /// Starts a row of `columns` columns.
    pub fn row(&mut self, columns: i16) {
        self.data.extend_from_slice(&columns.to_be_bytes());
    }

    fn field(&mut self, value: &[u8]) {
        // A value is at most a column's few hundred bytes: the length always fits.
        let length = i32::try_from(value.len()).unwrap_or(i32::MAX);
        self.data.extend_from_slice(&length.to_be_bytes());
        self.data.extend_from_slice(value);
    }

    /// A `text` or `varchar` column.
    pub fn text(&mut self, value: &str) {
        self.field(value.as_bytes());
    }

    pub fn uuid(&mut self, value: Uuid) {
        self.field(value.as_bytes());
    }

    pub fn bool(&mut self, value: bool) {
        self.field(&[u8::from(value)]);
    }

    pub fn timestamptz(&mut self, value: DateTime<Utc>) {
        let micros = value.timestamp_micros() - POSTGRES_EPOCH_MICROS;
        self.field(&micros.to_be_bytes());
    }

    pub fn null(&mut self) {
        self.data.extend_from_slice(&(-1i32).to_be_bytes());
    }

    pub fn text_or_null(&mut self, value: Option<&str>) {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    pub fn timestamptz_or_null(&mut self, value: Option<DateTime<Utc>>) {
        match value {
            Some(value) => self.timestamptz(value),
            None => self.null(),
        }
    }

    /// The copy's bytes, trailer included.
    pub fn finish(mut self) -> Vec<u8> {
        self.data.extend_from_slice(&(-1i16).to_be_bytes());
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_written_in_postgres_binary_copy_format() {
        let mut rows = BinaryRows::with_capacity(64);
        rows.row(4);
        rows.text("ab");
        rows.bool(true);
        rows.null();
        rows.timestamptz(DateTime::from_timestamp(946_684_801, 0).unwrap());
        let data = rows.finish();
        let mut expected = b"PGCOPY\n\xff\r\n\0".to_vec();
        expected.extend([0, 0, 0, 0, 0, 0, 0, 0]); // flags, header extension
        expected.extend([0, 4]); // columns
        expected.extend([0, 0, 0, 2, b'a', b'b']);
        expected.extend([0, 0, 0, 1, 1]);
        expected.extend([0xff, 0xff, 0xff, 0xff]);
        expected.extend([0, 0, 0, 8, 0, 0, 0, 0, 0, 0x0f, 0x42, 0x40]); // 1 s after 2000
        expected.extend([0xff, 0xff]); // trailer
        assert_eq!(data, expected);
    }
}
