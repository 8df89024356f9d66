//! The number of threads the kernels of gradus use, and the helpers that split work over them.
//!
//! Matrix products (split over output rows or columns, or over whole blocks of the inner index
//! for a small output: see [`Tensor::matmul`](crate::Tensor::matmul)), convolution windows,
//! pooling and the large elementwise passes of the layers run on a pool of worker threads when
//! [`num_threads`] is above one. The count comes from, in order: the last [`set_num_threads`]
//! call, the `GRADUS_NUM_THREADS` environment variable (read once, at the first kernel that asks),
//! and the number of CPUs the process may use ([`std::thread::available_parallelism`]).
//!
//! **Results do not depend on the thread count**: work is split only where every output element
//! is computed by the same sequence of operations whichever thread computes it (matrix rows or
//! columns, images of a batch, disjoint windows, a product's blocks of the inner index added in
//! the kernel's order), and reductions split into chunks whose bounds do
//! not depend on the thread count and are added in a fixed order. One thread and sixteen give
//! bit-identical values.
//!
//! **The pool**: `n - 1` worker threads, started at the first parallel region; the thread that
//! opens a region works on it too, and each piece goes to whichever thread is free. An idle
//! worker spins for a couple of milliseconds watching for the next region before it sleeps, so
//! that the back-to-back regions of a training step are handed over in about a microsecond
//! instead of a wake-up through the operating system (hundreds of microseconds on a virtual
//! machine). A region opened while another thread's region holds the pool runs on the calling
//! thread. A region opened from inside a piece of another one (a kernel inside one shard of a
//! batch) is *nested*: its opener works on it, and so do the threads of the pool that are idle
//! meanwhile (the thread that opened the outer region, while it waits for the other pieces; a
//! worker that has waited for less than its spin time, not one asleep), say the one whose shard
//! finished first, so that two shards of unequal speed finish closer together. One nested
//! region is open for help at a time; another one opened meanwhile runs on its thread. Which
//! thread runs a piece never changes a result.
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

use std::any::Any;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// The thread count; 0 until it is first resolved.
static THREADS: AtomicUsize = AtomicUsize::new(0);
/// The worker pool for the current count above one (rebuilt when the count changes).
static POOL: Mutex<Option<Arc<Pool>>> = Mutex::new(None);

/// The environment variable that sets the default thread count.
pub const ENV_VAR: &str = "GRADUS_NUM_THREADS";

/// How long an idle worker keeps watching for the next parallel region before it sleeps.
///
/// A training step runs its parallel regions a few tens of microseconds apart; a worker that
/// slept between them would be woken through the kernel at every region (a few hundred
/// microseconds on a virtual machine), which costs more than the small regions save. Spinning
/// only while regions keep coming, and sleeping after this long without one, keeps idle
/// programs off the CPU.
const SPIN: Duration = Duration::from_millis(2);

/// A spinning thread yields its core once every this many looks at what it waits for, so that
/// spinning never starves the threads doing the work when the cores are oversubscribed.
const YIELD_EVERY: u32 = 16;

thread_local! {
    /// Whether this thread is running a piece of a parallel region (or is a worker): a parallel
    /// call made from there is a nested region (see the module docs), not one of the pool's.
    static IN_REGION: Cell<bool> = const { Cell::new(false) };
}

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

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The body of a region, its lifetime erased (see [`Job::body`]).
type Body = dyn Fn(usize) + Sync + 'static;

/// One parallel region: `n` pieces, claimed one at a time by whichever thread is free.
struct Job {
    /// The region's closure. It lives on the submitting thread's stack, which outlives every
    /// call: a piece is called only after being claimed with an index below `n`, and the
    /// submitter returns only once `left` is zero, that is once every claimed piece has
    /// finished. A late worker that still holds the job claims an index `>= n` and never calls
    /// it.
    body: *const Body,
    n: usize,
    /// The next unclaimed piece.
    next: AtomicUsize,
    /// The pieces not yet finished.
    left: AtomicUsize,
    /// The first panic of a piece, re-raised on the submitting thread.
    panic: Mutex<Option<Box<dyn Any + Send>>>,
}

