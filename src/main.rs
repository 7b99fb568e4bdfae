//! `ava-dino`: the command-line front of the harness. One module per subcommand in `cli/`.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // The kernels' choice is read once per process (`Kernels::configured`); a bad value is
    // reported here, before any command runs, not as a panic in the middle of one.
    if let Err(err) = ava_dino::backbone::Kernels::from_env() {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    match cli::run() {
        Ok(code) => code,
        Err(err) => {
            // One line: the context chain joined by ": ", naming the file and the fix.
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
