//! Shuffling, splitting, one-hot encoding and batching.

use gradus_tensor::{Rng, Tensor};

use crate::error::{DatasetError, Result};

fn check_same_rows(op: &'static str, x: &Tensor, y: &Tensor) -> Result<usize> {
    let (nx, ny) = (
        x.shape().first().copied().unwrap_or(0),
        y.shape().first().copied().unwrap_or(0),
    );
    if x.ndim() == 0 || y.ndim() == 0 || nx != ny {
        return Err(DatasetError::InvalidArgument {
            op,
            message: format!(
                "x and y must have the same number of samples along axis 0, got shapes {:?} and {:?}",
                x.shape(),
                y.shape()
            ),
        });
    }
    Ok(nx)
}

/// Shuffles the samples (axis 0) of `x` and `y` with the same seeded permutation.
///
/// # Errors
/// [`DatasetError::InvalidArgument`] when `x` and `y` hold different numbers of samples.
pub fn shuffle(x: &Tensor, y: &Tensor, rng: &mut Rng) -> Result<(Tensor, Tensor)> {
    let n = check_same_rows("shuffle", x, y)?;
    let p = rng.permutation(n);
    Ok((x.gather_rows(&p)?, y.gather_rows(&p)?))
}

/// The four parts of a train/test split.
#[derive(Debug, Clone, PartialEq)]
pub struct Split {
    /// Training inputs.
    pub x_train: Tensor,
    /// Training targets.
    pub y_train: Tensor,
    /// Test inputs.
    pub x_test: Tensor,
    /// Test targets.
    pub y_test: Tensor,
}

/// Splits samples into a training and a test part, as scikit-learn's `train_test_split`: the test
/// part holds `ceil(test_fraction * n)` samples. With `rng` the samples are shuffled first;
/// without, the test part is the last samples.
///
/// ```
/// use gradus_datasets::{load_iris, train_test_split};
/// use gradus_tensor::Rng;
///
/// let iris = load_iris()?;
/// let s = train_test_split(&iris.features, &iris.labels, 0.2, Some(&mut Rng::seed_from_u64(0)))?;
/// assert_eq!(s.x_train.shape(), &[120, 4]);
/// assert_eq!(s.y_test.shape(), &[30]);
/// # Ok::<(), gradus_datasets::DatasetError>(())
/// ```
///
/// # Errors
/// [`DatasetError::InvalidArgument`] when `test_fraction` is not in `(0, 1)`, when either part
/// would be empty, or when `x` and `y` hold different numbers of samples.
pub fn train_test_split(
    x: &Tensor,
    y: &Tensor,
    test_fraction: f64,
    rng: Option<&mut Rng>,
) -> Result<Split> {
    let n = check_same_rows("train_test_split", x, y)?;
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(DatasetError::InvalidArgument {
            op: "train_test_split",
            message: format!("test_fraction must be in (0, 1), got {test_fraction}"),
        });
    }
    let n_test = (test_fraction * n as f64).ceil() as usize;
    if n_test == 0 || n_test >= n {
        return Err(DatasetError::InvalidArgument {
            op: "train_test_split",
            message: format!(
                "a test fraction of {test_fraction} of {n} samples leaves an empty part ({n_test} test samples)"
            ),
        });
    }
    let order: Vec<usize> = match rng {
        Some(rng) => rng.permutation(n),
        None => (0..n).collect(),
    };
    let (train, test) = order.split_at(n - n_test);
    Ok(Split {
        x_train: x.gather_rows(train)?,
        y_train: y.gather_rows(train)?,
        x_test: x.gather_rows(test)?,
        y_test: y.gather_rows(test)?,
    })
}

/// One-hot encodes class ids: `labels` of shape `[n]` holding whole numbers in `0..depth` give
/// `[n, depth]` (a thin wrapper of [`Tensor::one_hot_tensor`]).
///
/// # Errors
/// [`DatasetError::Tensor`] for a label that is not a whole number in `0..depth`.
pub fn one_hot(labels: &Tensor, depth: usize) -> Result<Tensor> {
    Ok(Tensor::one_hot_tensor(labels, depth)?)
}

