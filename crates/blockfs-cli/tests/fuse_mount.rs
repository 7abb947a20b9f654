//! `blockfs mount` end to end: the real binaries, the kernel's FUSE module
//! and ordinary tools (sh, coreutils, GNU tar, gcc) working on the mount.
//! Needs /dev/fuse and fusermount3 (Debian's fuse3); without them every
//! test fails saying so. Runs as root (chown, and tar restoring owners).

mod common;
mod fuse_support;

use std::fs;
use std::path::Path;
use std::process::Command;

use blockfs_fuse::is_mounted;

use common::*;
use fuse_support::*;

/// Run on a fresh mount and on a host directory; the two must agree.
/// `$DATA` holds the inputs: `random`, `archive.tar` and `hello.c`.
const WORKLOAD: &str = r#"
cd "$MNT"
printf 'hello\n' > created
printf 'one\n' > appended
printf 'two\n' >> appended
# 5 MB reaches the double-indirect blocks.
cp "$DATA/random" big
printf 'OVERWRITE' | dd of=big bs=1 seek=4090 conv=notrunc status=none
cp big truncated && truncate -s 70000 truncated
truncate -s 3000000 sparse && printf 'end' >> sparse
printf 'old\n' > target && ln target target-link
printf 'new\n' > replacement && mv replacement target
ln created created-link
ln -s created symlink && ln -s /nowhere/at/all dangling
touch -d '2001-02-03 04:05:06' created && touch -h -d '2002-03-04 05:06:07' symlink
chmod 4711 appended && chmod 600 big
chown 1234:5678 appended && chown -h 42:43 symlink
mkdir -p deep/a/b/c/d && printf 'x' > deep/a/b/c/d/leaf
mkdir -p doomed/x/y && printf 'z' > doomed/x/y/file && ln -s ../.. doomed/x/up
rm -r doomed
mkfifo fifo
mkdir many
i=0; while [ $i -lt 1500 ]; do : > "many/file-$i"; i=$((i+1)); done
rm many/file-7 many/file-700
printf 'keep me\n' > victim
exec 3< victim
rm victim
cat <&3 > survivor
exec 3<&-
mkdir untarred && tar -xpf "$DATA/archive.tar" -C untarred
cp "$DATA/hello.c" . && gcc -O1 -o hello hello.c && ./hello > hello.out
"#;

const HELLO_C: &str = r#"#include <stdio.h>
int main(void) {
    char line[64];
    FILE *file = fopen("created", "r");
    if (!file || !fgets(line, sizeof line, file)) return 1;
    printf("read: %s", line);
    return 0;
}
"#;

/// A host tree with what archives carry: modes, owners, times, a hard
/// link, symlinks, an empty directory and a name past ustar's 100 bytes.
fn make_tree(dir: &Path) {
    fs::create_dir_all(dir).unwrap();
    let long_name = "n".repeat(150);
    sh(
        dir,
        &format!(
            r#"cd "$MNT"
            mkdir -p etc bin empty usr/share/doc
            printf 'root:x:0:0::/root:/bin/sh\n' > etc/passwd
            printf '#!/bin/sh\necho hi\n' > bin/tool && chmod 755 bin/tool
            head -c 100000 /dev/zero | tr '\0' 'a' > usr/share/doc/big
            ln bin/tool bin/tool-again
            ln -s ../etc/passwd bin/passwd-link
            printf 'long\n' > usr/{long_name}
            chown -R 1000:100 usr && chmod 2750 usr/share
            touch -d '2010-05-06 07:08:09' etc/passwd bin/tool empty usr/share/doc/big usr/{long_name}
            touch -h -d '2011-01-01 00:00:00' bin/passwd-link
            touch -d '2012-01-01 00:00:00' etc bin usr/share/doc usr/share usr ."#
        ),
    );
}

fn tar(format: &str, source: &Path, archive: &Path) {
    let output = Command::new("tar")
        .args([&format!("--format={format}"), "-cf", text(archive), "-C", text(source), "."])
        .output()
        .expect("run tar");
    assert_success(&output);
}

