//! Man pages and shell completions, generated from the clap definitions
//! so they never drift from the tools: one page for each tool and for
//! each `blockfs` subcommand (`blockfs-ls(8)`, ...), and bash, zsh and
//! fish completions for each tool and its `mkfs.blockfs`/`fsck.blockfs`
//! names. `scripts/install.sh` runs the `blockfs-docs` binary to write
//! them.

use std::fs::{self, File};
use std::io;
use std::path::Path;

use clap::{Command, CommandFactory};
use clap_complete::Shell;
use clap_mangen::Man;

/// Each tool's command line, under the names it is installed as.
fn tools() -> [(&'static [&'static str], Command); 3] {
    [
        (&["mkfs-blockfs", "mkfs.blockfs"], crate::mkfs::Args::command()),
        (&["fsck-blockfs", "fsck.blockfs"], crate::fsck::Args::command()),
        (&["blockfs"], crate::blockfs::Cli::command()),
    ]
}

/// Writes `NAME.8` pages into `dir` (a tool's other name gets the same
/// page under that name).
pub fn write_man_pages(dir: &Path) -> io::Result<()> {
    fs::create_dir_all(dir)?;
    let page = |command: Command| -> io::Result<()> {
        let name = command.get_name().to_owned();
        Man::new(command).section("8").render(&mut File::create(dir.join(format!("{name}.8")))?)
    };
    for (names, command) in tools() {
        for name in names {
            page(command.clone().name(*name))?;
        }
        for sub in command.get_subcommands().filter(|sub| !sub.is_hide_set()) {
            // Named blockfs-ls(8), as git-log(1); used as `blockfs ls`.
            let usage = format!("{} {}", names[0], sub.get_name());
            page(sub.clone().name(format!("{}-{}", names[0], sub.get_name())).bin_name(usage))?;
        }
    }
    Ok(())
}

/// Writes completions in each shell's layout below `dir`:
/// `bash-completion/completions/NAME`, `zsh/site-functions/_NAME`,
/// `fish/vendor_completions.d/NAME.fish` (the paths under share/).
pub fn write_completions(dir: &Path) -> io::Result<()> {
    for (names, mut command) in tools() {
        for name in names {
            for (shell, file) in [
                (Shell::Bash, format!("bash-completion/completions/{name}")),
                (Shell::Zsh, format!("zsh/site-functions/_{name}")),
                (Shell::Fish, format!("fish/vendor_completions.d/{name}.fish")),
            ] {
                let path = dir.join(file);
                fs::create_dir_all(path.parent().expect("has a parent"))?;
                clap_complete::generate(shell, &mut command, *name, &mut File::create(&path)?);
            }
        }
    }
    Ok(())
}
