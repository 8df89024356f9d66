//! Crash-safe checkpoints: a child process saves checkpoints in a loop and is killed with
//! SIGKILL at random moments; after every kill, what is on disk must load and be either the
//! last checkpoint the child reported as saved or the one it was writing.
//!
//! The child is this test binary run again with `GRADUS_CHECKPOINT_CHILD` set to the directory
//! to save into: [`child_saves_checkpoints_in_a_loop`] is then the loop, and is a no-op
//! otherwise.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use gradus::layers::Dense;
use gradus::models::{Model, Sequential};
use gradus::tensor::{Rng, Tensor};

const CHILD_ENV: &str = "GRADUS_CHECKPOINT_CHILD";
const FILE: &str = "model.gradus";

/// A model of about 330k weights (a 1.3 MB checkpoint), so that a save takes long enough for
/// kills to land in the middle of one.
fn model() -> Model<Sequential> {
    Model::new(
        Sequential::new()
            .input_shape(&[512])
            .layer(Dense::new(512).with_name("a"))
            .layer(Dense::new(128).with_name("b")),
    )
    .unwrap()
}

/// Generation `g` of the weights: every value equals `g`.
fn set_generation(m: &Model<Sequential>, g: u64) {
    let w: Vec<Tensor> = m
        .get_weights()
        .iter()
        .map(|t| Tensor::full(t.shape(), g as f32))
        .collect();
    m.set_weights(&w).unwrap();
}

/// The generation a checkpoint holds, checking that every value agrees.
fn generation_of(m: &Model<Sequential>) -> u64 {
    let w = m.get_weights();
    let g = w[0].to_vec()[0];
    for t in &w {
        assert!(
            t.to_vec().iter().all(|v| v.to_bits() == g.to_bits()),
            "a checkpoint mixing generations"
        );
    }
    g as u64
}

#[test]
fn child_saves_checkpoints_in_a_loop() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    let path = Path::new(&dir).join(FILE);
    let m = model();
    // Go on from what is on disk.
    let mut g = match Model::<Sequential>::load(&path) {
        Ok(saved) => generation_of(&saved) + 1,
        Err(_) => 1,
    };
    loop {
        set_generation(&m, g);
        m.save(&path).unwrap();
        println!("saved {g}");
        g += 1;
    }
}

#[test]
fn checkpoints_survive_sigkill_at_random_moments() {
    if std::env::var(CHILD_ENV).is_ok() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("gradus-sigkill-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(FILE);
    let mut rng = Rng::seed_from_u64(2024);
    let exe = std::env::current_exe().unwrap();
    let (kills, mut loaded_new, mut loaded_previous, mut temp_seen) = (20, 0, 0, 0);
    let started = Instant::now();
    for kill in 0..kills {
        let mut child = Command::new(&exe)
            .args([
                "child_saves_checkpoints_in_a_loop",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Wait for the first save of this run, then a random 0..40 ms more.
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = loop {
            let line = lines.next().expect("the child saves").unwrap();
            if let Some(g) = line.strip_prefix("saved ") {
                break g.parse::<u64>().unwrap();
            }
        };
        std::thread::sleep(Duration::from_micros((rng.uniform_f32() * 40_000.0) as u64));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let reported: Vec<u64> = lines
            .map_while(|l| l.ok())
            .filter_map(|l| l.strip_prefix("saved ").map(|g| g.parse().unwrap()))
            .collect();
        let last = reported.last().copied().unwrap_or(first);
        // A temporary file left behind: the kill cut a save short. Clear it for the next run.
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap().path();
            if entry != path {
                temp_seen += 1;
                std::fs::remove_file(entry).unwrap();
            }
        }
        let saved = Model::<Sequential>::load(&path)
            .unwrap_or_else(|e| panic!("kill {kill}: the checkpoint does not load: {e}"));
        let g = generation_of(&saved);
        assert!(
            g == last || g == last + 1,
            "kill {kill}: on disk generation {g}, last reported {last}"
        );
        if g == last {
            loaded_previous += 1;
        } else {
            loaded_new += 1;
        }
    }
    println!(
        "{kills} SIGKILLs in {:.1} s: the checkpoint loaded every time; {loaded_previous} \
         held the last reported save, {loaded_new} the one being reported; {temp_seen} kills \
         left a temporary file behind (a save cut short)",
        started.elapsed().as_secs_f64()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