// SAFETY: `body` points to a `Sync` closure that outlives every use (see `Job::body`); the other
// fields are atomics and a mutex.
unsafe impl Send for Job {}
// SAFETY: as for `Send`: shared access only calls the `Sync` closure.
unsafe impl Sync for Job {}

impl Job {
    /// A region of `n` pieces calling `body`, whose lifetime is erased.
    ///
    /// # Safety
    /// The caller must not return (and so drop `body`) before every piece has finished, that
    /// is before `left` is zero (see [`Job::body`]).
    unsafe fn new(n: usize, body: &(dyn Fn(usize) + Sync)) -> Arc<Job> {
        // SAFETY: only the lifetime is erased; the caller keeps `body` alive while it is used.
        let body: &'static Body = unsafe { std::mem::transmute(body) };
        Arc::new(Job {
            body,
            n,
            next: AtomicUsize::new(0),
            left: AtomicUsize::new(n),
            panic: Mutex::new(None),
        })
    }

    /// Re-raises, on the thread that opened the region, the first panic of its pieces.
    fn rethrow(&self) {
        if let Some(payload) = lock(&self.panic).take() {
            panic::resume_unwind(payload);
        }
    }

    /// [`Job::work`] on a thread that is otherwise outside any region: as a piece, a region
    /// opened by `body` is nested.
    fn work_in_region(&self) {
        let was = IN_REGION.with(|r| r.replace(true));
        self.work();
        IN_REGION.with(|r| r.set(was));
    }

    /// Claims and runs pieces until none is left unclaimed.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.n {
                return;
            }
            // SAFETY: `i < n` was claimed by this thread only, so the submitter is still waiting
            // for this piece and the closure is alive (see `Job::body`).
            let body = unsafe { &*self.body };
            if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| body(i))) {
                lock(&self.panic).get_or_insert(payload);
            }
            // Release: the piece's writes are visible to the submitter once it sees the count.
            self.left.fetch_sub(1, Ordering::Release);
        }
    }
}

/// What the submitting thread and the workers share.
struct Shared {
    /// Bumped once per region (and at shutdown): a worker that sees it change looks for work.
    epoch: AtomicU64,
    /// The current region, if any.
    job: Mutex<Option<Arc<Job>>>,
    /// Workers asleep on `wake`, so that a submitter knows whether to wake them.
    sleepers: AtomicUsize,
    sleep: Mutex<()>,
    wake: Condvar,
    stop: AtomicBool,
    /// A region opened inside a piece of another one (see [`run`]), which idle threads help
    /// with: one at a time; a nested region opened while this one is taken runs serially.
    nested: Mutex<Option<Arc<Job>>>,
    /// Bumped whenever a nested region is published, so that idle threads look at `nested`
    /// only when it has changed.
    nested_epoch: AtomicU64,
}

impl Shared {
    /// Works on the published nested region, if it is new since `seen` (which is updated):
    /// what an idle thread does while it waits, so that the thread that opened the nested
    /// region (say, in the slower of two shards of a batch) does not run all of it alone.
    /// Returns whether there was one.
    fn help_nested(&self, seen: &mut u64) -> bool {
        let epoch = self.nested_epoch.load(Ordering::Acquire);
        if epoch == *seen {
            return false;
        }
        *seen = epoch;
        let Some(job) = lock(&self.nested).clone() else {
            return false;
        };
        job.work_in_region();
        true
    }
}

/// `threads - 1` workers; the thread that submits a region works on it too.
struct Pool {
    threads: usize,
    shared: Arc<Shared>,
    /// Set while a region runs: another thread that wants the pool meanwhile runs serially.
    busy: AtomicBool,
}

