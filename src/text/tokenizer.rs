//! The CLIP byte-level BPE tokenizer, as the reference (`CLIP/tokenizer.py`, = OpenAI's and
//! open_clip's `SimpleTokenizer` + `tokenize(texts, 77)`):
//!
//! 1. clean: HTML-unescape twice, strip, collapse whitespace runs to one space, lower-case
//!    (ftfy's `fix_text` is left out: docs/DEVIATIONS.md);
//! 2. split with the CLIP pattern (special tokens, English contractions, letter runs, single
//!    digits, runs of other non-space characters);
//! 3. map each piece's UTF-8 bytes to byte symbols, mark the last with `</w>`, and apply the 48,894
//!    merges lowest rank first (all non-overlapping occurrences, left to right);
//! 4. `[49406] + ids + [49407]`, zero padded to 77; longer is an error, never a truncation.
//!
//! The vocabulary (OpenAI CLIP `bpe_simple_vocab_16e6.txt.gz`, MIT, see NOTICE) is compiled into the
//! binary and decoded once, on first use.

use std::collections::HashMap;
use std::io::Read;
use std::sync::{Mutex, OnceLock};

use regex::Regex;

use super::TextError;

/// Token context of every CLIP model.
pub const CONTEXT_LENGTH: usize = 77;
/// `<|startoftext|>`.
pub const START_OF_TEXT: u32 = 49406;
/// `<|endoftext|>`: the largest id, so the arg-max pooling finds it.
pub const END_OF_TEXT: u32 = 49407;
/// Ids in the standard vocabulary.
pub const VOCAB_SIZE: usize = 49408;

static BPE_GZ: &[u8] = include_bytes!("bpe_simple_vocab_16e6.txt.gz");
/// Merge lines used by the reference: file lines 1..=48894 (49152 - 256 - 2 of them).
const MERGES: usize = 49152 - 256 - 2;

const PATTERN: &str =
    r"(?i)<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|\p{L}+|\p{N}|[^\s\p{L}\p{N}]+";

/// The printable bytes that keep their own code point in the byte-to-unicode table.
fn printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// Decoded vocabulary tables, shared by every [`Tokenizer`].
struct Tables {
    /// Byte value -> id of its symbol (0..256, in byte-to-unicode table order).
    byte_id: [u32; 256],
    /// (left id, right id) -> merge rank; the merged symbol's id is 512 + rank.
    ranks: HashMap<(u32, u32), u32>,
    /// Vocabulary strings by id (for decoding and checks).
    vocab: Vec<String>,
    pattern: Regex,
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(build_tables)
}

fn build_tables() -> Tables {
    // The table order: printable bytes in byte order, then the others mapped to U+0100 + n.
    let mut order: Vec<u8> = (0..=255u8).filter(|&b| printable(b)).collect();
    order.extend((0..=255u8).filter(|&b| !printable(b)));
    let mut byte_id = [0u32; 256];
    let mut vocab = Vec::with_capacity(VOCAB_SIZE);
    let mut n = 0;
    for (id, &b) in order.iter().enumerate() {
        byte_id[b as usize] = id as u32;
        let c = if printable(b) {
            char::from(b)
        } else {
            n += 1;
            char::from_u32(0x100 + n - 1).unwrap()
        };
        vocab.push(c.to_string());
    }
    for i in 0..256 {
        let with_end = format!("{}</w>", vocab[i]);
        vocab.push(with_end);
    }
    let mut text = String::new();
    flate2::read::GzDecoder::new(BPE_GZ)
        .read_to_string(&mut text)
        .expect("the embedded BPE vocabulary is a valid gzip of UTF-8 text");
    let mut id_of: HashMap<String, u32> = vocab
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), i as u32))
        .collect();
    let mut ranks = HashMap::with_capacity(MERGES);
    for (rank, line) in text.split('\n').skip(1).take(MERGES).enumerate() {
        let (a, b) = line.split_once(' ').expect("merge lines are `left right`");
        let pair = (id_of[a], id_of[b]);
        let merged = format!("{a}{b}");
        id_of.insert(merged.clone(), (512 + rank) as u32);
        vocab.push(merged);
        ranks.insert(pair, rank as u32);
    }
    vocab.push("<|startoftext|>".into());
    vocab.push("<|endoftext|>".into());
    Tables {
        byte_id,
        ranks,
        vocab,
        pattern: Regex::new(PATTERN).expect("valid CLIP split pattern"),
    }
}

