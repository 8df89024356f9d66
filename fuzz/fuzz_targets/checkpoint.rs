//! Fuzzes the checkpoint and config loaders: any bytes given to `Model::load`, `load_into`,
//! `load_weights`, the callbacks' state loaders, the optimizer's JSON config and state loaders
//! and a layer's config loader must give a value or an error, never a panic, an abort or a
//! runaway allocation.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use gradus_layers::{Dense, Dropout, LayerConfig, layer_from_config};
use gradus_models::{
    Callback, EarlyStopping, Model, ModelCheckpoint, ReduceLROnPlateau, Sequential,
};
use gradus_optim::{Optimizer, OptimizerConfig};
use libfuzzer_sys::fuzz_target;

/// One file per fuzzing process, rewritten for every input.
fn scratch() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let dir = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        dir.join(format!("gradus-fuzz-checkpoint-{}", std::process::id()))
    })
}

/// `bytes` with the checksum trailer gradus writes (a tag, then FNV-1a 64 of what precedes it),
/// so that fuzzing reaches the parser behind the checksum.
fn with_trailer(bytes: &[u8]) -> Vec<u8> {
    let hash = bytes.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    let mut out = bytes.to_vec();
    out.extend_from_slice(b"gradus#\x01");
    out.extend_from_slice(&hash.to_le_bytes());
    out
}

fuzz_target!(|input: &[u8]| {
    // The first byte chooses: the bytes as they are, or with a valid checksum trailer.
    let Some((&mode, data)) = input.split_first() else {
        return;
    };
    let path = scratch();
    let bytes = if mode & 1 == 1 {
        with_trailer(data)
    } else {
        data.to_vec()
    };
    std::fs::write(path, &bytes).expect("the scratch file is writable");
    if let Ok(model) = Model::<Sequential>::load(path) {
        // What loads must be usable, its callback states included.
        let _ = model.summary_string();
        let _ = model.get_weights();
        for state in model.callback_states() {
            let _ = EarlyStopping::new("loss").set_state(state);
            let _ = ReduceLROnPlateau::new("loss").set_state(state);
            let _ = ModelCheckpoint::new("unused").set_state(state);
        }
    }
    let mut model = Model::new(
        Sequential::new()
            .input_shape(&[4])
            .layer(Dense::new(8).activation("relu").with_name("hidden"))
            .layer(Dropout::new(0.25).seed(5))
            .layer(Dense::new(3).activation("softmax").with_name("out")),
    )
    .expect("a valid model");
    let _ = model.load_weights(path);
    let _ = model.load_into(path);
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(config) = OptimizerConfig::from_json(text) {
            let _ = Optimizer::from_config(config);
        }
        let mut optimizer = Optimizer::from_name("adam").expect("adam");
        let _ = optimizer.load_state_json(text);
        if let Ok(config) = serde_json::from_str::<LayerConfig>(text) {
            let _ = layer_from_config(&config);
        }
    }
});
