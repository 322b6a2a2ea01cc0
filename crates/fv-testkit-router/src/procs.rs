//! Finding the processes a test started, by a marker in their environment.

/// Live processes (zombies excluded) whose environment has `name=value`: how tests find the
/// worker processes a server started (give the server a unique value; its children inherit
/// it). Linux `/proc` only; empty elsewhere.
pub fn processes_with_env(name: &str, value: &str) -> Vec<u32> {
    let needle = format!("{name}={value}");
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // A process that exited meanwhile has no environ left to read.
            let environ = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
            let marked = environ.split(|&b| b == 0).any(|v| v == needle.as_bytes());
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // The state letter follows the parenthesised command name.
            let state = stat
                .rsplit_once(") ")
                .and_then(|(_, rest)| rest.chars().next());
            marked && !matches!(state, Some('Z' | 'X') | None)
        })
        .collect()
}