/// Python's `str.isspace` (what `str.strip()` uses): Unicode White_Space plus the ASCII
/// information separators U+001C..U+001F, which the `regex` module's `\s` does not include.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// The reference clean-up without ftfy: `html.unescape` twice, `strip()`, runs of `\s` (Unicode
/// White_Space) to one space, `strip()`, `lower()`.
pub fn clean(text: &str) -> String {
    let once = super::html::unescape(text);
    let twice = super::html::unescape(&once);
    let mut out = String::with_capacity(twice.len());
    let mut in_space = false;
    for c in twice.trim_matches(is_py_space).chars() {
        if c.is_whitespace() {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    out.trim_matches(is_py_space).to_lowercase()
}

/// The CLIP tokenizer. Cheap to create: the tables are shared; each instance keeps its own cache of
/// already-merged pieces.
#[derive(Default)]
pub struct Tokenizer {
    cache: Mutex<HashMap<String, Vec<u32>>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokenizer(CLIP BPE 49408)")
    }
}

impl Tokenizer {
    pub fn new() -> Self {
        Self::default()
    }

    /// BPE ids of `text` without start/end tokens or padding.
    pub fn bpe_ids(&self, text: &str) -> Vec<u32> {
        let t = tables();
        let cleaned = clean(text);
        let mut ids = Vec::new();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        for piece in t.pattern.find_iter(&cleaned).map(|m| m.as_str()) {
            match piece {
                "<|startoftext|>" => ids.push(START_OF_TEXT),
                "<|endoftext|>" => ids.push(END_OF_TEXT),
                _ => {
                    if let Some(hit) = cache.get(piece) {
                        ids.extend_from_slice(hit);
                    } else {
                        let merged = bpe(t, piece.as_bytes());
                        ids.extend_from_slice(&merged);
                        cache.insert(piece.to_string(), merged);
                    }
                }
            }
        }
        ids
    }

    /// `[START] + ids + [END]` zero padded to 77, as the reference `tokenize(text)`; a text that
    /// needs more than 77 ids is [`TextError::TooLong`].
    pub fn encode(&self, text: &str) -> Result<Vec<i64>, TextError> {
        let bpe = self.bpe_ids(text);
        let len = bpe.len() + 2;
        if len > CONTEXT_LENGTH {
            let shown: String = text.chars().take(40).collect();
            let shown = if shown.len() < text.len() {
                format!("{shown}...")
            } else {
                shown
            };
            return Err(TextError::TooLong {
                text: shown,
                len,
                max: CONTEXT_LENGTH,
            });
        }
        let mut ids = Vec::with_capacity(CONTEXT_LENGTH);
        ids.push(START_OF_TEXT as i64);
        ids.extend(bpe.iter().map(|&i| i as i64));
        ids.push(END_OF_TEXT as i64);
        ids.resize(CONTEXT_LENGTH, 0);
        Ok(ids)
    }

    /// Row-major [texts.len(), 77] ids of several texts.
    pub fn encode_batch<S: AsRef<str>>(&self, texts: &[S]) -> Result<Vec<i64>, TextError> {
        let mut out = Vec::with_capacity(texts.len() * CONTEXT_LENGTH);
        for t in texts {
            out.extend(self.encode(t.as_ref())?);
        }
        Ok(out)
    }

    /// The text of `ids` (padding and special tokens dropped, `</w>` as a space), for logs.
    pub fn decode(&self, ids: &[i64]) -> String {
        let t = tables();
        let mut bytes = Vec::new();
        let mut unicode_to_byte = [0u8; 512];
        for b in 0..=255u8 {
            let id = t.byte_id[b as usize] as usize;
            let c = t.vocab[id].chars().next().unwrap() as usize;
            if c < 512 {
                unicode_to_byte[c] = b;
            }
        }
        for &id in ids.iter().filter(|&&i| i > 0 && (i as u32) < START_OF_TEXT) {
            let s = &t.vocab[id as usize];
            let (body, end) = match s.strip_suffix("</w>") {
                Some(b) => (b, true),
                None => (s.as_str(), false),
            };
            bytes.extend(body.chars().map(|c| unicode_to_byte[c as usize]));
            if end {
                bytes.push(b' ');
            }
        }
        String::from_utf8_lossy(&bytes).trim_end().to_string()
    }
}

/// Byte-pair merges of one piece (its UTF-8 bytes), lowest rank first.
fn bpe(t: &Tables, bytes: &[u8]) -> Vec<u32> {
    let mut word: Vec<u32> = bytes.iter().map(|&b| t.byte_id[b as usize]).collect();
    if let Some(last) = word.last_mut() {
        *last += 256; // the `</w>` variant of the last symbol
    }
    while word.len() > 1 {
        let best = word
            .windows(2)
            .filter_map(|p| t.ranks.get(&(p[0], p[1])).map(|&r| (r, p[0], p[1])))
            .min();
        let Some((rank, a, b)) = best else { break };
        let merged = 512 + rank;
        let mut next = Vec::with_capacity(word.len());
        let mut i = 0;
        while i < word.len() {
            if i + 1 < word.len() && word[i] == a && word[i + 1] == b {
                next.push(merged);
                i += 2;
            } else {
                next.push(word[i]);
                i += 1;
            }
        }
        word = next;
    }
    word
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vocabulary_is_the_standard_one_and_ids_are_unique() {
        let t = tables();
        assert_eq!(t.vocab.len(), VOCAB_SIZE);
        assert_eq!(t.vocab[START_OF_TEXT as usize], "<|startoftext|>");
        assert_eq!(t.ranks.len(), MERGES, "merge pairs must be distinct");
        // Merging on ids equals the reference's merging on strings only if no string repeats.
        let unique: std::collections::HashSet<&String> = t.vocab.iter().collect();
        assert_eq!(unique.len(), VOCAB_SIZE);
    }

    #[test]
    fn known_ids_and_round_trip() {
        let tok = Tokenizer::new();
        // open_clip: tokenize("a photo of a bottle.")
        let ids = tok.encode("a photo of a bottle.").unwrap();
        assert_eq!(&ids[..8], &[49406, 320, 1125, 539, 320, 5392, 269, 49407]);
        assert!(ids[8..].iter().all(|&i| i == 0) && ids.len() == 77);
        assert_eq!(tok.decode(&ids), "a photo of a bottle .");
    }

    #[test]
    fn too_long_is_an_error() {
        let tok = Tokenizer::new();
        assert!(tok.encode(&["word"; 75].join(" ")).is_ok());
        let err = tok.encode(&["word"; 76].join(" ")).unwrap_err().to_string();
        assert!(err.contains("78 tokens") && err.contains("77"), "{err}");
    }
}
