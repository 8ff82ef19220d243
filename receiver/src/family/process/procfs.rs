//! Process counts by state from /proc, for `system.process.count`.

use std::path::Path;

/// Processes (thread groups) by scheduler state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessStates {
    pub running: u64,
    pub sleeping: u64,
    pub stopped: u64,
    pub defunct: u64,
}

/// The state letter of a `/proc/PID/stat` line. The command name sits in parentheses and
/// may itself contain spaces, parentheses or newlines, so the state is found after the
/// *last* `)`.
pub fn stat_state(stat: &str) -> Option<char> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_ascii_whitespace().next()?.chars().next()
}

impl ProcessStates {
    pub fn count(&mut self, state: char) {
        match state {
            'R' => self.running += 1,
            // D (uninterruptible), I (idle kernel thread), W (paging, old kernels).
            'S' | 'D' | 'I' | 'W' | 'P' => self.sleeping += 1,
            'T' | 't' => self.stopped += 1,
            'Z' | 'X' | 'x' => self.defunct += 1,
            _ => {}
        }
    }
}

/// Reads every `PROC/[pid]/stat`. A process that exits between listing and reading is
/// simply not counted.
pub fn process_states(proc_root: &Path) -> std::io::Result<ProcessStates> {
    let mut states = ProcessStates::default();
    for entry in std::fs::read_dir(proc_root)? {
        let Ok(entry) = entry else { continue };
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        if let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) {
            if let Some(s) = stat_state(&stat) {
                states.count(s);
            }
        }
    }
    Ok(states)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_is_found_after_awkward_command_names() {
        assert_eq!(stat_state("1 (systemd) S 0 1 1 0"), Some('S'));
        assert_eq!(stat_state("42 (a) b) (c) R 1 2"), Some('R'));
        assert_eq!(stat_state("7 (new\nline ) Z 1"), Some('Z'));
        assert_eq!(stat_state("9 (with space) T 1"), Some('T'));
        assert_eq!(stat_state("garbage"), None);
        assert_eq!(stat_state("3 (x)"), None);
    }

    #[test]
    fn states_map_to_semconv_buckets() {
        let mut s = ProcessStates::default();
        for c in ['R', 'S', 'D', 'I', 'T', 't', 'Z', 'X', '?'] {
            s.count(c);
        }
        assert_eq!(
            s,
            ProcessStates {
                running: 1,
                sleeping: 3,
                stopped: 2,
                defunct: 2
            }
        );
    }

    #[test]
    fn reads_a_proc_tree_and_ignores_vanished_processes() {
        let dir = std::env::temp_dir().join(format!("sonde-procfs-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for (pid, stat) in [("1", "1 (init) S 0"), ("2", "2 (x) y) R 1")] {
            std::fs::create_dir_all(dir.join(pid)).expect("mkdir");
            std::fs::write(dir.join(pid).join("stat"), stat).expect("write");
        }
        std::fs::create_dir_all(dir.join("3")).expect("mkdir"); // exited: no stat
        std::fs::create_dir_all(dir.join("self")).expect("mkdir");
        let s = process_states(&dir).expect("read");
        assert_eq!((s.running, s.sleeping), (1, 1));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