#[test]
fn workload_survives_unmount_and_remount() {
    require_fuse();
    let scratch = Scratch::new("fuse-workload");
    let data = scratch.path("data");
    write_file(&data.join("random"), &pattern(5_000_000));
    write_file(&data.join("hello.c"), HELLO_C.as_bytes());
    make_tree(&scratch.path("tree"));
    tar("gnu", &scratch.path("tree"), &data.join("archive.tar"));
    let image = scratch.path("image");
    mkfs_image(&image, 64);
    let workload = format!("DATA={}\n{WORKLOAD}", text(&data));

    let reference = scratch.path("reference");
    fs::create_dir(&reference).unwrap();
    sh(&reference, &workload);

    let mnt = scratch.path("mnt");
    let mounted = Mounted::new(&image, &mnt, &[]);
    assert_eq!(mounted.stdout, "[ROOTFS] BlockFS magic detected -- mounting persistent root\n");
    sh(&mnt, &workload);
    let before = snapshot(&mnt);
    let restored_times = |path: &Path| path.starts_with("untarred") || path == Path::new("created");
    assert_same(
        &comparable(&before, restored_times),
        &comparable(&snapshot(&reference), restored_times),
        "mount vs host",
    );
    assert_eq!(fs::read_to_string(mnt.join("hello.out")).unwrap(), "read: hello\n");
    assert_eq!(fs::read_to_string(mnt.join("survivor")).unwrap(), "keep me\n");
    assert_eq!(fs::read_dir(mnt.join("many")).unwrap().count(), 1498);
    mounted.unmount();

    assert!(common::mount(&image).info().was_clean, "unmount marks the image clean");
    let mounted = Mounted::new(&image, &mnt, &[]);
    assert_same(&before, &snapshot(&mnt), "before vs after remount");
    mounted.unmount();
}

#[test]
fn tar_mode_serves_the_archive_and_forgets_changes() {
    require_fuse();
    let scratch = Scratch::new("fuse-tar");
    let tree = scratch.path("tree");
    make_tree(&tree);
    let archive = scratch.path("rootfs.tar");
    tar("pax", &tree, &archive);
    let archive_bytes = fs::read(&archive).unwrap();
    let mnt = scratch.path("mnt");
    // Every time comes from the archive.
    let archived = |_: &Path| true;

    let mounted = Mounted::new(&archive, &mnt, &[]);
    assert!(mounted.stdout.contains(&format!("[ROOTFS] Loading TAR rootfs from {}...", text(&archive))));
    let original = snapshot(&mnt);
    assert_same(
        &comparable(&original, archived),
        &comparable(&snapshot(&tree), archived),
        "mount vs archived tree",
    );
    sh(
        &mnt,
        r#"cd "$MNT"
        printf 'new\n' > etc/new-file
        printf 'more\n' >> etc/passwd
        rm bin/tool
        chmod 700 usr
        mkdir -p var/log && printf 'log\n' > var/log/messages"#,
    );
    assert_eq!(fs::read_to_string(mnt.join("var/log/messages")).unwrap(), "log\n");
    mounted.unmount();

    assert_eq!(fs::read(&archive).unwrap(), archive_bytes, "the archive is never written");
    let again = Mounted::new(&archive, &mnt, &[]);
    assert_same(
        &comparable(&snapshot(&mnt), archived),
        &comparable(&original, archived),
        "remount vs first mount",
    );
    again.unmount();
}

/// Kills a foreground mount with SIGKILL and clears the dead mount, as a
/// user would after a crash.
fn kill_9(mut mount: Foreground) {
    mount.child.kill().unwrap();
    mount.child.wait().unwrap();
    detach(&mount.dir);
    wait_until("dead mount detached", || !is_mounted(&mount.dir).unwrap());
}

#[test]
fn fsynced_data_survives_kill_9() {
    require_fuse();
    let scratch = Scratch::new("fuse-fsync");
    let image = scratch.path("image");
    mkfs_image(&image, 32);
    let data = pattern(300_000);
    write_file(&scratch.path("data"), &data);
    let mnt = scratch.path("mnt");

    // No background sync: only fsync makes anything durable.
    let mount = Foreground::start(&image, &mnt, &["--writeback-secs", "0"]);
    sh(
        &mnt,
        &format!(
            r#"dd if={} of="$MNT/durable" bs=64k conv=fsync status=none
            mkdir "$MNT/dir" && printf 'named\n' > "$MNT/dir/synced" && sync "$MNT/dir/synced" "$MNT/dir""#,
            text(&scratch.path("data"))
        ),
    );
    kill_9(mount);

    assert!(!common::mount(&image).info().was_clean, "a killed mount leaves the image marked in use");
    let mounted = Mounted::new(&image, &mnt, &[]);
    assert_eq!(fs::read(mnt.join("durable")).unwrap(), data);
    assert_eq!(fs::read_to_string(mnt.join("dir/synced")).unwrap(), "named\n");
    mounted.unmount();
}

