//! The datasets bundled with gradus: no download, no file to find.

use gradus_tensor::Tensor;

use crate::csv::{CsvOptions, parse_csv};
use crate::error::{DatasetError, Result};

const IRIS_CSV: &str = include_str!("../data/iris.csv");
const DIGITS_CSV: &str = include_str!("../data/digits.csv");

/// A labelled classification dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    /// The inputs, shape `[samples, features...]`.
    pub features: Tensor,
    /// The class ids `0..classes` as `f32`, shape `[samples]`.
    pub labels: Tensor,
    /// The name of each class, indexed by class id.
    pub class_names: Vec<String>,
}

impl Dataset {
    /// The number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there is no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }
}

/// Fisher's Iris data (UCI; R. A. Fisher, 1936), in the order scikit-learn's `load_iris()` gives:
/// 150 samples of 4 features (sepal length, sepal width, petal length, petal width, in cm) and the
/// species `0: setosa, 1: versicolor, 2: virginica`.
///
/// ```
/// let iris = gradus_datasets::load_iris()?;
/// assert_eq!(iris.features.shape(), &[150, 4]);
/// assert_eq!(iris.labels.shape(), &[150]);
/// assert_eq!(iris.class_names, ["setosa", "versicolor", "virginica"]);
/// # Ok::<(), gradus_datasets::DatasetError>(())
/// ```
///
/// # Errors
/// Only if the bundled file were damaged ([`DatasetError::Parse`]).
pub fn load_iris() -> Result<Dataset> {
    let (first, rest) = IRIS_CSV
        .split_once('\n')
        .ok_or_else(|| DatasetError::Empty {
            what: "iris.csv".into(),
        })?;
    // The first line is `rows,features,class names...`.
    let header: Vec<&str> = first.trim().split(',').collect();
    let class_names = header.iter().skip(2).map(|s| s.to_string()).collect();
    let table = parse_csv(rest, &CsvOptions::default())?;
    let (features, labels) = table.split_label(-1)?;
    Ok(Dataset {
        features,
        labels,
        class_names,
    })
}

/// The "Optical Recognition of Handwritten Digits" data (UCI; E. Alpaydin and C. Kaynak, 1998) as
/// scikit-learn's `load_digits()` ships it: 1797 images of 8x8 pixels with values 0..=16, and the
/// digit `0..=9`.
///
/// `features` has shape `[1797, 64]` (each image row by row); use
/// `features.reshape(&[1797, 8, 8, 1])` for a convolutional network (NHWC).
///
/// ```
/// let digits = gradus_datasets::load_digits()?;
/// assert_eq!(digits.features.shape(), &[1797, 64]);
/// assert_eq!(digits.num_classes(), 10);
/// # Ok::<(), gradus_datasets::DatasetError>(())
/// ```
///
/// # Errors
/// Only if the bundled file were damaged ([`DatasetError::Parse`]).
pub fn load_digits() -> Result<Dataset> {
    let table = parse_csv(DIGITS_CSV, &CsvOptions::default())?;
    let (features, labels) = table.split_label(-1)?;
    Ok(Dataset {
        features,
        labels,
        class_names: (0..10).map(|d| d.to_string()).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(labels: &Tensor, classes: usize) -> Vec<usize> {
        let mut c = vec![0; classes];
        for v in labels.to_vec() {
            c[v as usize] += 1;
        }
        c
    }

    #[test]
    fn iris_is_complete_and_ordered_as_scikit_learn() {
        let d = load_iris().unwrap();
        assert_eq!(d.len(), 150);
        assert_eq!(counts(&d.labels, 3), vec![50, 50, 50]);
        // The first sample of scikit-learn's load_iris().
        assert_eq!(
            d.features.slice_axis(0, 0, 1).unwrap().to_vec(),
            vec![5.1, 3.5, 1.4, 0.2]
        );
        assert_eq!(d.labels.get(&[0]).unwrap(), 0.0);
        assert_eq!(d.labels.get(&[149]).unwrap(), 2.0);
    }

    #[test]
    fn digits_are_complete_and_in_range() {
        let d = load_digits().unwrap();
        assert_eq!(d.len(), 1797);
        let c = counts(&d.labels, 10);
        assert!(c.iter().all(|&n| (170..=190).contains(&n)), "{c:?}");
        let v = d.features.to_vec();
        assert!(
            v.iter()
                .all(|&p| (0.0..=16.0).contains(&p) && p.fract() == 0.0)
        );
        assert_eq!(d.labels.get(&[0]).unwrap(), 0.0);
    }
}
