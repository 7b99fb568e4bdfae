//! `ava-dino`: the command-line front of the harness. One module per subcommand in `cli/`.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run() {
        Ok(code) => code,
        Err(err) => {
            // One line: the context chain joined by ": ", naming the file and the fix.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
