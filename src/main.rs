//! The `api2csv` binary: parse the command line, run it, map errors to exit statuses.
#![forbid(unsafe_code)]

fn main() {
    let status = match api2csv::cli::parse(std::env::args_os().skip(1)).and_then(api2csv::cli::run) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("api2csv: {e}");
            e.exit_status()
        }
    };
    std::process::exit(status);
}
