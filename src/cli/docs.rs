//! Manual pages and shell completions, generated from the clap
//! definitions so that they never disagree with `--help`
//! (`supervisorctl generate-docs DIR`, hidden; packaging/deb/build.sh
//! calls it).

use std::path::Path;

use clap::CommandFactory;
use clap_complete::Shell;

/// Writes `DIR/man8/*.8` (each program and each of its subcommands) and
/// `DIR/completions/{bash,zsh,fish}/...` for the three programs.
pub fn generate(dir: &Path) -> std::io::Result<()> {
    let man = dir.join("man8");
    std::fs::create_dir_all(&man)?;
    for cmd in programs() {
        pages(cmd.disable_help_subcommand(true), &man)?;
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let out = dir.join("completions").join(shell.to_string());
        std::fs::create_dir_all(&out)?;
        for mut cmd in programs() {
            let name = cmd.get_name().to_string();
            clap_complete::generate_to(shell, &mut cmd, name, &out)?;
        }
    }
    Ok(())
}

fn programs() -> [clap::Command; 3] {
    [super::ctl::Cli::command(), super::daemon::Args::command(), super::oci::Cli::command()]
}

/// One page for `cmd` and one per visible subcommand, all in section 8
/// (system administration): `supervisorctl-status.8` and so on.
fn pages(mut cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
    cmd.build();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        pages(sub.clone(), dir)?;
    }
    clap_mangen::Man::new(cmd).section("8").generate_to(dir).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_and_completions_for_both_programs() {
        let t = tempfile::tempdir().unwrap();
        generate(t.path()).unwrap();
        let page = std::fs::read_to_string(t.path().join("man8/supervisorctl.8")).unwrap();
        assert!(page.contains(".TH supervisorctl 8"), "{}", &page[..200.min(page.len())]);
        assert!(page.contains("status"), "the page lists the verbs");
        assert!(t.path().join("man8/supervisorctl-status.8").is_file());
        let pause = std::fs::read_to_string(t.path().join("man8/supervisorctl-pause.8")).unwrap();
        assert!(pause.contains("cgroup freezer"), "{pause}");
        assert!(t.path().join("man8/supervisorctl-unpause.8").is_file());
        assert!(t.path().join("man8/supervisord.8").is_file());
        assert!(!t.path().join("man8/supervisorctl-generate-docs.8").exists(), "hidden verbs get no page");
        let bash = std::fs::read_to_string(t.path().join("completions/bash/supervisorctl.bash")).unwrap();
        assert!(bash.contains("restart"), "{bash}");
        assert!(t.path().join("completions/zsh/_supervisord").is_file());
        assert!(t.path().join("completions/fish/supervisorctl.fish").is_file());
    }
}
