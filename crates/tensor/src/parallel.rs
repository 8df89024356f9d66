//! The number of threads the kernels of gradus use, and the helpers that split work over them.
//!
//! Matrix products (split over output rows or columns), convolution windows, pooling and the
//! large elementwise passes of the layers run on a pool of worker threads when
//! [`num_threads`] is above one. The count comes from, in order: the last [`set_num_threads`]
//! call, the `GRADUS_NUM_THREADS` environment variable (read once, at the first kernel that asks),
//! and the number of CPUs the process may use ([`std::thread::available_parallelism`]).
//!
//! **Results do not depend on the thread count**: work is split only where every output element
//! is computed by the same sequence of operations whichever thread computes it (matrix rows or
//! columns, images of a batch, disjoint windows), and reductions split into chunks whose bounds do
//! not depend on the thread count and are added in a fixed order. One thread and sixteen give
//! bit-identical values.
//!
//! ```
//! use gradus_tensor::{Tensor, parallel};
//!
//! let a = Tensor::full(&[300, 200], 0.5);
//! parallel::set_num_threads(1);
//! let one = a.matmul(&a.transpose()?)?;
//! parallel::set_num_threads(2);
//! let two = a.matmul(&a.transpose()?)?;
//! assert_eq!(one, two);
//! # Ok::<(), gradus_tensor::TensorError>(())
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// The thread count; 0 until it is first resolved.
static THREADS: AtomicUsize = AtomicUsize::new(0);
/// The worker pool for the current count above one (rebuilt when the count changes).
static POOL: Mutex<Option<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

/// The environment variable that sets the default thread count.
pub const ENV_VAR: &str = "GRADUS_NUM_THREADS";

/// The number of threads the kernels use (at least 1).
pub fn num_threads() -> usize {
    match THREADS.load(Ordering::Relaxed) {
        0 => {
            let n = default_threads();
            // Another thread may have resolved or set it meanwhile: keep the first value stored.
            match THREADS.compare_exchange(0, n, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => n,
                Err(current) => current,
            }
        }
        n => n,
    }
}

/// Sets the number of threads the kernels use from now on, in every thread of the process;
/// `0` restores the default (`GRADUS_NUM_THREADS`, else the available CPUs).
pub fn set_num_threads(n: usize) {
    let n = if n == 0 { default_threads() } else { n };
    THREADS.store(n, Ordering::Relaxed);
}