/// The sample indices of each batch of an epoch: `ceil(n / batch_size)` batches, the last one
/// possibly smaller; shuffled when `rng` is given.
///
/// # Errors
/// [`DatasetError::InvalidArgument`] when `batch_size` is 0.
pub fn batch_indices(
    n: usize,
    batch_size: usize,
    rng: Option<&mut Rng>,
) -> Result<Vec<Vec<usize>>> {
    if batch_size == 0 {
        return Err(DatasetError::InvalidArgument {
            op: "batch_indices",
            message: "batch_size must be at least 1, got 0".into(),
        });
    }
    let order: Vec<usize> = match rng {
        Some(rng) => rng.permutation(n),
        None => (0..n).collect(),
    };
    Ok(order.chunks(batch_size).map(<[usize]>::to_vec).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xy(n: usize) -> (Tensor, Tensor) {
        let x = Tensor::from_vec((0..2 * n).map(|v| v as f32).collect(), &[n, 2]).unwrap();
        let y = Tensor::from_vec((0..n).map(|v| v as f32).collect(), &[n]).unwrap();
        (x, y)
    }

    #[test]
    fn shuffle_keeps_pairs_together() {
        let (x, y) = xy(20);
        let (xs, ys) = shuffle(&x, &y, &mut Rng::seed_from_u64(1)).unwrap();
        assert_ne!(ys, y);
        for i in 0..20 {
            let label = ys.get(&[i]).unwrap();
            assert_eq!(xs.get(&[i, 0]).unwrap(), 2.0 * label);
        }
        assert!(
            shuffle(
                &x,
                &y.slice_axis(0, 0, 5).unwrap(),
                &mut Rng::seed_from_u64(1)
            )
            .is_err()
        );
    }

    #[test]
    fn split_sizes_and_order() {
        let (x, y) = xy(10);
        let s = train_test_split(&x, &y, 0.25, None).unwrap();
        assert_eq!(s.y_train.to_vec(), vec![0., 1., 2., 3., 4., 5., 6.]);
        assert_eq!(s.y_test.to_vec(), vec![7., 8., 9.]);
        assert_eq!(s.x_test.shape(), &[3, 2]);
        let s = train_test_split(&x, &y, 0.25, Some(&mut Rng::seed_from_u64(2))).unwrap();
        let mut all = [s.y_train.to_vec(), s.y_test.to_vec()].concat();
        all.sort_by(f32::total_cmp);
        assert_eq!(all, y.to_vec());
        for bad in [0.0, 1.0, -0.5, f64::NAN] {
            assert!(train_test_split(&x, &y, bad, None).is_err());
        }
    }

    #[test]
    fn one_hot_and_bad_labels() {
        let y = Tensor::from_vec(vec![2.0, 0.0, 1.0], &[3]).unwrap();
        assert_eq!(
            one_hot(&y, 3).unwrap().to_vec(),
            vec![0., 0., 1., 1., 0., 0., 0., 1., 0.]
        );
        let e = one_hot(&y, 2).unwrap_err();
        assert!(e.to_string().contains("got 2"), "{e}");
        let frac = Tensor::from_vec(vec![0.5], &[1]).unwrap();
        assert!(one_hot(&frac, 2).is_err());
    }

    #[test]
    fn batches_cover_every_sample_once() {
        let b = batch_indices(10, 4, None).unwrap();
        assert_eq!(b, vec![vec![0, 1, 2, 3], vec![4, 5, 6, 7], vec![8, 9]]);
        let b = batch_indices(10, 4, Some(&mut Rng::seed_from_u64(3))).unwrap();
        let mut all: Vec<usize> = b.concat();
        all.sort_unstable();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert!(batch_indices(10, 0, None).is_err());
    }
}
