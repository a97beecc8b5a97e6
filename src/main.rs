use std::process::ExitCode;

use hellod::config::{self, Command};

fn main() -> ExitCode {
    // SAFETY: nothing has started a thread yet.
    unsafe { hellod::tiny_http_gaps::shrink_default_thread_stack() };
    let default_workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let command = config::parse(
        std::env::args_os().skip(1),
        |name| std::env::var_os(name),
        hellod::process::host_name,
        default_workers,
    );
    match command {
        Err(error) => {
            eprintln!("hellod: {error}");
            ExitCode::from(2)
        }
        Ok(Command::Help) => {
            let default_serving = hellod::process::serving_allowed();
            let default_connections = hellod::process::connections_allowed(default_serving);
            print!(
                "{}",
                config::help_text(default_workers, default_serving, default_connections)
            );
            ExitCode::SUCCESS
        }
        Ok(Command::Version) => {
            println!("hellod {}", env!("CARGO_PKG_VERSION"));
            if !hellod::tiny_http_gaps::GUARDED {
                println!("warning: {}", hellod::tiny_http_gaps::UNGUARDED);
            }
            ExitCode::SUCCESS
        }
        Ok(Command::Healthcheck { url, listen }) => {
            match hellod::healthcheck::check(url.as_deref(), listen) {
                Ok(status_line) => {
                    println!("{status_line}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("hellod healthcheck: {error}");
                    ExitCode::FAILURE
                }
            }
        }
        Ok(Command::Serve(config)) => match hellod::server::run(config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("hellod: {error}");
                ExitCode::FAILURE
            }
        },
    }
}
