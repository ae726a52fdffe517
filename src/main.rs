//! The `standin` binary: parse configuration, then serve. Exit codes: 0 after --help/--version,
//! 2 for bad configuration, 1 when the server cannot start.

use std::process::ExitCode;

use standin::config::{self, Command};

fn main() -> ExitCode {
    let command = match config::parse(std::env::args().skip(1), |name| std::env::var(name).ok()) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("standin: {e}");
            return ExitCode::from(2);
        }
    };
    match command {
        Command::Help => print!("{}", config::help()),
        Command::Version => println!("standin {}", env!("CARGO_PKG_VERSION")),
        Command::Run(cfg) => {
            if let Err(e) = standin::run(&cfg) {
                eprintln!("standin: cannot serve on {}: {e}", cfg.listen);
                return ExitCode::from(1);
            }
        }
    }
    ExitCode::SUCCESS
}
