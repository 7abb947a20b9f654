//! Writes the man pages and shell completions for `scripts/install.sh`:
//! `blockfs-docs MANDIR SHAREDIR` (pages into MANDIR/man8, completions
//! below SHAREDIR).

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [man, share] = &args[..] else {
        eprintln!("usage: blockfs-docs MANDIR SHAREDIR");
        return ExitCode::from(2);
    };
    let written = blockfs_cli::docs::write_man_pages(&man.join("man8"))
        .and_then(|()| blockfs_cli::docs::write_completions(share));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("blockfs-docs: {error}");
            ExitCode::FAILURE
        }
    }
}
