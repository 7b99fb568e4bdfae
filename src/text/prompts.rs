//! The reference prompt ensemble (AVA-DINO `utils.py: encode_text_with_prompt_ensemble`):
//! 7 normal states x 35 templates and 5 abnormal states x 35 templates, state-major; each sentence
//! encoded, L2-normalized, averaged, and L2-normalized again. The class word is inserted raw
//! (underscores kept), as the reference does.

use super::TextError;
use super::model::{ClipText, pooled_positions};
use super::tokenizer::{CONTEXT_LENGTH, Tokenizer};
use crate::io::HostTensor;

/// Ensemble features of one class word, each L2-normalized, length E.
#[derive(Clone, Debug, PartialEq)]
pub struct TextFeatures {
    pub normal: Vec<f32>,
    pub anomaly: Vec<f32>,
}

/// Normal states (`{}` = class word).
pub const NORMAL_STATES: [&str; 7] = [
    "{}",
    "flawless {}",
    "perfect {}",
    "unblemished {}",
    "{} without flaw",
    "{} without defect",
    "{} without damage",
];

/// Abnormal states.
pub const ABNORMAL_STATES: [&str; 5] = [
    "damaged {}",
    "broken {}",
    "{} with flaw",
    "{} with defect",
    "{} with damage",
];

/// Sentence templates (`{}` = a state).
pub const TEMPLATES: [&str; 35] = [
    "a bad photo of a {}.",
    "a low resolution photo of the {}.",
    "a bad photo of the {}.",
    "a cropped photo of the {}.",
    "a bright photo of a {}.",
    "a dark photo of the {}.",
    "a photo of my {}.",
    "a photo of the cool {}.",
    "a close-up photo of a {}.",
    "a black and white photo of the {}.",
    "a bright photo of the {}.",
    "a cropped photo of a {}.",
    "a jpeg corrupted photo of a {}.",
    "a blurry photo of the {}.",
    "a photo of the {}.",
    "a good photo of the {}.",
    "a photo of one {}.",
    "a close-up photo of the {}.",
    "a photo of a {}.",
    "a low resolution photo of a {}.",
    "a photo of a large {}.",
    "a blurry photo of a {}.",
    "a jpeg corrupted photo of the {}.",
    "a good photo of a {}.",
    "a photo of the small {}.",
    "a photo of the large {}.",
    "a black and white photo of a {}.",
    "a dark photo of a {}.",
    "a photo of a cool {}.",
    "a photo of a small {}.",
    "there is a {} in the scene.",
    "there is the {} in the scene.",
    "this is a {} in the scene.",
    "this is the {} in the scene.",
    "this is one {} in the scene.",
];

/// Prompts encoded per batch: bounds memory at ViT-L size (128 x ~20 tokens x 3072).
const BATCH: usize = 128;

/// `template.format(state.format(word))` for every state, then every template.
pub fn sentences(states: &[&str], word: &str) -> Vec<String> {
    states
        .iter()
        .flat_map(|s| {
            let state = s.replacen("{}", word, 1);
            TEMPLATES.iter().map(move |t| t.replacen("{}", &state, 1))
        })
        .collect()
}

/// The 245 normal sentences of `word`.
pub fn normal_sentences(word: &str) -> Vec<String> {
    sentences(&NORMAL_STATES, word)
}

/// The 175 anomalous sentences of `word`.
pub fn anomaly_sentences(word: &str) -> Vec<String> {
    sentences(&ABNORMAL_STATES, word)
}

/// Mean of the L2-normalized encodings of `texts`, L2-normalized.
pub fn ensemble(
    model: &ClipText,
    tokenizer: &Tokenizer,
    texts: &[String],
) -> Result<Vec<f32>, TextError> {
    let e = model.config().projection_dim;
    let mut sum = vec![0f64; e];
    for chunk in texts.chunks(BATCH) {
        let ids = tokenizer.encode_batch(chunk)?;
        let feats =
            HostTensor::from_tensor(model.encode_host(&ids, chunk.len(), CONTEXT_LENGTH)?);
        for row in feats.as_f32().expect("f32 features").chunks(e) {
            let norm = row.iter().map(|&v| (v as f64).powi(2)).sum::<f64>().sqrt();
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += v as f64 / norm;
            }
        }
    }
    let norm = sum.iter().map(|v| v * v).sum::<f64>().sqrt();
    Ok(sum.iter().map(|v| (v / norm) as f32).collect())
}

/// The `[rows, positions]` of each batch the text tower runs for `word`'s 420 sentences, as
/// [`ensemble`] sends them: a batch runs up to its longest row's end-of-text token (14-18 of
/// the 77 positions), which is what a class word costs.
pub fn run_shapes(tokenizer: &Tokenizer, word: &str) -> Result<Vec<[usize; 2]>, TextError> {
    let mut shapes = Vec::new();
    for texts in [normal_sentences(word), anomaly_sentences(word)] {
        for chunk in texts.chunks(BATCH) {
            let ids = tokenizer.encode_batch(chunk)?;
            let len = pooled_positions(&ids, CONTEXT_LENGTH)
                .into_iter()
                .max()
                .unwrap_or(0)
                + 1;
            shapes.push([chunk.len(), len]);
        }
    }
    Ok(shapes)
}

/// The normal and anomalous ensemble features of a class word (420 sentences).
pub fn encode_class_word(
    model: &ClipText,
    tokenizer: &Tokenizer,
    word: &str,
) -> Result<TextFeatures, TextError> {
    Ok(TextFeatures {
        normal: ensemble(model, tokenizer, &normal_sentences(word))?,
        anomaly: ensemble(model, tokenizer, &anomaly_sentences(word))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_counts_and_order_match_the_reference() {
        let n = normal_sentences("metal_nut");
        let a = anomaly_sentences("metal_nut");
        assert_eq!((n.len(), a.len()), (245, 175));
        assert_eq!(n[0], "a bad photo of a metal_nut.");
        assert_eq!(n[35], "a bad photo of a flawless metal_nut.");
        assert_eq!(a[174], "this is one metal_nut with damage in the scene.");
        // A word with braces is inserted raw, as Python's str.format inserts a value.
        assert_eq!(sentences(&["{}"], "a{}b")[0], "a bad photo of a a{}b.");
    }
}
