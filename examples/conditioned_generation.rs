//! A character model conditioned on a class vector through a constant input (Keras
//! `constants`): one model, three styles of text, and the class vector picks the style.
//!
//! ```sh
//! cargo run --release --example conditioned_generation
//! ```
//!
//! The corpus, written into this file: quiet English prose, ALL-CAPS SHOUTING, and ledger
//! lines of dates and sums. The model: one-hot characters into an `Lstm` of a cell defined
//! here, whose gates all see the one-hot class vector (`z = z + style`, with `style` the
//! learned projection `weight_style · class`, computed once per call), then a `Linear` head
//! and softmax cross-entropy on the next character at every step; Adam on windows of 48
//! characters cut at random from each class's text, each starting from a zero state
//! (truncated sequences).
//!
//! Prints the training loss, the held-out loss of every class's last lines under every class
//! vector (the right vector must beat every wrong one, or the example fails), and, from the
//! same prompt, a greedy and a sampled line per class with the share of capitals and digits
//! in a longer sample. `tests/conditioned_generation.rs` runs a shorter version of the same
//! code.

use std::error::Error;
use std::time::Instant;

use lstm::loss::cross_entropy;
use lstm::ndarray::{Array2, Array3, ArrayView2, Axis};
use lstm::optim::{Adam, AdamConfig, Optimizer};
use lstm::{Call, Gradients, Linear, Lstm, LstmConfig, OutputGrad, lstm_cell};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A standard LSTM whose four gates also see the class of the text: `style` is the class
/// vector projected to every gate (`weight_style · class`), added to each gate's
/// pre-activation as a per-sequence bias.
#[lstm_cell(z = z + style)]
pub struct StyleConditioned {
    /// The class vector, one-hot `(batch, classes)`; the layer projects it once per call.
    style: Constant,
}

/// Quiet English prose, mostly lower case.
const PROSE: &[&str] = &[
    "the river was low that summer, and the stones showed their backs.",
    "we walked along the bank in the evening when the air was cool.",
    "my grandmother kept bees behind the house and sold the honey in jars.",
    "the old mill had no roof, but swallows nested in its walls.",
    "in the morning the fog lay on the fields like milk in a bowl.",
    "he said little and read a great deal, mostly about ships.",
    "the children ran down to the water to look for frogs and eels.",
    "there was a bell in the village that rang at noon and at six.",
    "she planted beans along the fence and tomatoes by the door.",
    "on sundays the baker closed early and the street was quiet.",
    "the road to the town was long, and the cart was slow.",
    "at night we could hear the owls calling across the valley.",
    "the teacher was a patient woman who loved maps and old songs.",
    "when the rain came at last, the whole garden seemed to breathe.",
    "my brother wanted to be a sailor, though he had never seen the sea.",
    "the cat slept on the warm stones of the wall all afternoon.",
    "we ate bread with butter and plums from the tree in the yard.",
    "the letters came once a week, tied with string, from the city.",
    "in winter the pond froze and we skated until our feet were numb.",
    "the doctor rode a grey horse and carried his bag on the saddle.",
    "every autumn the apples were stored in straw in the cellar.",
    "it was a quiet place, and nothing much happened there, which we liked.",
    "the fisherman mended his nets on the steps and hummed to himself.",
    "there were wild roses on the hill, and the bees went from one to the next.",
    "the house was cold in the mornings until the stove was lit.",
    "we counted the stars from the window and always lost count.",
    "the old dog followed us everywhere and slept under the table.",
    "the market came on thursdays, with cheese and cloth and cages of hens.",
    "my father wrote his letters slowly, in a careful round hand.",
    "the wind turned in the night, and by morning the snow had come.",
    "the lamp in the kitchen was the last light to go out at night.",
    "in spring the lane was full of mud and the hedges full of birds.",
    "the son of the miller could whistle any tune he heard only once.",
];

