//! `ava-dino tokenize`: CLIP token ids of texts, one JSON array of 77 ids per line.

use std::process::ExitCode;

use ava_dino::text::Tokenizer;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Texts to tokenize (the reference CLIP tokenizer: lower-cased, HTML-unescaped, BPE, start and
    /// end tokens, zero padded to 77). A text needing more than 77 ids is an error.
    #[arg(required = true)]
    pub texts: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let tok = Tokenizer::new();
    // Tokenize everything first so that an over-long text prints nothing but the error.
    let rows = args
        .texts
        .iter()
        .map(|t| tok.encode(t))
        .collect::<Result<Vec<_>, _>>()?;
    for ids in rows {
        println!("{}", serde_json::to_string(&ids)?);
    }
    Ok(ExitCode::SUCCESS)
}
