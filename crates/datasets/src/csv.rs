//! Loading numeric tables from CSV text.

use std::path::Path;

use gradus_tensor::Tensor;

use crate::error::{DatasetError, Result};

/// How to read a CSV table of numbers.
///
/// ```
/// use gradus_datasets::CsvOptions;
///
/// let opts = CsvOptions::default().delimiter(';').has_header(true);
/// assert_eq!(opts.delimiter, ';');
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CsvOptions {
    /// The field separator (`,` by default).
    pub delimiter: char,
    /// Whether the first non-empty line holds column names (`false` by default).
    pub has_header: bool,
}

impl Default for CsvOptions {
    fn default() -> Self {
        CsvOptions {
            delimiter: ',',
            has_header: false,
        }
    }
}

impl CsvOptions {
    /// Sets the field separator.
    pub fn delimiter(mut self, delimiter: char) -> Self {
        self.delimiter = delimiter;
        self
    }

    /// Sets whether the first line holds column names.
    pub fn has_header(mut self, has_header: bool) -> Self {
        self.has_header = has_header;
        self
    }
}

/// A numeric table read from CSV: `values` has shape `[rows, columns]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Table {
    /// The column names, when the input had a header (else empty).
    pub columns: Vec<String>,
    /// The values, shape `[rows, columns]`.
    pub values: Tensor,
}

impl Table {
    /// Splits off one column as labels: returns `(features [rows, columns - 1], labels [rows])`.
    /// A negative `column` counts from the end (`-1` is the last column).
    ///
    /// # Errors
    /// [`DatasetError::InvalidArgument`] when the column does not exist.
    pub fn split_label(&self, column: isize) -> Result<(Tensor, Tensor)> {
        let cols = self.values.shape()[1] as isize;
        let c = if column < 0 { cols + column } else { column };
        if c < 0 || c >= cols {
            return Err(DatasetError::InvalidArgument {
                op: "split_label",
                message: format!("column {column} does not exist in a table of {cols} columns"),
            });
        }
        let c = c as usize;
        let keep: Vec<usize> = (0..cols as usize).filter(|&j| j != c).collect();
        let features = self.values.select(1, &keep)?;
        let labels = self.values.index_axis(1, c)?.to_contiguous();
        Ok((features, labels))
    }
}

/// Parses CSV `text` of numbers into a [`Table`]. Blank lines are skipped; cells may be surrounded
/// by spaces; every row must have the same number of cells. Cells must be finite numbers: `nan`,
/// `inf` and numbers beyond the `f32` range are refused, so that no non-finite value reaches
/// training unnoticed.
///
/// # Errors
/// [`DatasetError::Parse`] for a cell that is not a finite number, [`DatasetError::Ragged`] for a row of
/// another length, [`DatasetError::Empty`] when there is no data row.
pub fn parse_csv(text: &str, options: &CsvOptions) -> Result<Table> {
    let mut columns = Vec::new();
    let mut values = Vec::new();
    let mut width: Option<usize> = None;
    let mut header_pending = options.has_header;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let cells = line.split(options.delimiter).map(str::trim);
        if header_pending {
            columns = cells.map(|c| c.trim_matches('"').to_string()).collect();
            header_pending = false;
            continue;
        }
        let mut n = 0;
        for (j, cell) in cells.enumerate() {
            let v = cell
                .parse::<f32>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| DatasetError::Parse {
                    line: line_no,
                    column: j + 1,
                    text: cell.to_string(),
                })?;
            values.push(v);
            n += 1;
        }
        match width {
            None => width = Some(n),
            Some(w) if w != n => {
                return Err(DatasetError::Ragged {
                    line: line_no,
                    expected: w,
                    got: n,
                });
            }
            Some(_) => {}
        }
    }
    let width = width.ok_or_else(|| DatasetError::Empty {
        what: "parse_csv".into(),
    })?;
    if !columns.is_empty() && columns.len() != width {
        return Err(DatasetError::Ragged {
            line: 1,
            expected: width,
            got: columns.len(),
        });
    }
    let rows = values.len() / width;
    Ok(Table {
        columns,
        values: Tensor::from_vec(values, &[rows, width])?,
    })
}

/// Reads and parses a CSV file of numbers (see [`parse_csv`]).
///
/// # Errors
/// [`DatasetError::Io`] when the file cannot be read, else as [`parse_csv`].
pub fn read_csv(path: impl AsRef<Path>, options: &CsvOptions) -> Result<Table> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse_csv(&text, options)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_finite_cells() {
        for (cell, col) in [("nan", 2), ("NaN", 2), ("inf", 2), ("-inf", 2), ("1e39", 2)] {
            let text = format!("1,2\n3,{cell}\n");
            match parse_csv(&text, &CsvOptions::default()) {
                Err(DatasetError::Parse { line, column, text }) => {
                    assert_eq!((line, column, text.as_str()), (2, col, cell));
                }
                other => panic!("{cell}: expected a parse error, got {other:?}"),
            }
        }
    }

    #[test]
    fn parses_with_header_blank_lines_and_spaces() {
        let t = parse_csv(
            "a, b\n1, 2\n\n3.5,-4e1\r\n",
            &CsvOptions::default().has_header(true),
        )
        .unwrap();
        assert_eq!(t.columns, vec!["a", "b"]);
        assert_eq!(t.values.shape(), &[2, 2]);
        assert_eq!(t.values.to_vec(), vec![1.0, 2.0, 3.5, -40.0]);
    }

    #[test]
    fn reports_the_bad_cell() {
        let e = parse_csv("1,2\n3,x\n", &CsvOptions::default()).unwrap_err();
        assert!(matches!(e, DatasetError::Parse { line: 2, column: 2, ref text } if text == "x"));
        assert!(e.to_string().contains("line 2, column 2"));
    }

    #[test]
    fn reports_ragged_rows_and_empty_input() {
        let e = parse_csv("1,2\n3\n", &CsvOptions::default()).unwrap_err();
        assert!(matches!(
            e,
            DatasetError::Ragged {
                line: 2,
                expected: 2,
                got: 1
            }
        ));
        let e = parse_csv("\n\n", &CsvOptions::default()).unwrap_err();
        assert!(matches!(e, DatasetError::Empty { .. }));
    }

    #[test]
    fn missing_file_is_an_io_error_naming_the_path() {
        let e = read_csv("/nonexistent/x.csv", &CsvOptions::default()).unwrap_err();
        assert!(matches!(e, DatasetError::Io { .. }));
        assert!(e.to_string().contains("/nonexistent/x.csv"));
    }

    #[test]
    fn split_label_takes_a_column_out() {
        let t = parse_csv("1,2,3\n4,5,6\n", &CsvOptions::default()).unwrap();
        let (x, y) = t.split_label(-1).unwrap();
        assert_eq!(x.shape(), &[2, 2]);
        assert_eq!(x.to_vec(), vec![1.0, 2.0, 4.0, 5.0]);
        assert_eq!(y.to_vec(), vec![3.0, 6.0]);
        let (x, y) = t.split_label(0).unwrap();
        assert_eq!(x.to_vec(), vec![2.0, 3.0, 5.0, 6.0]);
        assert_eq!(y.to_vec(), vec![1.0, 4.0]);
        assert!(t.split_label(3).is_err());
        assert!(t.split_label(-4).is_err());
    }
}
