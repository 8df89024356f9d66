//! Fuzzes the CSV loader: any text, any delimiter, with or without a header, must parse into a
//! table or give an error, never panic; what parses must split and one-hot encode cleanly.
#![no_main]

use gradus_datasets::{CsvOptions, one_hot, parse_csv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let delimiter = [',', ';', '\t', ' ', '|', 'é', '"', '1'][usize::from(flags & 7)];
    let options = CsvOptions::default()
        .delimiter(delimiter)
        .has_header(flags & 8 != 0);
    let Ok(table) = parse_csv(text, &options) else {
        return;
    };
    let shape = table.values.shape();
    assert_eq!(shape.len(), 2);
    assert_eq!(table.values.len(), shape[0] * shape[1]);
    for column in [-1, 0, 1, isize::MAX, isize::MIN] {
        if let Ok((x, y)) = table.split_label(column) {
            assert_eq!(x.shape()[0], y.shape()[0]);
            let _ = one_hot(&y, 1 + usize::from(flags >> 4));
        }
    }
});
