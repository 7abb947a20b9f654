//! `fsck-blockfs`: a thin front end over the library's checker, with
//! e2fsck's options and exit codes so scripts and `fsck -t blockfs` work.

use std::io::{self, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Mutex, OnceLock};

use blockfs::check::{check, CheckOptions, ProgressFn, RepairMode, Report};
use clap::Parser;

use crate::clock;
use crate::image::lock::{open_image, Access, OpenError};
use crate::sys;

/// Exit statuses, as e2fsck's (they may be or-ed together).
const ERRORS_CORRECTED: u8 = 1;
const OPERATIONAL_ERROR: u8 = 8;
const USAGE_ERROR: u8 = 16;

/// Check a BlockFS image and repair it
///
/// The whole image is always checked (-f is accepted for e2fsck
/// compatibility). Exit status: 0 no errors, 1 errors corrected, 4 errors
/// left uncorrected (5: some of each), 8 operational error, 16 usage error.
#[derive(Parser, Debug)]
#[command(name = "fsck-blockfs", version)]
pub struct Args {
    /// Check only: open the image read-only and change nothing (the default)
    #[arg(short = 'n', conflicts_with_all = ["preen", "auto", "yes"])]
    pub no: bool,

    /// Make only safe repairs (bitmap, counters, link counts, type bytes,
    /// legacy directories), without asking
    #[arg(short = 'p', conflicts_with = "yes")]
    pub preen: bool,

    /// Same as -p
    #[arg(short = 'a', conflicts_with = "yes")]
    pub auto: bool,

    /// Repair everything, without asking
    #[arg(short = 'y')]
    pub yes: bool,

    /// Check even if the image is marked clean (always done; accepted for compatibility)
    #[arg(short = 'f')]
    pub force: bool,

    /// List every problem and print statistics
    #[arg(short = 'v')]
    pub verbose: bool,

    /// Report progress as e2fsck does: to descriptor FD (from fsck(8)) one
    /// line `PASS DONE TOTAL IMAGE` at a time, or with 0 a percentage per
    /// pass on standard output, when it is a terminal
    #[arg(short = 'C', value_name = "FD")]
    pub progress_fd: Option<i32>,

    /// The image file (or block device) to check
    pub image: PathBuf,
}

impl Args {
    fn repair_mode(&self) -> RepairMode {
        if self.yes {
            RepairMode::All
        } else if self.preen || self.auto {
            RepairMode::Safe
        } else {
            RepairMode::None
        }
    }
}

pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { USAGE_ERROR } else { 0 });
        }
    };
    ExitCode::from(run(&args))
}

fn run(args: &Args) -> u8 {
    let mode = args.repair_mode();
    let image = args.image.display();
    let access = if mode == RepairMode::None { Access::Read } else { Access::Write };
    let mut device = match open_image(&args.image, access) {
        Ok(device) => device,
        Err(OpenError::InUse) => {
            eprintln!("fsck-blockfs: {image}: image is in use (mounted or being changed); not checked");
            return OPERATIONAL_ERROR;
        }
        Err(error) => {
            eprintln!("fsck-blockfs: {image}: {error}");
            return OPERATIONAL_ERROR;
        }
    };
    let mut options = CheckOptions::new(mode);
    options.now = (mode != RepairMode::None).then(|| clock::now() as u64);
    if let Some(fd) = args.progress_fd.filter(|&fd| fd != 0 || io::stdout().is_terminal()) {
        let sink = ProgressSink { fd, image: image.to_string(), last: Mutex::new((0, u64::MAX)) };
        if PROGRESS.set(sink).is_ok() {
            options.progress = Some(ProgressFn(report_progress));
        }
    }
    let report = match check(&mut device, &options) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("fsck-blockfs: {image}: cannot check: {error}");
            return OPERATIONAL_ERROR;
        }
    };
    if args.progress_fd == Some(0) && options.progress.is_some() {
        // Clear the progress line before the report.
        print!("\r\x1b[K");
    }
    print_report(args, &report);
    report.status() as u8
}

/// Where `-C` sends progress: the checker calls a plain function.
static PROGRESS: OnceLock<ProgressSink> = OnceLock::new();

struct ProgressSink {
    fd: i32,
    image: String,
    /// The last pass and tenth of a percent told, so each is told once.
    last: Mutex<(u8, u64)>,
}

fn report_progress(pass: u8, done: u64, total: u64) {
    let Some(sink) = PROGRESS.get() else {
        return;
    };
    let permille = done.min(total) * 1000 / total.max(1);
    let mut last = sink.last.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if *last == (pass, permille) {
        return;
    }
    *last = (pass, permille);
    // Progress that cannot be shown is not worth failing the check over.
    let _ = match sink.fd {
        0 => {
            let mut out = io::stdout().lock();
            write!(out, "\r{}: pass {pass}/5: {}.{}%", sink.image, permille / 10, permille % 10)
                .and_then(|()| out.flush())
        }
        fd => sys::write_fd(fd, format!("{pass} {done} {total} {}\n", sink.image).as_bytes()),
    };
}

fn print_report(args: &Args, report: &Report) {
    let image = args.image.display();
    let mut out = std::io::stdout().lock();
    for problem in &report.problems {
        if problem.severity == blockfs::check::Severity::Note && !args.verbose {
            continue;
        }
        // A repaired problem says so itself ("[fixed]").
        let fate =
            if problem.repaired || args.repair_mode() == RepairMode::None { "" } else { " (not fixed)" };
        let _ = writeln!(out, "{image}: {}: {problem}{fate}", severity_word(problem.severity));
    }
    if report.omitted > 0 {
        let _ = writeln!(out, "{image}: ... and {} more problems", report.omitted);
    }
    let stats = &report.stats;
    let verdict = match report.status() as u8 {
        0 => "clean",
        ERRORS_CORRECTED => "errors corrected",
        _ if args.repair_mode() == RepairMode::None => "errors found (run fsck-blockfs -y to repair)",
        _ => "errors left uncorrected",
    };
    let _ = writeln!(
        out,
        "{image}: {verdict}, {}/{} files, {}/{} blocks",
        stats.inodes_used, stats.inode_count, stats.blocks_used, stats.block_count
    );
    if args.verbose {
        let _ = writeln!(
            out,
            "{:>9} regular files\n{:>9} directories\n{:>9} symbolic links\n{:>9} special files\n{:>9} reconnected to /lost+found (or /)\n{:>9} errors ({} fixed), {} warnings",
            stats.regular_files,
            stats.directories,
            stats.symlinks,
            stats.special_files,
            stats.reconnected,
            report.errors,
            report.fixed,
            report.warnings
        );
    }
}

fn severity_word(severity: blockfs::check::Severity) -> &'static str {
    match severity {
        blockfs::check::Severity::Error => "error",
        blockfs::check::Severity::Warning => "warning",
        blockfs::check::Severity::Note => "note",
    }
}
