//! The `api2csv` binary: run the command line, map a failure to its exit status.
#![forbid(unsafe_code)]

fn main() {
    let status = match api2csv::cli::run(std::env::args_os().skip(1)) {
        Ok(()) => 0,
        Err(failure) => {
            api2csv::term::logging::init(api2csv::term::logging::Verbosity::Quiet);
            log::error!("{}", failure.error);
            failure.status()
        }
    };
    std::process::exit(status);
}
