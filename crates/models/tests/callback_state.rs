//! Callbacks across an interruption, and Keras' EarlyStopping rules (`baseline`,
//! `start_from_epoch`).
//!
//! A scripted callback writes a chosen `score` into each epoch's logs, so that the epochs at
//! which EarlyStopping stops and ReduceLROnPlateau reduces are known in advance, while the model
//! trains for real.

use gradus_layers::{Dense, Dropout};
use gradus_models::{
    Callback, EarlyStopping, FitOptions, History, Logs, Mode, Model, ModelError, ReduceLROnPlateau,
    Result, Sequential, TrainContext,
};
use gradus_optim::{Optimizer, rules::Sgd};
use gradus_tensor::{Rng, Tensor};

/// Writes `scores[epoch]` into the logs as `score`.
#[derive(Debug)]
struct Scripted(Vec<f32>);

impl Callback for Scripted {
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &mut Logs,
        _: &mut TrainContext<'_>,
    ) -> Result<()> {
        logs.insert("score", self.0[epoch]);
        Ok(())
    }
}

/// Lower is better. Without interruption, EarlyStopping (patience 3) stops at epoch 6: best 3.0
/// at epoch 3, then three epochs without improvement. ReduceLROnPlateau (patience 2) halves
/// the learning rate at epoch 5. A run interrupted after epoch 4 (wait 1 for both) that forgot
/// the callbacks' state would take 3.6 at epoch 5 as its first best, and stop later.
const SCORES: [f32; 12] = [5.0, 4.0, 4.5, 3.0, 3.5, 3.6, 3.7, 3.8, 3.9, 4.0, 4.1, 4.2];
const EPOCHS: usize = 12;
/// Epochs trained before the interruption.
const K: usize = 5;

fn data() -> (Tensor, Tensor) {
    let n = 40;
    let mut rng = Rng::seed_from_u64(3);
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
        .layer(Dense::new(8).activation("relu"))
        .layer(Dropout::new(0.2))
        .layer(Dense::new(3).activation("softmax"));
    let mut m = Model::with_seed(net, 9).unwrap();
    let sgd = Optimizer::builder(Sgd::default())
        .learning_rate(0.1)
        .build()
        .unwrap();
    m.compile(sgd, "sparse_categorical_crossentropy", ["accuracy"])
        .unwrap();
    m
}

fn callbacks() -> (Scripted, EarlyStopping, ReduceLROnPlateau) {
    (
        Scripted(SCORES.to_vec()),
        EarlyStopping::new("score").patience(3).mode(Mode::Min),
        ReduceLROnPlateau::new("score")
            .patience(2)
            .factor(0.5)
            .min_delta(0.0),
    )
}

/// Fits epochs `from..EPOCHS` with the three callbacks.
fn fit(
    m: &mut Model<Sequential>,
    from: usize,
    to: usize,
    cbs: &mut (Scripted, EarlyStopping, ReduceLROnPlateau),
) -> History {
    let (x, y) = data();
    let (s, e, r) = cbs;
    m.fit(
        &x,
        &y,
        FitOptions {
            epochs: to,
            initial_epoch: from,
            batch_size: 8,
            verbose: 0,
            callbacks: vec![s, e, r],
            ..Default::default()
        },
    )
    .unwrap()
}