#[test]
fn background_sync_bounds_what_kill_9_loses() {
    require_fuse();
    let scratch = Scratch::new("fuse-writeback");
    let image = scratch.path("image");
    mkfs_image(&image, 32);
    let mnt = scratch.path("mnt");

    let mount = Foreground::start(&image, &mnt, &["--writeback-secs", "1"]);
    sh(&mnt, r#"printf 'never fsynced\n' > "$MNT/file" && sleep 3"#);
    kill_9(mount);

    let mounted = Mounted::new(&image, &mnt, &[]);
    assert_eq!(fs::read_to_string(mnt.join("file")).unwrap(), "never fsynced\n");
    mounted.unmount();
}

#[test]
fn df_shows_the_image_size() {
    require_fuse();
    let scratch = Scratch::new("fuse-df");
    let image = scratch.path("image");
    mkfs_image(&image, 48);
    let mnt = scratch.path("mnt");
    let mounted = Mounted::new(&image, &mnt, &[]);
    let output = Command::new("df").args(["-B1", "--output=source,size,avail"]).arg(&mnt).output().unwrap();
    assert_success(&output);
    let line = stdout(&output).lines().nth(1).expect("df line").to_owned();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields[0], "blockfs");
    assert_eq!(fields[1], (48u64 << 20).to_string(), "df: {line}");
    let avail: u64 = fields[2].parse().unwrap();
    assert!(avail > 40 << 20 && avail < 48 << 20, "df: {line}");
    let output = Command::new("stat").args(["-f", "-c", "%S %l"]).arg(&mnt).output().unwrap();
    assert_eq!(stdout(&output).trim(), "4096 255");
    mounted.unmount();
}

#[test]
fn a_second_writer_is_refused_but_readers_share() {
    require_fuse();
    let scratch = Scratch::new("fuse-lock");
    let image = scratch.path("image");
    mkfs_image(&image, 16);
    let (first, second) = (scratch.path("first"), scratch.path("second"));

    let writer = Mounted::new(&image, &first, &[]);
    for args in [&[][..], &["-o", "ro"][..]] {
        let output = mount_command(&image, &second, args);
        assert_failure(&output, &["image is in use"]);
        assert_eq!(output.status.code(), Some(3), "exit status for an image in use");
        assert!(!is_mounted(&second).unwrap());
    }
    writer.unmount();

    let reader = Mounted::new(&image, &first, &["-o", "ro"]);
    let other_reader = Mounted::new(&image, &second, &["-o", "ro"]);
    let output =
        Command::new("sh").args(["-c", "echo x > \"$MNT/file\""]).env("MNT", &first).output().unwrap();
    assert_failure(&output, &["Read-only file system"]);
    assert_failure(&mount_command(&image, &scratch.path("third"), &[]), &["image is in use"]);
    reader.unmount();
    other_reader.unmount();
}

