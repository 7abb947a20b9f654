//! Inspects BlockFS images: info, ls, cat, stat, readlink.

fn main() -> std::process::ExitCode {
    blockfs_cli::inspect::main()
}
