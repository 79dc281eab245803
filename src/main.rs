//! The `gctr` binary: parses the command line and hands it to the subcommand.

fn main() {
    std::process::exit(gctr::cli::main(std::env::args_os().skip(1)));
}
