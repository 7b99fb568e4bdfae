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
            eprintln!("error: {}", one_line(&err));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, joined by ": ", naming the file and the fix.
///
/// The library's errors carry their cause twice on purpose: in their text (`"{path}: {source}"`,
/// so that one reads whole wherever it is shown alone) and as `source()` (so that callers can
/// inspect it). anyhow's `{:#}` would print such a cause again after the text that already
/// holds it ("No such file or directory (os error 2): No such file or directory (os error 2)");
/// a cause whose text the line already holds is left out.
fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
