//! The `standin` binary: parse configuration, then serve (or `standin probe [ADDR]`, the health check).
//! Exit codes: 0 after --help/--version or a drain, 2 for bad configuration, 1 when the server cannot start
//! or a probe fails.

use std::process::ExitCode;

use standin::config::{self, Command};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some("probe") {
        let addr = (args.nth(1))
            .or_else(|| std::env::var("STANDIN_LISTEN").ok())
            .unwrap_or_else(|| config::DEFAULT_LISTEN.to_string());
        return match standin::probe::probe(&addr) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("standin probe: {e}");
                ExitCode::from(1)
            }
        };
    }
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
