//! Process-wide settings and readings.

/// Raises the soft open-files limit to the hard one, as Go does at start: every connection costs
/// a descriptor, a served one three.
#[cfg(unix)]
pub fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read or write the one struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[cfg(not(unix))]
pub fn raise_open_files_limit() {}

/// The machine's host name (in a container, the container's or the pod's), for `{hostname}`:
/// the kernel's node name, which /proc/sys/kernel/hostname also shows. Bytes that are not UTF-8
/// come out as U+FFFD, for the configuration to refuse by name.
#[cfg(unix)]
pub fn host_name() -> Option<String> {
    let mut names = std::mem::MaybeUninit::<libc::utsname>::uninit();
    // SAFETY: uname fills the whole struct on success, each field a NUL-terminated string.
    if unsafe { libc::uname(names.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: uname succeeded, and on success it has written the whole struct.
    let names = unsafe { names.assume_init() };
    // The kernel ends the name with a NUL within the field.
    let node: Vec<u8> = (names.nodename.iter().map(|&c| c as u8))
        .take_while(|&byte| byte != 0)
        .collect();
    Some(String::from_utf8_lossy(&node).into_owned())
}

/// The computer's name, as Windows gives every process in COMPUTERNAME (a container's, in one):
/// no call into the system needed.
#[cfg(windows)]
pub fn host_name() -> Option<String> {
    std::env::var("COMPUTERNAME").ok()
}

#[cfg(not(any(unix, windows)))]
pub fn host_name() -> Option<String> {
    None
}

/// Resident memory in KiB, from `/proc/self/status` where there is one.
pub fn resident_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// What a connection waiting in hellod's waiting room costs as a cgroup counts it: its socket
/// (about 1.5 KiB of kernel memory while idle), its epoll entry and hellod's record of it, with
/// some in hand for the socket buffers of a request arriving.
pub const WAITING_MEMORY: u64 = 4 * 1024;
/// What a connection in tiny_http's hands costs besides: its pool thread (kernel stack and task,
/// page tables, the pages of its stack and heap it touches) and two more descriptors.
/// tests/docker.sh measured 37 KiB for a connection stalled in its head and 41 KiB for a busy
/// keep-alive one (Linux 6.18, cgroup v1, x86_64); 48 KiB keeps some 15 % in hand.
pub const SERVED_MEMORY: u64 = 48 * 1024;
/// The share of a memory limit that served connections' threads may take. A sixteenth, not an
/// eighth: tiny_http's pool starts a thread whenever none is idle, and a thread that has just
/// given its connection back is not idle yet; in a burst of give-backs the pool grows past the
/// slots by how many such threads are still to be scheduled, which grows with the slots (on 2
/// cores, with two busy loops beside, 10,000 GETs at once: 225-279 threads for 170 slots,
/// 92-108 for 85).
pub const SERVING_SHARE: u64 = 16;
/// Connections served at once where no limit says fewer: enough for every connection of a busy
/// benchmark to keep its thread; more wait their turn.
pub const DEFAULT_MAX_SERVING: usize = 1024;
/// Memory kept for the process at rest, its workers and spare threads.
pub const BASE_MEMORY: u64 = 4 * 1024 * 1024;
/// The share of a memory limit that the request heads hellod and tiny_http hold may take,
/// together; what tiny_http holds of a head costs up to twice its size (a line buffer grown by
/// doubling, then the header strings parsed from it; tests/docker.sh measures 69 KiB for 60,000
/// bytes of a line).
pub const HEAD_SHARE: u64 = 16;
pub const HEAD_COST: u64 = 2;
/// What connections leave of a memory limit for request heads, `1 / HEAD_RESERVE_SHARE` of it:
/// the share heads may take times what holding them costs.
pub const HEAD_RESERVE_SHARE: u64 = HEAD_SHARE / HEAD_COST;
const _: () = assert!(HEAD_SHARE.is_multiple_of(HEAD_COST));
/// Without a memory limit.
pub const DEFAULT_HEAD_BUDGET: u64 = 64 * 1024 * 1024;
/// Descriptors and threads kept for everything but connections.
const BASE_DESCRIPTORS: u64 = 32;
const BASE_TASKS: u64 = 32;

/// As many connections in tiny_http's hands at once as the process's limits allow: a sixteenth of
/// the memory limit (cgroup) at a thread each, the tasks limit, three descriptors each, and at
/// most [`DEFAULT_MAX_SERVING`].
pub fn serving_allowed() -> usize {
    let by_memory = memory_limit().map(|bytes| bytes / SERVING_SHARE / SERVED_MEMORY);
    let by_tasks =
        cgroup_limit("pids.max", "pids", "pids.max").map(|tasks| tasks.saturating_sub(BASE_TASKS));
    let by_descriptors = open_files_limit().map(|files| files.saturating_sub(BASE_DESCRIPTORS) / 3);
    [by_memory, by_tasks, by_descriptors]
        .into_iter()
        .flatten()
        .fold(DEFAULT_MAX_SERVING as u64, u64::min)
        .max(1) as usize
}

/// As many connections open at once as the process's limits allow, `serving` of them served:
/// memory (its cgroup's, less what heads and served connections may take) at
/// [`WAITING_MEMORY`] each, and open files (one descriptor a waiting connection, three a served
/// one), whichever allows the fewest.
pub fn connections_allowed(serving: usize) -> usize {
    let serving = serving as u64;
    let by_memory = memory_limit().map(|bytes| {
        let kept = BASE_MEMORY + HEAD_COST * (bytes / HEAD_SHARE) + serving * SERVED_MEMORY;
        bytes.saturating_sub(kept) / WAITING_MEMORY
    });
    let by_descriptors =
        open_files_limit().map(|files| files.saturating_sub(BASE_DESCRIPTORS + 2 * serving));
    [by_memory, by_descriptors]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(10_000)
        .clamp(1, 1_000_000) as usize
}

/// Bytes of unfinished request heads that all connections together may hold: a sixteenth of
/// the memory limit, but room for four heads of `max_head` at least.
pub fn head_budget(max_head: usize) -> usize {
    let budget = memory_limit().map_or(DEFAULT_HEAD_BUDGET, |bytes| bytes / HEAD_SHARE);
    (budget as usize).max(4 * max_head)
}

/// The memory limit of the process's cgroup, or of any above it, if there is one.
pub fn memory_limit() -> Option<u64> {
    cgroup_limit("memory.max", "memory", "memory.limit_in_bytes")
}

#[cfg(unix)]
fn open_files_limit() -> Option<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the one struct passed.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } == 0)
        .then_some(limit.rlim_cur)
        .filter(|&files| files != libc::RLIM_INFINITY)
}