/// Shouting: capitals and exclamation marks.
const SHOUT: &[&str] = &[
    "STOP THE PRESSES! THE RIVER IS RISING AND THE BRIDGE IS OUT!",
    "EVERYBODY OUT OF THE WATER, NOW! THAT MEANS YOU TOO!",
    "I SAID NO! NO MORE CAKE UNTIL YOU FINISH YOUR DINNER!",
    "HEY! WHO LEFT THE GATE OPEN? THE GOATS ARE ON THE ROAD!",
    "GET THAT HORSE OFF MY PORCH THIS MINUTE!",
    "FIRE! FIRE IN THE BAKERY! BRING THE BUCKETS!",
    "WE WANT THE MAYOR! WE WANT THE MAYOR! WHERE IS HE?",
    "DO NOT TOUCH THE RED BUTTON! WHAT DID I JUST SAY?",
    "LOOK OUT BELOW! THE PIANO IS COMING DOWN THE STAIRS!",
    "THE SHIP HAS SAILED AND WE ARE STILL ON THE DOCK!",
    "WAKE UP! WAKE UP! THE COWS ARE IN THE KITCHEN!",
    "WHO ATE ALL THE PLUMS? THERE WERE TWENTY PLUMS IN THAT BOWL!",
    "CLOSE THE DOOR, IT IS FREEZING IN HERE!",
    "THAT IS NOT A DUCK, THAT IS A GOOSE, AND IT IS ANGRY!",
    "RUN! THE BEES ARE OUT AND THEY ARE NOT HAPPY!",
    "TURN THAT MUSIC DOWN! SOME OF US ARE TRYING TO SLEEP!",
    "THE TRAIN IS LEAVING! GRAB THE BAGS AND GO, GO, GO!",
    "NOBODY MOVE! I DROPPED MY GLASSES SOMEWHERE ON THE FLOOR!",
    "WHERE ARE MY BOOTS? I HAD THEM RIGHT HERE A MINUTE AGO!",
    "HOLD THE ROPE! PULL! PULL HARDER! WE ARE ALMOST THERE!",
    "THIS IS THE BEST DAY OF MY LIFE! I WON THE PIE CONTEST!",
    "KEEP THE DOG AWAY FROM THE SAUSAGES, I AM WARNING YOU!",
    "THE CART HAS LOST A WHEEL! EVERYBODY PUSH!",
    "YOU CALL THIS SOUP? THIS IS HOT WATER WITH A CARROT IN IT!",
    "MIND THE PAINT! THE PAINT IS STILL WET!",
    "SOMEBODY CATCH THAT HEN BEFORE SHE GETS INTO THE CHURCH!",
    "THE BELL! RING THE BELL! THE BOATS ARE COMING IN!",
    "I AM NOT SHOUTING! THIS IS HOW I ALWAYS TALK!",
    "OPEN THE WINDOWS! THE BREAD IS BURNING!",
    "HURRY UP! THE PARADE STARTS IN FIVE MINUTES!",
    "GET DOWN FROM THAT ROOF BEFORE YOU BREAK YOUR NECK!",
    "THE WELL IS DRY! SOMEBODY FETCH WATER FROM THE RIVER!",
    "I CAN SEE THE SEA! I CAN SEE THE SEA FROM UP HERE!",
];

