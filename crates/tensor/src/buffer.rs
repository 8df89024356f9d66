//! A per-thread pool of large `f32` buffers, so that training steps reuse the memory of the
//! previous step instead of asking the system for fresh pages every time.
//!
//! A training step allocates the same set of large buffers at every batch (activations, their
//! gradients, unfolded convolution windows) and frees them all at the end of the step. Given back
//! to the C allocator, buffers of several megabytes are returned to the kernel (`munmap`, heap
//! trimming) and the next step pays a page fault and a page clear for every 4 KiB it touches
//! again: on a small CNN that was half of the CPU time. Instead, when the last [`Tensor`] holding a
//! buffer of at least [`MIN_POOLED_LEN`] values is dropped, the buffer goes to a pool owned by the
//! dropping thread, and the kernels of this crate (and the fused kernels of the layers, through
//! [`take`] and [`take_zeroed`]) draw their outputs from it.
//!
//! The pool holds at most [`pool_limit`] bytes per thread (64 MiB unless changed with
//! [`set_pool_limit`]); the least recently pooled buffers go back to the allocator first.
//! [`clear`] empties the calling thread's pool. Pooling never changes a result: a buffer from
//! [`take`] has unspecified contents and every kernel overwrites all of it.
//!
//! [`Tensor`]: crate::Tensor
//!
//! ```
//! use gradus_tensor::{Tensor, buffer};
//!
//! buffer::clear();
//! let big = Tensor::zeros(&[512, 512]); // 1 MiB
//! drop(big); // its buffer is pooled...
//! assert_eq!(buffer::pooled_bytes(), 512 * 512 * 4);
//! let again = buffer::take(512 * 512); // ...and handed out again
//! assert_eq!(again.len(), 512 * 512);
//! assert_eq!(buffer::pooled_bytes(), 0);
//! ```

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The smallest buffer (in `f32` values, 128 KiB) worth pooling; smaller ones go back to the
/// allocator, whose free lists serve them well.
pub const MIN_POOLED_LEN: usize = 1 << 15;

static LIMIT_BYTES: AtomicUsize = AtomicUsize::new(64 << 20);

thread_local! {
    static POOL: RefCell<VecDeque<Vec<f32>>> = const { RefCell::new(VecDeque::new()) };
}

/// The most bytes one thread's pool keeps.
pub fn pool_limit() -> usize {
    LIMIT_BYTES.load(Ordering::Relaxed)
}

/// Sets the most bytes each thread's pool keeps (0 turns pooling off). Pools over the new limit
/// shrink the next time a buffer is given back to them; call [`clear`] to release the calling
/// thread's at once.
pub fn set_pool_limit(bytes: usize) {
    LIMIT_BYTES.store(bytes, Ordering::Relaxed);
}

/// Bytes held by the calling thread's pool.
pub fn pooled_bytes() -> usize {
    POOL.try_with(|p| p.borrow().iter().map(bytes).sum())
        .unwrap_or(0)
}

/// Releases every buffer of the calling thread's pool to the allocator.
pub fn clear() {
    let _ = POOL.try_with(|p| p.borrow_mut().clear());
}

fn bytes(v: &Vec<f32>) -> usize {
    v.capacity() * size_of::<f32>()
}

/// A vector of `len` values with **unspecified contents** (stale values of an earlier tensor,
/// possibly NaN), for outputs that the caller overwrites entirely. Reuses a pooled buffer of the
/// calling thread when one fits; allocates otherwise.
pub fn take(len: usize) -> Vec<f32> {
    if len >= MIN_POOLED_LEN
        && let Some(mut v) = POOL
            .try_with(|p| best_fit(&mut p.borrow_mut(), len))
            .ok()
            .flatten()
    {
        v.truncate(len);
        return v;
    }
    vec![0.0; len]
}

/// A vector of `len` zeros, reusing a pooled buffer when one fits. The zeros are written here,
/// so kernels that accumulate into the result (read before they write) use this rather than
/// `vec![0.0; len]`: fresh pages from `calloc` are first mapped to the shared zero page, and the
/// later write then takes a second page fault that flushes the TLB of every core running the
/// process (4% of the CPU time of a two-thread CNN epoch before the convolution switched).
pub fn take_zeroed(len: usize) -> Vec<f32> {
    let mut v = take(len);
    v.fill(0.0);
    v
}

/// Removes and returns the pooled buffer that serves a request of `len` values best: the one with
/// the smallest capacity among those holding at least `len` initialized values, unless that wastes
/// more than half of it.
fn best_fit(pool: &mut VecDeque<Vec<f32>>, len: usize) -> Option<Vec<f32>> {
    let (at, _) = pool
        .iter()
        .enumerate()
        .filter(|(_, v)| v.len() >= len && v.capacity() / 2 <= len)
        .min_by_key(|(_, v)| v.capacity())?;
    pool.remove(at)
}

/// Gives a buffer back to the calling thread's pool (kept only if large enough and within the
/// limit, evicting the oldest buffers first).
pub(crate) fn give(v: Vec<f32>) {
    if v.len() < MIN_POOLED_LEN {
        return;
    }
    let limit = pool_limit();
    if bytes(&v) > limit {
        return;
    }
    let _ = POOL.try_with(|p| {
        let mut pool = p.borrow_mut();
        let mut held: usize = pool.iter().map(bytes).sum::<usize>() + bytes(&v);
        while held > limit {
            let Some(old) = pool.pop_front() else { break };
            held -= bytes(&old);
        }
        pool.push_back(v);
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tensor;

    #[test]
    fn reuses_dropped_buffers_and_respects_the_limit() {
        clear();
        let n = MIN_POOLED_LEN * 2;
        let t = Tensor::full(&[n], 3.0);
        let ptr = t.as_slice().unwrap().as_ptr();
        drop(t);
        assert_eq!(pooled_bytes(), n * 4);
        // A smaller request (not under half) reuses the same memory, truncated.
        let v = take(n - 5);
        assert_eq!((v.as_ptr(), v.len()), (ptr, n - 5));
        assert_eq!(pooled_bytes(), 0);
        // A much smaller request does not take a big buffer.
        give(vec![1.0; 4 * MIN_POOLED_LEN]);
        assert_eq!(take(MIN_POOLED_LEN).capacity(), MIN_POOLED_LEN);
        assert_eq!(
            take_zeroed(4 * MIN_POOLED_LEN),
            vec![0.0; 4 * MIN_POOLED_LEN]
        );
        // Small buffers are not pooled.
        give(vec![1.0; 10]);
        assert_eq!(pooled_bytes(), 0);
        // Over the limit the oldest go first.
        let old = pool_limit();
        set_pool_limit(3 * MIN_POOLED_LEN * 4);
        for _ in 0..5 {
            give(vec![0.0; MIN_POOLED_LEN]);
        }
        assert_eq!(pooled_bytes(), 3 * MIN_POOLED_LEN * 4);
        set_pool_limit(old);
        clear();
        assert_eq!(pooled_bytes(), 0);
    }

    #[test]
    fn shared_buffers_are_pooled_only_when_the_last_holder_drops() {
        clear();
        let t = Tensor::ones(&[2, MIN_POOLED_LEN / 2]);
        let view = t.transpose().unwrap();
        drop(t);
        assert_eq!(pooled_bytes(), 0);
        drop(view);
        assert_eq!(pooled_bytes(), MIN_POOLED_LEN * 4);
        clear();
    }
}
