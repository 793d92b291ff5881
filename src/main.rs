//! The `api2csv` binary: run the command line, map its outcome to the exit status.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    match api2csv::cli::run(std::env::args_os().skip(1)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            api2csv::term::logging::init(api2csv::term::logging::Verbosity::Quiet);
            log::error!("{}", failure.error);
            // The one mapping of an outcome to a status (see `Failure::status`): 1, 2,
            // 130 or 143, all within a byte.
            ExitCode::from(u8::try_from(failure.status()).unwrap_or(1))
        }
    }
}
