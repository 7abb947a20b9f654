//! Checks and repairs a BlockFS image (also installed as `fsck.blockfs`).

fn main() -> std::process::ExitCode {
    blockfs_cli::fsck::main()
}