/// A shop's ledger: dates, order numbers, quantities, prices and totals.
const LEDGER: &[&str] = &[
    "1887-10-18 no. 718: 10 x 3.83 = 38.30",
    "1888-11-19 no. 113: 6 x 6.25 = 37.50",
    "1888-05-18 no. 834: 16 x 2.01 = 32.16",
    "1888-09-27 no. 506: 37 x 4.92 = 182.04",
    "1889-03-08 no. 988: 42 x 1.60 = 67.20",
    "1889-07-24 no. 895: 2 x 6.92 = 13.84",
    "1887-03-25 no. 408: 39 x 0.48 = 18.72",
    "1887-05-16 no. 999: 40 x 7.41 = 296.40",
    "1888-12-26 no. 845: 29 x 4.09 = 118.61",
    "1889-08-05 no. 136: 25 x 1.04 = 26.00",
    "1887-08-07 no. 788: 18 x 9.93 = 178.74",
    "1888-11-28 no. 619: 21 x 4.36 = 91.56",
    "1888-10-12 no. 517: 36 x 6.04 = 217.44",
    "1889-04-11 no. 129: 45 x 9.42 = 423.90",
    "1888-10-22 no. 815: 46 x 1.72 = 79.12",
    "1888-09-19 no. 830: 38 x 1.11 = 42.18",
    "1889-04-21 no. 391: 38 x 2.78 = 105.64",
    "1887-02-16 no. 190: 42 x 5.00 = 210.00",
    "1888-02-14 no. 400: 11 x 0.25 = 2.75",
    "1888-07-28 no. 719: 9 x 0.50 = 4.50",
    "1889-01-13 no. 438: 47 x 6.05 = 284.35",
    "1889-05-17 no. 417: 17 x 0.41 = 6.97",
    "1887-02-04 no. 132: 40 x 5.53 = 221.20",
    "1887-07-10 no. 259: 41 x 2.74 = 112.34",
    "1889-01-28 no. 468: 23 x 3.26 = 74.98",
    "1887-07-13 no. 632: 31 x 8.95 = 277.45",
];

/// The classes, in the order of the class vector's entries.
pub const CLASSES: [(&str, &[&str]); 3] = [("prose", PROSE), ("shout", SHOUT), ("ledger", LEDGER)];

/// Lines at the end of each class's text kept out of training, for the held-out losses.
const HELD_OUT_LINES: usize = 4;

/// The prompt every class continues: a line break, so each sample starts a new line.
pub const PROMPT: &str = "\n";

/// Temperature of the sampled lines.
const TEMPERATURE: f32 = 0.7;

/// Characters in the longer sample whose capitals and digits are counted.
const PROFILE_CHARS: usize = 400;

/// How long a run is and how big its model.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Adam steps.
    pub steps: usize,
    /// Windows per step.
    pub batch_size: usize,
    /// Characters per window (the truncation length of backpropagation through time).
    pub seq_len: usize,
    /// The cell's hidden units.
    pub hidden_size: usize,
    /// Adam's learning rate.
    pub lr: f64,
    /// Seeds the weights and the windows.
    pub seed: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            steps: 400,
            batch_size: 32,
            seq_len: 48,
            hidden_size: 64,
            lr: 0.005,
            seed: 1,
        }
    }
}

/// The corpus as character indices: each class's text split into training and held-out
/// parts (lines joined by line breaks, with one at the end).
pub struct Corpus {
    /// Every character that occurs, sorted; a character's index is its one-hot position.
    vocab: Vec<char>,
    /// Per class, its training text.
    train: Vec<Vec<usize>>,
    /// Per class, its last `HELD_OUT_LINES` lines.
    held_out: Vec<Vec<usize>>,
}

impl Corpus {
    /// The embedded corpus.
    pub fn new() -> Self {
        let joined = |lines: &[&str]| lines.iter().map(|line| format!("{line}\n")).collect();
        let texts: Vec<(String, String)> = CLASSES
            .iter()
            .map(|(_, lines)| {
                let split = lines.len() - HELD_OUT_LINES;
                (joined(&lines[..split]), joined(&lines[split..]))
            })
            .collect();
        let mut vocab: Vec<char> = texts
            .iter()
            .flat_map(|(train, held_out)| train.chars().chain(held_out.chars()))
            .collect();
        vocab.sort_unstable();
        vocab.dedup();
        let mut corpus = Corpus {
            vocab,
            train: Vec::new(),
            held_out: Vec::new(),
        };
        for (train, held_out) in &texts {
            corpus.train.push(corpus.encode(train));
            corpus.held_out.push(corpus.encode(held_out));
        }
        corpus
    }

    /// Distinct characters.
    pub fn vocab_size(&self) -> usize {
        self.vocab.len()
    }

