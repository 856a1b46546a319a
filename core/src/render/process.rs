//! Which process made a run, told apart from a later process that reuses its pid: the pid,
//! the process's start time (field 22 of `/proc/PID/stat`, in clock ticks since boot) and
//! the boot ID (`/proc/sys/kernel/random/boot_id`), which a start time is relative to.

/// The identity of a process: enough to tell, later, whether that same process still runs.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessIdentity {
    /// The process ID (in the creator's pid namespace).
    pub pid: u32,
    /// When it started, in clock ticks since boot; `None` if `/proc` could not say.
    pub start_ticks: Option<u64>,
    /// The boot it started in; `None` if `/proc` could not say.
    pub boot_id: Option<String>,
}

impl ProcessIdentity {
    /// The identity of this process.
    pub fn current() -> ProcessIdentity {
        let pid = std::process::id();
        ProcessIdentity {
            pid,
            start_ticks: read_stat(pid).map(|stat| stat.start_ticks),
            boot_id: boot_id(),
        }
    }

    /// Whether the process is still running: its pid exists (and is not a zombie), with the
    /// same start time in the same boot when those are known. Unknown start time or boot
    /// (records written before they were kept): the pid existing is taken as alive, the
    /// safe answer for anyone about to remove what the process made.
    pub fn is_alive(&self) -> bool {
        if let (Some(then), Some(now)) = (&self.boot_id, boot_id())
            && *then != now
        {
            return false;
        }
        let Some(stat) = read_stat(self.pid) else {
            // No such pid; or /proc is not mounted, where nothing can be told: alive.
            return !std::path::Path::new("/proc/self/stat").exists();
        };
        if stat.zombie {
            return false;
        }
        self.start_ticks.is_none_or(|then| then == stat.start_ticks)
    }
}

/// What is read of `/proc/PID/stat`.
struct Stat {
    start_ticks: u64,
    /// State `Z` (zombie) or `X` (dead): it holds no file or lock any more.
    zombie: bool,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `pid (comm) state ppid ... starttime ...`: the command name may hold spaces and
/// parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &[u8]) -> Option<Stat> {
    let close = text.iter().rposition(|&b| b == b')')?;
    let rest = std::str::from_utf8(&text[close + 1..]).ok()?;
    let fields: Vec<&str> = rest.split_ascii_whitespace().collect();
    // fields[0] is field 3 (state); starttime is field 22.
    let state = fields.first()?;
    let start_ticks = fields.get(22 - 3)?.parse().ok()?;
    Some(Stat {
        start_ticks,
        zombie: matches!(*state, "Z" | "X" | "x"),
    })
}

fn boot_id() -> Option<String> {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let id = id.trim();
    (!id.is_empty()).then(|| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_from_the_last_parenthesis() {
        let line = b"1234 (a) b (c) S 1 1234 1234 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 98765 \
                     1000 200 18446744073709551615";
        let stat = parse_stat(line).unwrap();
        assert_eq!(stat.start_ticks, 98765);
        assert!(!stat.zombie);
        let zombie = b"7 (x) Z 1 7 7 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 42 0 0";
        assert!(parse_stat(zombie).unwrap().zombie);
        assert!(parse_stat(b"garbage").is_none());
    }

    #[test]
    fn this_process_is_alive_and_a_changed_start_time_is_not() {
        let me = ProcessIdentity::current();
        assert!(me.start_ticks.is_some());
        assert!(me.is_alive());
        let reused = ProcessIdentity {
            start_ticks: me.start_ticks.map(|t| t + 1),
            ..me.clone()
        };
        assert!(!reused.is_alive());
        let other_boot = ProcessIdentity {
            boot_id: Some("not-this-boot".into()),
            ..me.clone()
        };
        assert!(!other_boot.is_alive());
        let unknown = ProcessIdentity {
            start_ticks: None,
            boot_id: None,
            ..me
        };
        assert!(unknown.is_alive());
    }
}
