//! The class-conditioned character model of `examples/conditioned_generation.rs`, on the
//! example's own code and corpus but smaller and shorter: gradients reach the projection of
//! the constant input (the class vector), and after training the right class vector reads
//! every class's held-out text better than any wrong one and changes what is generated.

#[path = "../examples/conditioned_generation.rs"]
#[allow(
    dead_code,
    reason = "the example's `main` and its printing helpers are not called here"
)]
mod example;

use example::{Batch, CLASSES, Corpus, Model, PROMPT, Settings, greedy, held_out_losses, train};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// Small enough to train in a second or two in the test profile.
fn short_run() -> Settings {
    Settings {
        steps: 150,
        hidden_size: 32,
        lr: 0.01,
        ..Settings::default()
    }
}

#[test]
fn gradients_reach_the_class_projection() {
    let corpus = Corpus::new();
    let settings = short_run();
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut model = Model::new(&corpus, settings.hidden_size, &mut rng).unwrap();
    let batch = Batch::random(&corpus, &settings, &mut rng);
    let step = model.loss_and_gradients(&batch).unwrap();
    assert!(step.loss.is_finite());
    let grad = step
        .lstm
        .get("weight_style_l0")
        .expect("the layer returns the gradient of the class projection");
    assert_eq!(grad.shape(), &[4 * settings.hidden_size, CLASSES.len()]);
    assert!(grad.iter().all(|g| g.is_finite()));
    // Every class has windows in the batch, so every class's column of the projection (the
    // only weights its one-hot vector meets) has a gradient.
    for class in 0..CLASSES.len() {
        let column_norm: f32 = grad
            .index_axis(lstm::ndarray::Axis(1), class)
            .iter()
            .map(|g| g * g)
            .sum();
        assert!(column_norm > 0.0, "class {class}: no gradient");
    }
}

#[test]
fn the_right_class_vector_reads_and_writes_its_class() {
    let corpus = Corpus::new();
    let settings = short_run();
    let mut trained = train(&corpus, &settings).unwrap();
    let tenth = settings.steps / 10;
    let mean = |losses: &[f32]| losses.iter().sum::<f32>() / losses.len() as f32;
    let (first, last) = (
        mean(&trained.losses[..tenth]),
        mean(&trained.losses[settings.steps - tenth..]),
    );
    assert!(last < 0.7 * first, "loss fell from {first} to {last} only");

    let losses = held_out_losses(&mut trained.model, &corpus, settings.seq_len).unwrap();
    for (class, row) in losses.rows().into_iter().enumerate() {
        for (style, &loss) in row.iter().enumerate() {
            if style != class {
                assert!(
                    row[class] < loss,
                    "{} text: right class vector {} against {} with {}'s\n{losses}",
                    CLASSES[class].0,
                    row[class],
                    loss,
                    CLASSES[style].0
                );
            }
        }
    }

    // Shouting is written in capitals, prose in small letters, from the same prompt.
    let capitals = |class: usize, model: &mut Model| {
        let text = model
            .generate(&corpus, class, PROMPT, 60, &mut greedy)
            .unwrap();
        let letters = text.chars().filter(char::is_ascii_alphabetic).count();
        let capitals = text.chars().filter(char::is_ascii_uppercase).count();
        (capitals as f64 / letters.max(1) as f64, text)
    };
    let class = |name: &str| {
        CLASSES
            .iter()
            .position(|(class, _)| *class == name)
            .unwrap()
    };
    let (prose, prose_text) = capitals(class("prose"), &mut trained.model);
    let (shout, shout_text) = capitals(class("shout"), &mut trained.model);
    assert!(prose < 0.2, "prose: {prose_text:?}");
    assert!(shout > 0.8, "shout: {shout_text:?}");
}
