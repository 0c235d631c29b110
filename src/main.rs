//! The `keyflip` binary: for now it prints its version and usage.

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version" | "-V" | "version") => {
            println!("keyflip {}", keyflip::VERSION);
            ExitCode::SUCCESS
        }
        None | Some("--help" | "-h" | "help") => {
            print!("{}", keyflip::usage());
            ExitCode::SUCCESS
        }
        Some(other) => {
            eprint!("keyflip: unknown command '{other}'\n\n{}", keyflip::usage());
            ExitCode::from(2)
        }
    }
}