#[test]
fn ctrl_c_unmounts_and_marks_the_image_clean() {
    require_fuse();
    let scratch = Scratch::new("fuse-sigint");
    let image = scratch.path("image");
    mkfs_image(&image, 16);
    let mnt = scratch.path("mnt");
    let mut mount = Foreground::start(&image, &mnt, &["--writeback-secs", "0"]);
    sh(&mnt, r#"printf 'unsynced\n' > "$MNT/file""#);
    let pid = mount.child.id().to_string();
    assert_success(&Command::new("kill").args(["-INT", &pid]).output().unwrap());
    let mut status = None;
    wait_until("mount process exit", || {
        status = mount.child.try_wait().unwrap();
        status.is_some()
    });
    assert!(status.unwrap().success(), "exit status {status:?}");
    assert!(!is_mounted(&mnt).unwrap());

    let fs = common::mount(&image);
    assert!(fs.info().was_clean);
    let ino = fs.resolve(b"/file", true).unwrap();
    assert_eq!(read_all(&fs, ino), b"unsynced\n");
}

/// Checks renameat2's flags: RENAME_NOREPLACE works, RENAME_EXCHANGE is
/// refused (BlockFS has no exchange), and nothing changes on failure.
const RENAME_FLAGS_C: &str = r#"#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
int main(void) {
    if (renameat2(AT_FDCWD, "a", AT_FDCWD, "b", RENAME_NOREPLACE) != -1 || errno != EEXIST) return 1;
    if (renameat2(AT_FDCWD, "a", AT_FDCWD, "b", RENAME_EXCHANGE) != -1 || errno != EINVAL) return 2;
    if (renameat2(AT_FDCWD, "a", AT_FDCWD, "c", RENAME_NOREPLACE) != 0) return 3;
    return 0;
}
"#;

#[test]
fn rename_flags_map_to_the_library() {
    require_fuse();
    let scratch = Scratch::new("fuse-rename");
    let image = scratch.path("image");
    mkfs_image(&image, 16);
    write_file(&scratch.path("rename.c"), RENAME_FLAGS_C.as_bytes());
    let mnt = scratch.path("mnt");
    let mounted = Mounted::new(&image, &mnt, &[]);
    sh(
        &mnt,
        &format!(
            r#"gcc -o {binary} {source}
            cd "$MNT" && printf 'a' > a && printf 'b' > b && {binary}"#,
            binary = text(&scratch.path("rename")),
            source = text(&scratch.path("rename.c")),
        ),
    );
    assert_eq!(fs::read(mnt.join("b")).unwrap(), b"b");
    assert_eq!(fs::read(mnt.join("c")).unwrap(), b"a");
    assert!(!mnt.join("a").exists());
    mounted.unmount();
}

#[test]
fn allow_other_lets_other_users_in_and_the_kernel_checks_permissions() {
    require_fuse();
    let scratch = Scratch::new("fuse-perms");
    let image = scratch.path("image");
    mkfs_image(&image, 16);
    let mnt = scratch.path("mnt");
    let as_user = |script: &str| {
        Command::new("setpriv")
            .args(["--reuid=1000", "--regid=1000", "--clear-groups", "sh", "-c", script])
            .env("MNT", &mnt)
            .output()
            .expect("run setpriv")
    };
    let mounted = Mounted::new(&image, &mnt, &["-o", "allow_other"]);
    sh(
        &mnt,
        r#"cd "$MNT" && printf 'public\n' > public && printf 'secret\n' > secret && chmod 600 secret
        mkdir -m 1777 shared"#,
    );
    let output = as_user(r#"cat "$MNT/public""#);
    assert_success(&output);
    assert_eq!(stdout(&output), "public\n");
    assert_failure(&as_user(r#"cat "$MNT/secret""#), &["Permission denied"]);
    assert_failure(&as_user(r#"touch "$MNT/not-mine""#), &["Permission denied"]);
    assert_success(&as_user(r#"printf 'mine\n' > "$MNT/shared/mine""#));
    let output = Command::new("stat").args(["-c", "%u:%g %a"]).arg(mnt.join("shared/mine")).output().unwrap();
    assert_eq!(stdout(&output).trim(), "1000:1000 644");
    mounted.unmount();

    // Without allow_other the kernel turns other users away at the door.
    let mounted = Mounted::new(&image, &mnt, &[]);
    assert_failure(&as_user(r#"cat "$MNT/public""#), &["Permission denied"]);
    mounted.unmount();
}

/// Permission probes for root, run on a mount and on a host directory:
/// each prints its name and "ok" or the errno, and set-ID bits after a
/// change of owner print as octal modes. The two outputs must agree.
const ROOT_PROBES: &str = r##"
import errno, os, stat, subprocess, sys
os.chdir(sys.argv[1])

def probe(name, action):
    try:
        result = action()
        print(name, "ok" if result is None else result)
    except OSError as error:
        print(name, errno.errorcode[error.errno])

def make(path, mode, content=b"#!/bin/sh\necho ran\n", owner=(0, 0)):
    with open(path, "wb") as f:
        f.write(content)
    os.chown(path, *owner)
    os.chmod(path, mode)

def mode_after(path, mode, change):
    os.chmod(path, mode)
    change()
    return oct(stat.S_IMODE(os.stat(path).st_mode))

def run(path):
    subprocess.run([path], check=True, capture_output=True)

os.mkdir("closed", 0o000)
os.mkdir("readonly", 0o555)
os.mkdir("sticky", 0o1777)
make("plain", 0o644)
make("nobody", 0o000)
make("frozen", 0o444)
make("owner-x", 0o100)
make("group-x", 0o010)
make("sticky/theirs", 0o644, owner=(1000, 1000))
make("private", 0o600, owner=(1000, 1000))
os.mkdir("setid-dir", 0o755)

probe("create in a closed directory", lambda: make("closed/file", 0o644))
probe("list a closed directory", lambda: len(os.listdir("closed")))
probe("chdir into a closed directory", lambda: os.chdir("closed") or os.chdir(".."))
probe("mkdir in a read-only directory", lambda: os.mkdir("readonly/sub"))
probe("rename out of a read-only directory", lambda: os.rename("readonly/sub", "moved"))
probe("remove another user's file from a sticky directory", lambda: os.unlink("sticky/theirs"))
probe("read a file with mode 000", lambda: len(open("nobody", "rb").read()))
probe("write a file with mode 444", lambda: open("frozen", "ab").write(b"x"))
probe("truncate a file with mode 444", lambda: os.truncate("frozen", 1))
probe("access R_OK|W_OK on mode 000", lambda: os.access("nobody", os.R_OK | os.W_OK))
probe("access X_OK on mode 644", lambda: os.access("plain", os.X_OK))
probe("access X_OK on mode 100", lambda: os.access("owner-x", os.X_OK))
probe("access X_OK on a closed directory", lambda: os.access("closed", os.X_OK))
probe("run a file with mode 644", lambda: run("./plain"))
probe("run a file with mode 000", lambda: run("./nobody"))
probe("run a file with mode 010", lambda: run("./group-x"))
probe("hard-link another user's private file", lambda: os.link("private", "private-link"))
probe("set another user's file times", lambda: os.utime("private", (1, 2)))
probe("chown a set-ID file", lambda: mode_after("plain", 0o6755, lambda: os.chown("plain", 1000, -1)))
probe("chgrp a set-ID file", lambda: mode_after("plain", 0o6755, lambda: os.chown("plain", -1, 1000)))
probe("chown a set-group-ID file the group cannot run",
      lambda: mode_after("plain", 0o2744, lambda: os.chown("plain", 0, 0)))
probe("chown to the same owner", lambda: mode_after("plain", 0o4755, lambda: os.chown("plain", 1000, 1000)))
probe("chown a set-ID directory", lambda: mode_after("setid-dir", 0o6755, lambda: os.chown("setid-dir", 1000, 1000)))
probe("chmod keeps set-ID bits", lambda: mode_after("plain", 0o6755, lambda: None))
probe("write keeps set-ID bits", lambda: mode_after("plain", 0o6755, lambda: open("plain", "ab").write(b"x")))
probe("truncate keeps set-ID bits", lambda: mode_after("plain", 0o6755, lambda: os.truncate("plain", 3)))
"##;

/// A mount made by root without allow_other serves root alone, so the
/// server skips the kernel's permission checks (`default_permissions`),
/// answers `access` itself and drops set-ID bits on a change of owner.
/// Root must see exactly what it sees on a local filesystem, and with
/// `-o default_permissions` too.
#[test]
fn root_sees_the_permissions_of_a_local_filesystem() {
    require_fuse();
    let scratch = Scratch::new("fuse-root-perms");
    let image = scratch.path("image");
    mkfs_image(&image, 16);
    let probe = |dir: &Path| {
        let output = Command::new("python3").args(["-c", ROOT_PROBES, text(dir)]).output().unwrap();
        assert_success(&output);
        stdout(&output)
    };
    let local = scratch.path("local");
    fs::create_dir(&local).unwrap();
    let expected = probe(&local);
    // The probes mean something: root is refused a few things.
    assert!(expected.contains("access X_OK on mode 644 False"), "{expected}");
    assert!(expected.contains("run a file with mode 000 EACCES"), "{expected}");
    assert!(expected.contains("chown a set-ID file 0o755"), "{expected}");
    let mnt = scratch.path("mnt");
    for options in [&[][..], &["-o", "default_permissions"]] {
        let mounted = Mounted::new(&image, &mnt, options);
        let dir = mnt.join("probes");
        fs::create_dir(&dir).unwrap();
        assert_eq!(probe(&dir), expected, "mount options {options:?}");
        fs::remove_dir_all(&dir).unwrap();
        mounted.unmount();
    }
    check_clean(&image);
}

#[test]
fn a_file_that_is_neither_image_nor_archive_is_refused() {
    require_fuse();
    let scratch = Scratch::new("fuse-neither");
    let junk = scratch.path("junk");
    write_file(&junk, &pattern(10_000));
    let mnt = scratch.path("mnt");
    let output = mount_command(&junk, &mnt, &[]);
    assert_failure(&output, &["junk", "neither a BlockFS image", "nor a TAR archive"]);
    assert!(!is_mounted(&mnt).unwrap());
}

// ---- inode lifetimes: the kernel keeps inodes past their last close ----

fn mounted_image(scratch: &Scratch) -> (std::path::PathBuf, Mounted) {
    let image = scratch.path("image");
    mkfs_image(&image, 16);
    let mnt = scratch.path("mnt");
    let mounted = Mounted::new(&image, &mnt, &[]);
    (image, mounted)
}

fn check_clean(image: &Path) {
    let output = Command::new(env!("CARGO_BIN_EXE_fsck-blockfs")).args(["-n", text(image)]).output().unwrap();
    assert_success(&output);
}

/// Free blocks and free inodes of the filesystem holding `dir`.
fn free_space(dir: &Path) -> String {
    let output = Command::new("stat").args(["-f", "-c", "%f %d"]).arg(dir).output().unwrap();
    assert_success(&output);
    stdout(&output)
}

/// Deleted files give their inodes and blocks back while the mount is up,
/// whether they were only created, opened again, or still open when
/// unlinked. The kernel opens files without asking us (`Adapter::open`),
/// so its lookup references alone keep an unlinked file alive.
#[test]
fn deleted_files_give_their_space_back_while_mounted() {
    require_fuse();
    let scratch = Scratch::new("fuse-space-back");
    let (image, mounted) = mounted_image(&scratch);
    let dir = &mounted.dir;
    let before = free_space(dir);
    let name = |i: usize| dir.join(format!("f{i}"));
    for round in 0..3u8 {
        for i in 0..200 {
            fs::write(name(i), vec![round; 5000]).unwrap();
        }
        for i in 0..200 {
            assert_eq!(fs::read(name(i)).unwrap(), vec![round; 5000]);
        }
        let mut held = fs::File::open(name(0)).unwrap();
        for i in 0..200 {
            fs::remove_file(name(i)).unwrap();
        }
        let mut content = Vec::new();
        std::io::Read::read_to_end(&mut held, &mut content).unwrap();
        assert_eq!(content, vec![round; 5000], "an unlinked open file keeps its data");
        assert_ne!(free_space(dir), before, "the open file still holds its inode");
    }
    // The kernel returns its last reference (FORGET) just after the close.
    wait_until("the deleted files' space to come back", || free_space(dir) == before);
    mounted.unmount();
    check_clean(&image);
}

#[test]
fn a_removed_working_directory_lists_as_empty() {
    require_fuse();
    let scratch = Scratch::new("fuse-removed-cwd");
    let (image, mounted) = mounted_image(&scratch);
    // The shell's working directory holds the directory's inode after
    // rmdir; a new file must not take its number, and listing it must
    // show an empty directory (as ext4 does), not an error.
    let output = sh(
        &mounted.dir,
        r#"cd "$MNT" && mkdir d && cd d && rmdir "$MNT/d" && touch "$MNT/new" && ls -la . && echo listed"#,
    );
    let listing = stdout(&output);
    assert!(listing.ends_with("listed\n"), "{listing}");
    assert!(!listing.contains("new"), "the removed directory shows the new file: {listing}");
    // Creating inside the removed directory fails as on a local filesystem.
    let create = Command::new("sh")
        .args(["-c", r#"cd "$MNT" && mkdir e && cd e && rmdir "$MNT/e" && touch inside"#])
        .env("MNT", &mounted.dir)
        .output()
        .unwrap();
    assert!(!create.status.success(), "created a file in a removed directory");
    mounted.unmount();
    check_clean(&image);
}

#[test]
fn a_stale_o_path_descriptor_never_reaches_a_new_file() {
    require_fuse();
    let scratch = Scratch::new("fuse-stale-o-path");
    let (image, mounted) = mounted_image(&scratch);
    // Reopening an O_PATH descriptor of an unlinked file through
    // /proc/self/fd must give the unlinked file's bytes, and writing
    // through it must not touch the file created after the unlink.
    let script = r#"
import os, sys
os.chdir(sys.argv[1])
with open("f", "w") as f:
    f.write("ORIGINAL\n")
fd = os.open("f", os.O_PATH)
os.unlink("f")
with open("secret", "w") as f:
    f.write("SECRET\n")
print(open("/proc/self/fd/%d" % fd).read(), end="")
with open("/proc/self/fd/%d" % fd, "w") as f:
    f.write("OVERWRITTEN\n")
print(open("secret").read(), end="")
os.close(fd)
"#;
    let output = Command::new("python3").args(["-c", script, text(&mounted.dir)]).output().unwrap();
    assert_success(&output);
    assert_eq!(stdout(&output), "ORIGINAL\nSECRET\n");
    mounted.unmount();
    check_clean(&image);
    // The unlinked file is gone for good: only `secret` is left.
    let listing =
        Command::new(env!("CARGO_BIN_EXE_blockfs")).args(["ls", text(&image), "/"]).output().unwrap();
    assert_success(&listing);
    assert_eq!(stdout(&listing).split_whitespace().collect::<Vec<_>>(), ["secret"]);
}

// ---- write-back caching: the kernel holds pages, sizes and mtimes ----

#[test]
fn write_back_caching_keeps_sizes_and_explicit_times() {
    use std::io::{Seek, SeekFrom, Write};
    use std::time::{Duration, SystemTime};

    require_fuse();
    let scratch = Scratch::new("fuse-write-back");
    let (image, mounted) = mounted_image(&scratch);
    let dir = mounted.dir.clone();
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let started = SystemTime::now() - Duration::from_secs(2);

    // Bytes still in the page cache when an explicit mtime is set: the
    // time set last must win, whenever the pages reach the image.
    let mut stamped = fs::File::create(dir.join("stamped")).unwrap();
    stamped.write_all(&[b's'; 5000]).unwrap();
    stamped.set_modified(past).unwrap();
    drop(stamped);
    // A sparse extension, then a write inside it.
    let mut sparse = fs::File::create(dir.join("sparse")).unwrap();
    sparse.set_len(100_000).unwrap();
    sparse.seek(SeekFrom::Start(50_000)).unwrap();
    sparse.write_all(b"middle").unwrap();
    drop(sparse);
    // Shrunk below cached bytes, then written past the new end.
    let mut shrunk = fs::File::create(dir.join("shrunk")).unwrap();
    shrunk.write_all(&[b'a'; 5000]).unwrap();
    shrunk.set_len(3000).unwrap();
    shrunk.seek(SeekFrom::Start(4000)).unwrap();
    shrunk.write_all(b"end").unwrap();
    drop(shrunk);
    // A plain write gets a current mtime.
    fs::write(dir.join("plain"), b"plain").unwrap();
    mounted.unmount();
    check_clean(&image);

    // What reached the image, through a fresh mount.
    let mounted = Mounted::new(&image, &scratch.path("mnt"), &["-o", "ro"]);
    let metadata = |name: &str| fs::metadata(mounted.dir.join(name)).unwrap();
    assert_eq!(metadata("stamped").len(), 5000);
    assert_eq!(metadata("stamped").modified().unwrap(), past, "the explicit mtime was lost");
    assert_eq!(metadata("sparse").len(), 100_000);
    let sparse = fs::read(mounted.dir.join("sparse")).unwrap();
    assert_eq!(&sparse[50_000..50_006], b"middle");
    assert!(sparse[..50_000].iter().chain(&sparse[50_006..]).all(|&byte| byte == 0));
    let shrunk = fs::read(mounted.dir.join("shrunk")).unwrap();
    assert_eq!(shrunk.len(), 4003);
    assert!(shrunk[..3000].iter().all(|&byte| byte == b'a'));
    assert!(shrunk[3000..4000].iter().all(|&byte| byte == 0), "bytes cut by the truncation came back");
    assert_eq!(&shrunk[4000..], b"end");
    assert!(metadata("plain").modified().unwrap() >= started);
    mounted.unmount();
}