fn bits(m: &Model<Sequential>) -> Vec<Vec<u32>> {
    m.get_weights()
        .iter()
        .map(|t| t.to_vec().iter().map(|v| v.to_bits()).collect())
        .collect()
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("gradus-cbstate-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("model.gradus")
}

#[test]
fn a_resumed_run_stops_and_reduces_at_the_same_epochs() {
    // In one go.
    let mut full = model();
    let mut cbs = callbacks();
    let h_full = fit(&mut full, 0, EPOCHS, &mut cbs);
    assert_eq!(cbs.1.stopped_epoch, 6, "the script stops at epoch 6");
    assert_eq!(h_full.epoch, (0..=6).collect::<Vec<_>>());
    let lr = h_full.get("learning_rate").unwrap();
    assert_eq!(lr[5], 0.1, "logged before the reduction of epoch 5");
    assert_eq!(lr[6], 0.05);

    // K epochs, saved, loaded as a new model with new callbacks, the rest.
    let path = scratch("resume");
    let mut first = model();
    let mut cbs1 = callbacks();
    fit(&mut first, 0, K, &mut cbs1);
    assert_eq!(cbs1.1.stopped_epoch, 0);
    first.save(&path).unwrap();
    drop(first);
    let mut resumed = Model::<Sequential>::load(&path).unwrap();
    assert_eq!(
        resumed.callback_states().len(),
        2,
        "EarlyStopping and the plateau"
    );
    let mut cbs2 = callbacks();
    fit(&mut resumed, K, EPOCHS, &mut cbs2);
    assert_eq!(cbs2.1.stopped_epoch, cbs.1.stopped_epoch);
    assert_eq!(cbs2.1.best_epoch, cbs.1.best_epoch);
    assert_eq!(cbs2.1.best(), cbs.1.best());
    assert_eq!(resumed.history(), full.history());
    assert_eq!(bits(&resumed), bits(&full));
    assert_eq!(
        resumed.optimizer().unwrap().learning_rate(),
        full.optimizer().unwrap().learning_rate()
    );

    // The control: the same resume with the states forgotten stops elsewhere.
    let mut forgetful = Model::<Sequential>::load(&path).unwrap();
    forgetful.clear_callback_states();
    let mut cbs3 = callbacks();
    fit(&mut forgetful, K, EPOCHS, &mut cbs3);
    assert_ne!(cbs3.1.stopped_epoch, cbs.1.stopped_epoch);
    assert_ne!(forgetful.history(), full.history());
    std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
}

#[test]
fn the_same_callbacks_resume_in_process_too() {
    let mut full = model();
    let mut cbs = callbacks();
    fit(&mut full, 0, EPOCHS, &mut cbs);
    // on_train_begin resets the callbacks (as Keras); fit hands the recorded states back.
    let mut m = model();
    let mut same = callbacks();
    fit(&mut m, 0, K, &mut same);
    fit(&mut m, K, EPOCHS, &mut same);
    assert_eq!(same.1.stopped_epoch, cbs.1.stopped_epoch);
    assert_eq!(bits(&m), bits(&full));
    assert_eq!(m.history(), full.history());
}

#[test]
fn resuming_with_other_stateful_callbacks_is_refused() {
    let mut m = model();
    let mut cbs = callbacks();
    fit(&mut m, 0, K, &mut cbs);
    let before = bits(&m);
    let (x, y) = data();
    let mut plateau = ReduceLROnPlateau::new("score");
    let mut script = Scripted(SCORES.to_vec());
    let e = m
        .fit(
            &x,
            &y,
            FitOptions {
                epochs: EPOCHS,
                initial_epoch: K,
                verbose: 0,
                callbacks: vec![&mut script, &mut plateau],
                ..Default::default()
            },
        )
        .unwrap_err();
    assert!(matches!(e, ModelError::Mismatch { .. }), "{e:?}");
    let text = e.to_string();
    for part in [
        "epoch 5",
        "EarlyStopping",
        "ReduceLROnPlateau",
        "clear_callback_states",
    ] {
        assert!(text.contains(part), "{part:?} not in {text}");
    }
    assert_eq!(bits(&m), before);
    assert_eq!(m.epoch(), K);
    assert_eq!(m.callback_states().len(), 2, "kept");
    // Starting afresh is a choice.
    m.clear_callback_states();
    m.fit(
        &x,
        &y,
        FitOptions {
            epochs: K + 1,
            initial_epoch: K,
            verbose: 0,
            callbacks: vec![&mut script, &mut plateau],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(m.callback_states().len(), 1);
}

#[test]
fn states_round_trip_and_refuse_other_classes() {
    let mut stop = EarlyStopping::new("loss").restore_best_weights(true);
    let mut opt = Optimizer::from_name("sgd").unwrap();
    let w = Tensor::from_vec(vec![1.5, -0.0, f32::MIN_POSITIVE], &[3]).unwrap();
    let var = gradus_autograd::Variable::new("w", w.clone());
    let vars = [var];
    let mut ctx = TrainContext::new(&mut opt, &vars);
    let mut logs = Logs::new();
    logs.insert("loss", f32::NAN);
    stop.on_epoch_end(0, &mut logs, &mut ctx).unwrap();
    let state = stop.state().unwrap();
    let mut again = EarlyStopping::new("loss");
    again.set_state(&state).unwrap();
    assert!(again.best().unwrap().is_nan(), "NaN round-trips");
    assert_eq!(again.state(), Some(state.clone()));
    // The best weights came back bit for bit: restoring them puts `w` back.
    vars[0].assign(Tensor::zeros(&[3])).unwrap();
    again.restore_best_weights = true;
    again.on_train_end(&logs, &mut ctx).unwrap();
    let got: Vec<u32> = vars[0]
        .value()
        .to_vec()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    let want: Vec<u32> = w.to_vec().iter().map(|v| v.to_bits()).collect();
    assert_eq!(got, want);

    let mut plateau = ReduceLROnPlateau::new("loss");
    let e = plateau.set_state(&state).unwrap_err();
    assert!(matches!(e, ModelError::Mismatch { .. }), "{e:?}");
    assert!(e.to_string().contains("EarlyStopping"), "{e}");
    let bad = serde_json::json!({"class": "EarlyStopping", "state": {"wait": "three"}});
    assert!(again.set_state(&bad).is_err());
    assert_eq!(
        again.state(),
        Some(state),
        "unchanged by a failed set_state"
    );
}

// ---------------------------------------------------------------------------------------------
// Keras' EarlyStopping rules.
// ---------------------------------------------------------------------------------------------

/// The epoch at which `stop` stops on `scores` (lower is better), or None.
fn stops_at(mut stop: EarlyStopping, scores: &[f32]) -> Option<usize> {
    let mut opt = Optimizer::from_name("sgd").unwrap();
    let mut ctx = TrainContext::new(&mut opt, &[]);
    stop.on_train_begin(&mut ctx).unwrap();
    for (epoch, &s) in scores.iter().enumerate() {
        let mut logs = Logs::new();
        logs.insert("score", s);
        stop.on_epoch_end(epoch, &mut logs, &mut ctx).unwrap();
        if ctx.stop_requested() {
            return Some(epoch);
        }
    }
    None
}

fn min(patience: usize) -> EarlyStopping {
    EarlyStopping::new("score")
        .mode(Mode::Min)
        .patience(patience)
}

#[test]
fn start_from_epoch_ignores_the_warm_up() {
    let scores = [1.0, 2.0, 3.0, 10.0, 9.0, 9.5, 9.6, 9.7];
    // Epoch 1 does not improve on epoch 0.
    assert_eq!(stops_at(min(1), &scores), Some(1));
    // Epochs 0-2 are not watched: best 10 at 3, 9 at 4, no improvement at 5.
    assert_eq!(stops_at(min(1).start_from_epoch(3), &scores), Some(5));
    // Nothing watched at all.
    assert_eq!(stops_at(min(0).start_from_epoch(8), &scores), None);
}

#[test]
fn a_baseline_must_be_beaten_to_reset_the_wait() {
    // Improvements above the baseline do not reset the wait: epoch 2 does not improve, with
    // 3 epochs waited (Keras counts the epochs since the last reset, improving or not).
    let scores = [8.0, 7.0, 7.5, 6.0, 4.0, 4.5, 4.6, 4.7];
    assert_eq!(stops_at(min(2).baseline(5.0), &scores), Some(2));
    assert_eq!(stops_at(min(2), &scores), Some(6));
    // Beating the baseline (4 < 5) resets the wait as any improvement does without one.
    let scores = [8.0, 4.0, 4.5, 4.6, 3.0];
    assert_eq!(stops_at(min(2).baseline(5.0), &scores), Some(3));
    // An improving epoch never stops, even past the patience (Keras returns early).
    let scores = [8.0, 7.0, 6.0, 5.5, 5.2];
    assert_eq!(stops_at(min(1).baseline(5.0), &scores), None);
    // The baseline is beaten only by more than min_delta: 4.95 improves on 8 but does not
    // beat 5 by 0.1, so the wait goes on to 3 at epoch 2.
    let scores = [8.0, 4.95, 4.96];
    assert_eq!(
        stops_at(min(2).baseline(5.0).min_delta(0.1), &scores),
        Some(2)
    );
    assert_eq!(stops_at(min(2).baseline(5.0), &scores), None);
}
