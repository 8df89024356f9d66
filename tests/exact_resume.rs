//! Exact resume: training N epochs in one go, and training k epochs, saving, loading in a NEW
//! PROCESS and training the N - k others, give bit-identical weights, optimizer variables and
//! history — shuffling (the model's RNG), dropout masks (the layer's RNG), batch-normalization
//! statistics and the epoch counter included.
//!
//! The second process is this test binary run again with `GRADUS_RESUME_CHILD` set to the
//! working directory: [`child_resumes_training`] then loads, trains and saves; it is a no-op
//! otherwise.

use std::path::Path;
use std::process::Command;

use gradus::layers::{BatchNormalization, Dense, Dropout, L2};
use gradus::models::{FitOptions, History, Model, Sequential};
use gradus::optim::Optimizer;
use gradus::optim::rules::Adam;
use gradus::tensor::{Rng, Tensor};

const CHILD_ENV: &str = "GRADUS_RESUME_CHILD";
/// Epochs in all, and before the interruption.
const N: usize = 6;
const K: usize = 2;

fn data() -> (Tensor, Tensor) {
    let n = 64;
    let mut rng = Rng::seed_from_u64(5);
    let mut xs = Vec::with_capacity(4 * n);
    let mut ys = Vec::with_capacity(n);
    for i in 0..n {
        for j in 0..4 {
            xs.push(if j == i % 3 { 1.5 } else { 0.0 } + rng.normal_f32());
        }
        ys.push((i % 3) as f32);
    }
    (
        Tensor::from_vec(xs, &[n, 4]).unwrap(),
        Tensor::from_vec(ys, &[n]).unwrap(),
    )
}

fn model() -> Model<Sequential> {
    let net = Sequential::new()
        .input_shape(&[4])
        .layer(Dense::new(16).activation("relu"))
        .layer(BatchNormalization::new())
        .layer(Dropout::new(0.3)) // its mask stream is forked from the model's RNG at build
        .layer(
            Dense::new(3)
                .activation("softmax")
                .kernel_regularizer(L2::new(0.001)),
        );
    let mut m = Model::with_seed(net, 42).unwrap();
    let adam = Optimizer::builder(Adam::default())
        .learning_rate(0.01)
        .build()
        .unwrap();
    m.compile(adam, "sparse_categorical_crossentropy", ["accuracy"])
        .unwrap();
    m
}

fn fit_options(initial_epoch: usize, epochs: usize) -> FitOptions<'static> {
    FitOptions {
        batch_size: 10,
        epochs,
        initial_epoch,
        validation_split: 0.25,
        verbose: 0,
        ..Default::default()
    }
}

/// A history as plain data, every value as its bits: `(key, epochs, values)`.
type Rows = Vec<(String, Vec<usize>, Vec<u32>)>;

fn rows(h: &History) -> Rows {
    h.keys()
        .map(|k| {
            (
                k.to_string(),
                h.epochs_of(k),
                h[k].iter().map(|v| v.to_bits()).collect(),
            )
        })
        .collect()
}

/// Weights, optimizer variables (name, bits) and iterations, bit for bit.
type State = (Vec<Vec<u32>>, Vec<(String, Vec<u32>)>, u64);

fn state(m: &Model<Sequential>) -> State {
    let weights = m
        .get_weights()
        .iter()
        .map(|t| t.to_vec().iter().map(|v| v.to_bits()).collect())
        .collect();
    let opt = m.optimizer().unwrap();
    let vars = opt
        .variables()
        .into_iter()
        .map(|v| (v.name, v.values.iter().map(|x| x.to_bits()).collect()))
        .collect();
    (weights, vars, opt.iterations())
}

#[test]
fn child_resumes_training() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let dir = Path::new(&dir);
    let (x, y) = data();
    let mut m = Model::<Sequential>::load(dir.join("epoch-k.gradus")).unwrap();
    assert_eq!(m.epoch(), K, "the checkpoint carries the epoch counter");
    let h = m.fit(&x, &y, fit_options(m.epoch(), N)).unwrap();
    assert_eq!(m.epoch(), N);
    m.save(dir.join("epoch-n.gradus")).unwrap();
    std::fs::write(
        dir.join("history.json"),
        serde_json::to_string(&rows(&h)).unwrap(),
    )
    .unwrap();
}

#[test]
fn k_epochs_save_load_in_a_new_process_and_the_rest_equal_one_run() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("gradus-resume-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (x, y) = data();

    // One uninterrupted run of N epochs.
    let mut whole = model();
    let h_whole = whole.fit(&x, &y, fit_options(0, N)).unwrap();
    assert_eq!(whole.epoch(), N);

    // K epochs, a checkpoint, and a new process for the rest.
    let mut first = model();
    let h_first = first.fit(&x, &y, fit_options(0, K)).unwrap();
    first.save(dir.join("epoch-k.gradus")).unwrap();
    drop(first);
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["child_resumes_training", "--exact", "--test-threads=1"])
        .env(CHILD_ENV, &dir)
        .status()
        .unwrap();
    assert!(status.success(), "the resuming process failed");
    let resumed = Model::<Sequential>::load(dir.join("epoch-n.gradus")).unwrap();

    assert_eq!(
        state(&resumed),
        state(&whole),
        "weights or optimizer differ"
    );
    let h_rest: Rows =
        serde_json::from_str(&std::fs::read_to_string(dir.join("history.json")).unwrap()).unwrap();
    let mut joined = rows(&h_first);
    for (key, epochs, values) in h_rest {
        match joined.iter_mut().find(|(k, _, _)| *k == key) {
            Some((_, e, v)) => {
                e.extend(epochs);
                v.extend(values);
            }
            None => joined.push((key, epochs, values)),
        }
    }
    assert_eq!(joined, rows(&h_whole), "histories differ");
    // The checkpoint carries the whole history, too.
    assert_eq!(rows(resumed.history()), rows(&h_whole));
    assert_eq!(resumed.epoch(), N);
    // And the two models predict identically.
    let p_whole = whole.predict(&x, 16).unwrap();
    let mut resumed = resumed;
    let p_resumed = resumed.predict(&x, 16).unwrap();
    assert_eq!(
        p_whole
            .to_vec()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>(),
        p_resumed
            .to_vec()
            .iter()
            .map(|v| v.to_bits())
            .collect::<Vec<_>>()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