#[cfg(not(unix))]
fn open_files_limit() -> Option<u64> {
    None
}

/// The lowest limit in `v2_file` (cgroup v2) or `v1_file` of the `v1_controller` hierarchy, read
/// at the cgroup mount's root (a container's own cgroup) and along the process's cgroup path up
/// to the root (a systemd unit's, on a host). "max" and v1's huge "unlimited" count as none.
fn cgroup_limit(v2_file: &str, v1_controller: &str, v1_file: &str) -> Option<u64> {
    const UNLIMITED: u64 = 1 << 60;
    let memberships = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let mut places = vec![
        format!("/sys/fs/cgroup/{v2_file}"),
        format!("/sys/fs/cgroup/{v1_controller}/{v1_file}"),
    ];
    for line in memberships.lines() {
        let mut fields = line.splitn(3, ':').skip(1);
        let (Some(controllers), Some(mut path)) = (fields.next(), fields.next()) else {
            continue;
        };
        let (root, file) = if controllers.is_empty() {
            ("/sys/fs/cgroup".to_owned(), v2_file)
        } else if controllers.split(',').any(|c| c == v1_controller) {
            (format!("/sys/fs/cgroup/{v1_controller}"), v1_file)
        } else {
            continue;
        };
        while let Some((parent, _)) = path.rsplit_once('/') {
            places.push(format!("{root}{path}/{file}"));
            path = parent;
        }
    }
    places
        .iter()
        .filter_map(|place| {
            std::fs::read_to_string(place)
                .ok()?
                .trim()
                .parse::<u64>()
                .ok()
        })
        .filter(|&limit| limit < UNLIMITED)
        .min()
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #[test]
    fn host_name_is_the_kernels() {
        let proc = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(super::host_name().as_deref(), Some(proc.trim_end()));
    }
}