impl Pool {
    /// `None` when a worker thread cannot be started.
    fn new(threads: usize) -> Option<Pool> {
        let shared = Arc::new(Shared {
            epoch: AtomicU64::new(0),
            job: Mutex::new(None),
            sleepers: AtomicUsize::new(0),
            sleep: Mutex::new(()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
            nested: Mutex::new(None),
            nested_epoch: AtomicU64::new(0),
        });
        let pool = Pool {
            threads,
            shared,
            busy: AtomicBool::new(false),
        };
        for i in 1..threads {
            let shared = Arc::clone(&pool.shared);
            std::thread::Builder::new()
                .name(format!("gradus-worker-{i}"))
                .spawn(move || worker(&shared))
                .ok()?; // dropping `pool` stops the workers already started
        }
        Some(pool)
    }

    /// Runs `body(i)` for `i in 0..n` on the workers and this thread; `false` (nothing run) when
    /// the pool is busy with another thread's region. While this thread waits for the pieces
    /// that others run, it helps with the nested regions they open.
    fn try_run(&self, n: usize, body: &(dyn Fn(usize) + Sync)) -> bool {
        if self
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            return false;
        }
        // SAFETY: this function returns only after `wait_for_pieces`, once every piece is done.
        let job = unsafe { Job::new(n, body) };
        let shared = &*self.shared;
        *lock(&shared.job) = Some(Arc::clone(&job));
        shared.epoch.fetch_add(1, Ordering::SeqCst);
        if shared.sleepers.load(Ordering::SeqCst) > 0 {
            let _guard = lock(&shared.sleep);
            shared.wake.notify_all();
        }
        // Read before working: a nested region opened meanwhile by another piece of this
        // region (the slower shard, while this thread runs the faster one) counts as new.
        let mut nested_seen = shared.nested_epoch.load(Ordering::Relaxed);
        job.work_in_region();
        wait_for_pieces(&job, || {
            shared.help_nested(&mut nested_seen);
        });
        *lock(&shared.job) = None;
        self.busy.store(false, Ordering::Release);
        job.rethrow();
        true
    }

    /// Runs `body(i)` for `i in 0..n` from inside a piece of a region: published for the
    /// threads that are idle meanwhile (see [`Shared::help_nested`]), worked on by this thread
    /// too; `false` (nothing run) when another nested region is published.
    fn try_nested(&self, n: usize, body: &(dyn Fn(usize) + Sync)) -> bool {
        let shared = &*self.shared;
        let job = {
            let mut slot = lock(&shared.nested);
            if slot.is_some() {
                return false;
            }
            // SAFETY: this function returns only after `wait_for_pieces`, once every piece is
            // done.
            let job = unsafe { Job::new(n, body) };
            *slot = Some(Arc::clone(&job));
            job
        };
        shared.nested_epoch.fetch_add(1, Ordering::Release);
        job.work();
        wait_for_pieces(&job, || {});
        *lock(&shared.nested) = None;
        job.rethrow();
        true
    }
}