    /// Indices of `text`'s characters; characters outside the vocabulary are dropped.
    fn encode(&self, text: &str) -> Vec<usize> {
        text.chars()
            .filter_map(|ch| self.vocab.binary_search(&ch).ok())
            .collect()
    }
}

impl Default for Corpus {
    fn default() -> Self {
        Corpus::new()
    }
}

/// Windows of text for one call: one-hot inputs, next-character targets, class vectors.
pub struct Batch {
    /// `(seq_len, batch, vocab)`: the window's characters but the last, one-hot.
    inputs: Array3<f32>,
    /// The window's characters but the first, `seq_len · batch` of them in time-major
    /// order: the order of the layer's outputs folded into rows for the head.
    targets: Vec<usize>,
    /// `(batch, classes)`: the class vector each window is read with, one-hot.
    styles: Array2<f32>,
}

impl Batch {
    /// A batch of `windows` (each `seq_len + 1` characters), window `b` read with the class
    /// vector of `styles[b]`.
    fn new(vocab_size: usize, windows: &[&[usize]], styles: &[usize]) -> Self {
        let seq_len = windows[0].len() - 1;
        let batch = windows.len();
        let mut inputs = Array3::zeros((seq_len, batch, vocab_size));
        for (b, window) in windows.iter().enumerate() {
            for t in 0..seq_len {
                inputs[[t, b, window[t]]] = 1.0;
            }
        }
        let targets = (1..=seq_len)
            .flat_map(|t| windows.iter().map(move |window| window[t]))
            .collect();
        let mut one_hot_styles = Array2::zeros((batch, CLASSES.len()));
        for (b, &style) in styles.iter().enumerate() {
            one_hot_styles[[b, style]] = 1.0;
        }
        Batch {
            inputs,
            targets,
            styles: one_hot_styles,
        }
    }

    /// `batch_size` windows of `seq_len + 1` characters from random places in the training
    /// texts, the classes taking turns, each read with its own class vector.
    pub fn random(corpus: &Corpus, settings: &Settings, rng: &mut impl Rng) -> Self {
        let window = settings.seq_len + 1;
        let styles: Vec<usize> = (0..settings.batch_size)
            .map(|b| b % CLASSES.len())
            .collect();
        let windows: Vec<&[usize]> = styles
            .iter()
            .map(|&class| {
                let text = &corpus.train[class];
                let start = rng.random_range(0..=text.len() - window);
                &text[start..start + window]
            })
            .collect();
        Batch::new(corpus.vocab_size(), &windows, &styles)
    }

    /// Every whole window of `seq_len + 1` characters of class `class`'s held-out text
    /// (consecutive windows share one character), read with class vector `style`.
    pub fn held_out(corpus: &Corpus, class: usize, style: usize, seq_len: usize) -> Self {
        let windows: Vec<&[usize]> = corpus.held_out[class]
            .windows(seq_len + 1)
            .step_by(seq_len)
            .collect();
        Batch::new(corpus.vocab_size(), &windows, &vec![style; windows.len()])
    }
}

/// One-hot characters → conditioned LSTM → linear head → next-character logits.
pub struct Model {
    /// The recurrent layer; its constant input is the class vector.
    pub lstm: Lstm<StyleConditioned<f32>>,
    /// Hidden state → logits over the vocabulary.
    pub head: Linear<f32>,
}

/// The loss of a batch and the gradients of both parts of the model.
pub struct LossAndGradients {
    /// Mean cross-entropy per character, in nats.
    pub loss: f32,
    /// The layer's parameter gradients (`weight_ih_l0`, …, `weight_style_l0`).
    pub lstm: Gradients<f32>,
    /// The head's (`weight`, `bias`, and `input`).
    pub head: Gradients<f32>,
}