fn default_threads() -> usize {
    std::env::var(ENV_VAR)
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The pool of `n - 1` workers for `n > 1` threads (the calling thread is the n-th), built on
/// first use and rebuilt when `n` changes. `None` when a pool cannot be built (the caller then
/// runs everything on its own thread).
fn pool(n: usize) -> Option<Arc<rayon::ThreadPool>> {
    let mut slot = POOL.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((count, pool)) = slot.as_ref()
        && *count == n
    {
        return Some(Arc::clone(pool));
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n - 1)
        .thread_name(|i| format!("gradus-worker-{i}"))
        .build()
        .ok()
        .map(Arc::new)?;
    *slot = Some((n, Arc::clone(&pool)));
    Some(pool)
}

/// The number of rows of `row_len` values that make a piece of work worth a thread, for pieces
/// of about `values` values (at least one row).
pub fn grain(values: usize, row_len: usize) -> usize {
    values / row_len.max(1) + 1
}

/// How many pieces to cut `len` units of work into for the current thread count, given the
/// smallest piece worth a thread (`grain` units): 1 when one thread or little work.
pub(crate) fn pieces(len: usize, grain: usize) -> usize {
    let threads = num_threads();
    if threads <= 1 || len < 2 * grain.max(1) {
        1
    } else {
        (len / grain.max(1)).clamp(1, threads)
    }
}

/// Runs `f(i)` for `i in 0..n`: `f(0)` on the calling thread, the others on the worker pool
/// (so that one piece of work never waits for a worker to wake up). Each call must be
/// independent of the others (the order is unspecified).
pub(crate) fn run(n: usize, f: impl Fn(usize) + Sync + Send) {
    let pieces: Vec<usize> = (0..n).collect();
    run_each(pieces, f);
}

/// Runs `f` on every item, the first on the calling thread and the others on the worker pool.
fn run_each<I: Send>(items: Vec<I>, f: impl Fn(I) + Sync + Send) {
    let mut items = items.into_iter();
    let Some(first) = items.next() else { return };
    if items.len() == 0 {
        f(first);
        return;
    }
    match pool(num_threads()) {
        Some(pool) => pool.in_place_scope(|scope| {
            let f = &f;
            for item in items {
                scope.spawn(move |_| f(item));
            }
            f(first);
        }),
        None => {
            f(first);
            items.for_each(f);
        }
    }
}

/// Calls `f(first_row, block)` on consecutive blocks of whole rows of `out` (rows of `row_len`
/// values; `first_row` is the index of the block's first row), splitting the rows over the
/// [threads](num_threads) when there are at least `2 * grain_rows` of them, and running `f` once
/// on all of `out` otherwise. The blocks are disjoint and cover `out`; `f` must compute each row
/// the same way whichever block it falls in, so that the result does not depend on the thread
/// count.
///
/// ```
/// use gradus_tensor::parallel::for_row_blocks;
///
/// let mut out = vec![0.0f32; 4 * 3];
/// for_row_blocks(&mut out, 3, 1, |first, block| {
///     for (r, row) in block.chunks_exact_mut(3).enumerate() {
///         row.fill((first + r) as f32);
///     }
/// });
/// assert_eq!(out, [0., 0., 0., 1., 1., 1., 2., 2., 2., 3., 3., 3.]);
/// ```
pub fn for_row_blocks<T: Send>(
    out: &mut [T],
    row_len: usize,
    grain_rows: usize,
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) {
    let rows = out.len().checked_div(row_len).unwrap_or(0);
    let n = pieces(rows, grain_rows);
    if n <= 1 {
        f(0, out);
        return;
    }
    let per = rows.div_ceil(n);
    let blocks: Vec<(usize, &mut [T])> = out
        .chunks_mut(per * row_len)
        .enumerate()
        .map(|(i, block)| (i * per, block))
        .collect();
    run_each(blocks, |(first, block)| f(first, block));
}

/// `[f(0), f(1), ..., f(n - 1)]`, the calls spread over the [threads](num_threads) (the calling
/// thread computes `f(0)`): for coarse, independent pieces of work such as the shards of a
/// batch. With one thread, or when called from inside another parallel piece, every call runs
/// on the calling thread, in order. The results come back in index order whichever thread
/// computed them.
///
/// ```
/// use gradus_tensor::parallel::map;
///
/// let squares = map(5, |i| i * i);
/// assert_eq!(squares, [0, 1, 4, 9, 16]);
/// ```
pub fn map<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync + Send) -> Vec<T> {
    let mut slots: Vec<Option<T>> = (0..n).map(|_| None).collect();
    for_row_blocks(&mut slots, 1, 1, |first, block| {
        for (j, slot) in block.iter_mut().enumerate() {
            *slot = Some(f(first + j));
        }
    });
    slots
        .into_iter()
        .map(|slot| slot.expect("every index is computed once"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_blocks_cover_every_row_once() {
        set_num_threads(2);
        let mut out = vec![0usize; 7 * 3];
        for_row_blocks(&mut out, 3, 1, |first, block| {
            for (r, row) in block.chunks_exact_mut(3).enumerate() {
                row.fill(first + r + 1);
            }
        });
        let want: Vec<usize> = (0..7).flat_map(|r| [r + 1; 3]).collect();
        assert_eq!(out, want);
        assert_eq!(pieces(10, 100), 1);
        assert_eq!(pieces(1000, 10), 2);
        set_num_threads(0);
        assert!(num_threads() >= 1);
    }
}
