//! Creates a BlockFS image, optionally populated from a host directory.

fn main() -> std::process::ExitCode {
    blockfs_cli::mkfs::main()
}