impl Model {
    /// A freshly initialised model (PyTorch's initialisations) for `corpus`.
    pub fn new(
        corpus: &Corpus,
        hidden_size: usize,
        rng: &mut impl Rng,
    ) -> Result<Self, Box<dyn Error>> {
        let config =
            LstmConfig::new(corpus.vocab_size(), hidden_size).with_constant_size(CLASSES.len());
        Ok(Model {
            lstm: Lstm::new(config, rng)?,
            head: Linear::new(hidden_size, corpus.vocab_size(), rng),
        })
    }

    /// The next-character loss on `batch` and its gradients.
    pub fn loss_and_gradients(
        &mut self,
        batch: &Batch,
    ) -> Result<LossAndGradients, Box<dyn Error>> {
        let call = Call::new()
            .with_constants(batch.styles.view())
            .with_training(true);
        let (out, tape) = self.lstm.forward_train(batch.inputs.view(), call)?;
        let hidden = out
            .output
            .into_sequence()
            .ok_or("the layer returns sequences")?;
        let features = fold_steps(hidden)?;
        let logits = self.head.forward(features.view())?;
        // Every step's prediction is a row: the mean over rows is the mean over steps.
        let (loss, d_logits) = cross_entropy(logits.view(), &batch.targets, None)?;
        let mut head = self.head.backward(features.view(), d_logits.view())?;
        let d_hidden = head.remove("input").ok_or("the head returns dL/d input")?;
        let (seq_len, batch_size, _) = batch.inputs.dim();
        let d_hidden =
            d_hidden.into_shape_with_order((seq_len, batch_size, self.head.in_features()))?;
        let lstm = self.lstm.backward(
            tape,
            OutputGrad {
                output: Some(d_hidden.view().into_dyn()),
                ..Default::default()
            },
        )?;
        Ok(LossAndGradients {
            loss,
            lstm: lstm.params,
            head,
        })
    }

    /// The next-character loss on `batch`, in inference mode.
    pub fn loss(&mut self, batch: &Batch) -> Result<f32, Box<dyn Error>> {
        let call = Call::new().with_constants(batch.styles.view());
        let out = self.lstm.forward(batch.inputs.view(), call)?;
        let hidden = out
            .output
            .into_sequence()
            .ok_or("the layer returns sequences")?;
        let logits = self.head.forward(fold_steps(hidden)?.view())?;
        let (loss, _) = cross_entropy(logits.view(), &batch.targets, None)?;
        Ok(loss)
    }

    /// `length` characters continuing `prompt` under class `class`'s vector, each chosen
    /// from the next-character logits by `pick`. The state is carried from call to call, so
    /// each new character costs one step.
    pub fn generate(
        &mut self,
        corpus: &Corpus,
        class: usize,
        prompt: &str,
        length: usize,
        pick: &mut dyn FnMut(&[f32]) -> usize,
    ) -> Result<String, Box<dyn Error>> {
        let mut style = Array2::zeros((1, CLASSES.len()));
        style[[0, class]] = 1.0;
        let mut input = one_hot_sequence(corpus, &corpus.encode(prompt));
        let mut state: Option<(Array3<f32>, Array3<f32>)> = None;
        let mut text = String::new();
        for _ in 0..length {
            let mut call = Call::new().with_constants(style.view());
            if let Some((h, c)) = &state {
                call = call.with_initial_state(h.view(), c.view());
            }
            let out = self.lstm.forward(input.view(), call)?;
            let hidden = out
                .output
                .into_sequence()
                .ok_or("the layer returns sequences")?;
            let last = hidden.index_axis(Axis(0), hidden.dim().0 - 1);
            let logits = self.head.forward(last)?;
            let next = pick(
                logits
                    .row(0)
                    .as_slice()
                    .ok_or("a logits row is contiguous")?,
            );
            text.push(corpus.vocab[next]);
            input = one_hot_sequence(corpus, &[next]);
            state = Some((
                out.h_n.ok_or("the layer returns h_n")?,
                out.c_n.ok_or("the layer returns c_n")?,
            ));
        }
        Ok(text)
    }
}