/// Waits until every piece of `job` has finished, calling `idle` between looks and yielding
/// the core now and then.
fn wait_for_pieces(job: &Job, mut idle: impl FnMut()) {
    let mut spins = 0u32;
    while job.left.load(Ordering::Acquire) != 0 {
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(YIELD_EVERY) {
            std::thread::yield_now();
        } else {
            idle();
            std::hint::spin_loop();
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let shared = &*self.shared;
        shared.stop.store(true, Ordering::SeqCst);
        shared.epoch.fetch_add(1, Ordering::SeqCst);
        let _guard = lock(&shared.sleep);
        shared.wake.notify_all();
    }
}

/// A worker: waits for a region, works on it, and again, until the pool is dropped.
fn worker(shared: &Shared) {
    IN_REGION.with(|r| r.set(true));
    let (mut seen, mut nested_seen) = (0, 0);
    loop {
        seen = wait_for_region(shared, seen, &mut nested_seen);
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let job = lock(&shared.job).clone();
        if let Some(job) = job {
            job.work();
        }
    }
}

/// Waits until the epoch differs from `seen` and returns it: spinning for [`SPIN`], helping
/// with the nested regions published meanwhile (`nested_seen`, see [`Shared::help_nested`]),
/// then asleep.
fn wait_for_region(shared: &Shared, seen: u64, nested_seen: &mut u64) -> u64 {
    let mut start = Instant::now();
    let mut spins = 0u32;
    loop {
        let epoch = shared.epoch.load(Ordering::Acquire);
        if epoch != seen {
            return epoch;
        }
        if shared.help_nested(nested_seen) {
            // The program is busy: the next region is likely near.
            start = Instant::now();
        }
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(YIELD_EVERY) {
            if start.elapsed() > SPIN {
                break;
            }
            // Give the core to whoever else wants it (with more threads than free cores, that is
            // often the thread doing the region's work).
            std::thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }
    let mut guard = lock(&shared.sleep);
    shared.sleepers.fetch_add(1, Ordering::SeqCst);
    loop {
        // SeqCst with the submitter's bump-then-check: either this load sees the new epoch or
        // the submitter sees this sleeper and notifies under the lock.
        let epoch = shared.epoch.load(Ordering::SeqCst);
        if epoch != seen {
            shared.sleepers.fetch_sub(1, Ordering::SeqCst);
            return epoch;
        }
        guard = shared
            .wake
            .wait(guard)
            .unwrap_or_else(PoisonError::into_inner);
    }
}

/// The pool for `n > 1` threads, built on first use and rebuilt when `n` changes (the old
/// workers stop once no region uses them). `None` when a pool cannot be built (the caller then
/// runs everything on its own thread).
fn pool(n: usize) -> Option<Arc<Pool>> {
    let mut slot = lock(&POOL);
    if let Some(pool) = slot.as_ref()
        && pool.threads == n
    {
        return Some(Arc::clone(pool));
    }
    let pool = Arc::new(Pool::new(n)?);
    *slot = Some(Arc::clone(&pool));
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

/// Runs `f(i)` for `i in 0..n`, spread over the calling thread and the workers (each piece is
/// claimed by whichever thread is free, so a region never waits for a worker to wake up; the
/// calling thread usually takes piece 0). Each call must be independent of the others (the
/// order is unspecified). Called from inside a piece of another region, the pieces go to the
/// calling thread and to the threads of the pool that are idle meanwhile (a nested region, see
/// the [module docs](self)). Runs everything on the calling thread, in order, with one thread,
/// while another thread's region holds the pool, or while another nested region is open. A
/// panic in a piece is re-raised here once every piece has finished.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use gradus_tensor::parallel::run;
///
/// let sum = AtomicUsize::new(0);
/// run(4, |i| {
///     sum.fetch_add(i, Ordering::Relaxed);
/// });
/// assert_eq!(sum.into_inner(), 6);
/// ```
pub fn run(n: usize, f: impl Fn(usize) + Sync + Send) {
    let threads = num_threads();
    if n > 1
        && threads > 1
        && let Some(pool) = pool(threads)
    {
        let done = if IN_REGION.with(Cell::get) {
            pool.try_nested(n, &f)
        } else {
            pool.try_run(n, &f)
        };
        if done {
            return;
        }
    }
    (0..n).for_each(f);
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
    let blocks: Vec<Mutex<&mut [T]>> = out.chunks_mut(per * row_len).map(Mutex::new).collect();
    run(blocks.len(), |i| f(i * per, &mut lock(&blocks[i])));
}

/// `[f(0), f(1), ..., f(n - 1)]`, the calls spread over the [threads](num_threads) (the calling
/// thread takes part): for coarse, independent pieces of work such as the shards of a
/// batch. With one thread every call runs on the calling thread, in order; called from inside
/// another parallel piece, the calls are a nested region (see [`run`]). The results come back
/// in index order whichever thread computed them.
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
pub(crate) mod tests {
    use super::*;

    /// The tests that change the process-wide thread count run one at a time (those of other
    /// modules of this crate too).
    pub(crate) static COUNT: Mutex<()> = Mutex::new(());

    #[test]
    fn pieces_run_once_each_across_threads_and_nested_regions_too() {
        let _count = lock(&COUNT);
        set_num_threads(3);
        for n in [0, 1, 2, 3, 7, 64] {
            let calls = AtomicUsize::new(0);
            let got = map(n, |i| {
                // A region inside a piece: each piece once, results in order, on whichever
                // thread (an idle one may help), and a third level runs too.
                let inner = map(3, |j| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    map(2, |k| 10 * j + k)
                });
                assert_eq!(inner, [[0, 1], [10, 11], [20, 21]]);
                i * 10
            });
            assert_eq!(got, (0..n).map(|i| i * 10).collect::<Vec<_>>());
            assert_eq!(calls.into_inner(), 3 * n);
        }
        set_num_threads(0);
    }

    #[test]
    fn an_idle_thread_helps_with_a_region_opened_inside_a_piece() {
        let _count = lock(&COUNT);
        set_num_threads(2);
        // Piece 0 ends at once; piece 1 opens a region (cut in two pieces of 16 slow calls, one
        // per thread), which the other thread, now idle, takes part in. Retried, since a busy
        // machine may keep that thread off the CPU for a whole region.
        let helped = (0..20).any(|_| {
            let ids = map(2, |i| {
                if i == 0 {
                    return Vec::new();
                }
                map(32, |_| {
                    std::thread::sleep(Duration::from_micros(300));
                    std::thread::current().id()
                })
            });
            let opener = &ids[1];
            opener.iter().any(|&id| id != opener[0])
        });
        assert!(helped, "no idle thread ever took a nested piece");
        set_num_threads(0);
    }

    #[test]
    fn a_panic_in_a_nested_piece_reaches_the_caller() {
        let _count = lock(&COUNT);
        set_num_threads(2);
        let caught = std::panic::catch_unwind(|| {
            map(2, |i| map(4, |j| assert!(i + j != 4, "nested piece fails")))
        });
        let message = caught.expect_err("the panic of the nested piece reaches the caller");
        assert_eq!(message.downcast_ref::<&str>(), Some(&"nested piece fails"));
        assert_eq!(map(2, |i| map(2, |j| i + j)), [[0, 1], [1, 2]]);
        set_num_threads(0);
    }

    #[test]
    fn a_panicking_piece_panics_the_caller_and_the_pool_still_works() {
        let _count = lock(&COUNT);
        set_num_threads(2);
        let caught = std::panic::catch_unwind(|| {
            map(8, |i| {
                assert!(i != 5, "piece 5 fails");
                i
            })
        });
        let message = caught.expect_err("the panic of piece 5 reaches the caller");
        assert_eq!(message.downcast_ref::<&str>(), Some(&"piece 5 fails"));
        assert_eq!(map(4, |i| i + 1), [1, 2, 3, 4]);
        set_num_threads(0);
    }

    #[test]
    fn several_threads_may_submit_at_once_and_counts_may_change() {
        let _count = lock(&COUNT);
        for threads in [2, 4, 2] {
            set_num_threads(threads);
            std::thread::scope(|scope| {
                let callers: Vec<_> = (0..4)
                    .map(|c| scope.spawn(move || (0..50).map(|r| map(5, |i| c + r + i)).collect()))
                    .collect();
                for (c, caller) in callers.into_iter().enumerate() {
                    let results: Vec<Vec<usize>> = caller.join().expect("no panic");
                    for (r, got) in results.iter().enumerate() {
                        assert_eq!(*got, (0..5).map(|i| c + r + i).collect::<Vec<_>>());
                    }
                }
            });
        }
        set_num_threads(0);
    }

    #[test]
    fn sleeping_workers_are_woken() {
        let _count = lock(&COUNT);
        set_num_threads(2);
        assert_eq!(map(2, |i| i), [0, 1]);
        // Longer than the spin: the worker is asleep when the next region comes.
        std::thread::sleep(SPIN * 3);
        let ids = map(64, |_| {
            std::thread::sleep(Duration::from_micros(200));
            std::thread::current().id()
        });
        let here = std::thread::current().id();
        assert!(ids.iter().any(|&id| id != here), "the worker took no piece");
        set_num_threads(0);
    }

    #[test]
    fn row_blocks_cover_every_row_once() {
        let _count = lock(&COUNT);
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
