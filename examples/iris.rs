//! The Iris example of the Keras docs ("the fast build"): a softmax layer with an L2 penalty,
//! trained with SGD(0.1) for 500 epochs on 80% of the shuffled data, validated every 20 epochs on
//! the other 20%.
//!
//! ```sh
//! cargo run --release --example iris
//! ```
//!
//! Prints the last value of each history entry, the summary and the training time, and writes
//! the history plot to `iris_history.png` and `iris_history.svg`.

use std::time::{Duration, Instant};

use gradus::datasets::load_iris;
use gradus::layers::{Dense, L2};
use gradus::losses::SparseCategoricalCrossentropy;
use gradus::models::{FitOptions, Model, Sequential};
use gradus::optim::{Optimizer, rules::Sgd};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let iris = load_iris()?;
    // Keras' example shuffles the data once with NumPy: np.random.seed(116);
    // np.random.shuffle(...). The same permutation here puts the same 30 samples in the
    // validation split as in Keras.
    let order = numpy_legacy_permutation(150, 116);
    let (x, y) = (
        iris.features.gather_rows(&order)?,
        iris.labels.gather_rows(&order)?,
    );

    let mut model = Model::with_seed(
        Sequential::new().layer(
            Dense::new(3)
                .activation("softmax")
                .kernel_regularizer(L2::default()),
        ),
        116,
    )?;
    model.compile(
        Optimizer::builder(Sgd::default())
            .learning_rate(0.1)
            .build()?,
        SparseCategoricalCrossentropy::new(),
        ["sparse_categorical_accuracy"],
    )?;

    let (start, cpu_start) = (Instant::now(), thread_cpu_time());
    let history = model.fit(
        &x,
        &y,
        FitOptions {
            batch_size: 32,
            epochs: 500,
            validation_split: 0.2,
            validation_freq: 20.into(),
            verbose: 0,
            ..Default::default()
        },
    )?;
    let elapsed = start.elapsed();
    let cpu = thread_cpu_time()
        .zip(cpu_start)
        .map(|(end, start)| end - start);

    for key in history.keys() {
        println!(
            "{key}: {}",
            history.last(key).expect("every key has a value")
        );
    }
    model.summary();
    print!(
        "training time (fit, 500 epochs): {:.1} ms",
        elapsed.as_secs_f64() * 1e3
    );
    match cpu {
        Some(cpu) => println!(" ({:.1} ms on the CPU)", cpu.as_secs_f64() * 1e3),
        None => println!(),
    }

    history.plot("iris_history.png")?;
    history.plot("iris_history.svg")?;
    println!("history plot written to iris_history.png and iris_history.svg");
    Ok(())
}

/// The CPU time this thread has run (Linux' `/proc/thread-self/schedstat`), which a busy
/// machine does not inflate as it does the wall time; `None` elsewhere.
fn thread_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = stat.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

/// The order in which `np.random.seed(seed); np.random.shuffle(a)` leaves `n` items: NumPy's
/// legacy `RandomState` (MT19937 seeded with `init_genrand`) drawing Fisher-Yates swaps from
/// the last item down, each index by rejection sampling under a bit mask.
fn numpy_legacy_permutation(n: usize, seed: u32) -> Vec<usize> {
    let mut mt = Mt19937::new(seed);
    let mut order: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let max = i as u32;
        let mask = u32::MAX >> max.leading_zeros();
        let j = loop {
            let v = mt.next_u32() & mask;
            if v <= max {
                break v as usize;
            }
        };
        order.swap(i, j);
    }
    order
}

/// The Mersenne Twister MT19937 (Matsumoto and Nishimura, 1998), 32-bit output.
struct Mt19937 {
    state: [u32; 624],
    index: usize,
}

impl Mt19937 {
    fn new(seed: u32) -> Mt19937 {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { state, index: 624 }
    }

    fn next_u32(&mut self) -> u32 {
        if self.index >= 624 {
            for i in 0..624 {
                let y = (self.state[i] & 0x8000_0000) | (self.state[(i + 1) % 624] & 0x7fff_ffff);
                let mut next = self.state[(i + 397) % 624] ^ (y >> 1);
                if y & 1 != 0 {
                    next ^= 0x9908_b0df;
                }
                self.state[i] = next;
            }
            self.index = 0;
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }
}
