//! Looks inside BlockFS images, copies files in and out, changes them, mounts them.

fn main() -> std::process::ExitCode {
    blockfs_cli::blockfs::main()
}