/// `(seq_len, batch, features)` as `(seq_len · batch, features)` rows, for the head.
fn fold_steps(steps: Array3<f32>) -> Result<Array2<f32>, Box<dyn Error>> {
    let (seq_len, batch, features) = steps.dim();
    Ok(steps.into_shape_with_order((seq_len * batch, features))?)
}

/// `(len, 1, vocab)`: one sequence of characters, one-hot.
fn one_hot_sequence(corpus: &Corpus, chars: &[usize]) -> Array3<f32> {
    let mut sequence = Array3::zeros((chars.len(), 1, corpus.vocab_size()));
    for (t, &ch) in chars.iter().enumerate() {
        sequence[[t, 0, ch]] = 1.0;
    }
    sequence
}

/// The index of the largest logit.
pub fn greedy(logits: &[f32]) -> usize {
    logits
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map_or(0, |(index, _)| index)
}

/// An index drawn from `softmax(logits / temperature)`.
pub fn sample(logits: &[f32], temperature: f32, rng: &mut impl Rng) -> usize {
    let max = logits.iter().fold(f32::NEG_INFINITY, |max, &l| max.max(l));
    let weights: Vec<f32> = logits
        .iter()
        .map(|&l| ((l - max) / temperature).exp())
        .collect();
    let mut remaining = rng.random_range(0.0..weights.iter().sum::<f32>());
    for (index, &weight) in weights.iter().enumerate() {
        if remaining < weight {
            return index;
        }
        remaining -= weight;
    }
    weights.len() - 1
}

/// A trained model and its loss at every step.
pub struct Trained {
    /// The model after the last step.
    pub model: Model,
    /// The training loss of every step's batch, in order.
    pub losses: Vec<f32>,
}

/// Trains a fresh model on random windows of the training texts with Adam.
pub fn train(corpus: &Corpus, settings: &Settings) -> Result<Trained, Box<dyn Error>> {
    let mut rng = ChaCha8Rng::seed_from_u64(settings.seed);
    let mut model = Model::new(corpus, settings.hidden_size, &mut rng)?;
    let mut lstm_optimizer = Adam::new(AdamConfig::adam().with_lr(settings.lr))?;
    let mut head_optimizer = Adam::new(AdamConfig::adam().with_lr(settings.lr))?;
    let mut losses = Vec::with_capacity(settings.steps);
    for _ in 0..settings.steps {
        let batch = Batch::random(corpus, settings, &mut rng);
        let step = model.loss_and_gradients(&batch)?;
        lstm_optimizer.step(&mut model.lstm, &step.lstm)?;
        head_optimizer.step(&mut model.head, &step.head)?;
        losses.push(step.loss);
    }
    Ok(Trained { model, losses })
}

/// Held-out loss of every class's text (rows) read with every class vector (columns).
pub fn held_out_losses(
    model: &mut Model,
    corpus: &Corpus,
    seq_len: usize,
) -> Result<Array2<f32>, Box<dyn Error>> {
    let mut losses = Array2::zeros((CLASSES.len(), CLASSES.len()));
    for class in 0..CLASSES.len() {
        for style in 0..CLASSES.len() {
            losses[[class, style]] = model.loss(&Batch::held_out(corpus, class, style, seq_len))?;
        }
    }
    Ok(losses)
}

/// The classes whose held-out text some wrong class vector reads at least as well as the
/// right one.
pub fn unhelped_classes(losses: ArrayView2<'_, f32>) -> Vec<&'static str> {
    losses
        .rows()
        .into_iter()
        .enumerate()
        .filter(|(class, row)| {
            row.iter()
                .enumerate()
                .any(|(style, &loss)| style != *class && loss <= row[*class])
        })
        .map(|(class, _)| CLASSES[class].0)
        .collect()
}

/// The share of capitals among the letters of `text`, and of digits among its characters
/// other than spaces and line breaks.
fn style_profile(text: &str) -> (f64, f64) {
    let letters = text.chars().filter(char::is_ascii_alphabetic).count();
    let capitals = text.chars().filter(char::is_ascii_uppercase).count();
    let visible = text.chars().filter(|ch| !ch.is_whitespace()).count();
    let digits = text.chars().filter(char::is_ascii_digit).count();
    (
        capitals as f64 / letters.max(1) as f64,
        digits as f64 / visible.max(1) as f64,
    )
}

fn main() -> Result<(), Box<dyn Error>> {
    let settings = Settings::default();
    let corpus = Corpus::new();
    println!(
        "{} classes, {} characters of training text, vocabulary of {}",
        CLASSES.len(),
        corpus.train.iter().map(Vec::len).sum::<usize>(),
        corpus.vocab_size()
    );
    let started = Instant::now();
    let Trained { mut model, losses } = train(&corpus, &settings)?;
    let mean = |losses: &[f32]| losses.iter().sum::<f32>() / losses.len() as f32;
    let tenth = (settings.steps / 10).max(1);
    println!(
        "trained {} steps in {:.1} s: loss {:.3} over the first {tenth} steps, {:.3} over the \
         last {tenth} (nats per character; uniform guessing scores {:.3})",
        settings.steps,
        started.elapsed().as_secs_f64(),
        mean(&losses[..tenth]),
        mean(&losses[losses.len() - tenth..]),
        (corpus.vocab_size() as f32).ln()
    );

    let held_out = held_out_losses(&mut model, &corpus, settings.seq_len)?;
    print_held_out(held_out.view());
    let unhelped = unhelped_classes(held_out.view());
    if !unhelped.is_empty() {
        return Err(
            format!("conditioning does not help on the held-out text of {unhelped:?}").into(),
        );
    }
    println!("(*: the right class vector, the lowest loss in every row)");
    print_samples(&mut model, &corpus, settings.seed)?;
    println!("\nfinished in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// The held-out losses as a table, the right class vector marked.
fn print_held_out(losses: ArrayView2<'_, f32>) {
    println!(
        "\nheld-out loss, nats per character (rows: the text's class; columns: the class vector)"
    );
    print!("{:>8}", "");
    for (name, _) in CLASSES {
        print!("{name:>9}");
    }
    println!();
    for (class, row) in losses.rows().into_iter().enumerate() {
        print!("{:>8}", CLASSES[class].0);
        for (style, loss) in row.iter().enumerate() {
            let mark = if style == class { "*" } else { "" };
            print!("{:>9}", format!("{loss:.3}{mark}"));
        }
        println!();
    }
}

/// Per class, from the same prompt: a greedy line, a sampled line, and the share of capitals
/// and digits in a longer sample next to the class's training text.
fn print_samples(model: &mut Model, corpus: &Corpus, seed: u64) -> Result<(), Box<dyn Error>> {
    println!(
        "\nafter the prompt {PROMPT:?}: the first line of a greedy and of a sampled text; \
         the share of capitals among letters and of digits among characters in \
         {PROFILE_CHARS} sampled characters (in brackets: the class's training text)"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let first_line = |text: &str| text.lines().next().unwrap_or("").to_string();
    for (class, (name, _)) in CLASSES.iter().enumerate() {
        let greedy_text = model.generate(corpus, class, PROMPT, 70, &mut greedy)?;
        let sampled = model.generate(corpus, class, PROMPT, PROFILE_CHARS, &mut |logits| {
            sample(logits, TEMPERATURE, &mut rng)
        })?;
        let (capitals, digits) = style_profile(&sampled);
        let training_text: String = corpus.train[class]
            .iter()
            .map(|&ch| corpus.vocab[ch])
            .collect();
        let (training_capitals, training_digits) = style_profile(&training_text);
        println!("{name}");
        println!("  greedy      {}", first_line(&greedy_text));
        println!("  T = {TEMPERATURE}     {}", first_line(&sampled));
        println!(
            "  capitals {:>3.0}% ({:.0}%), digits {:>3.0}% ({:.0}%)",
            100.0 * capitals,
            100.0 * training_capitals,
            100.0 * digits,
            100.0 * training_digits
        );
    }
    Ok(())
}
