//! How busy the machine was with other work while a phase ran: the bench
//! shares its 2 cores with whatever else runs, and says so.

use std::time::Instant;

/// CPU counters at one moment.
#[derive(Debug, Clone, Copy)]
pub struct CpuSnap {
    /// All CPUs' busy ticks (user, nice, system, irq, softirq, steal).
    busy: u64,
    /// All CPUs' ticks.
    total: u64,
    /// This process's and its reaped children's ticks.
    ours: u64,
    at: Instant,
}

pub fn snap() -> CpuSnap {
    let (busy, total) = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|s| {
            let line = s.lines().next()?.to_string();
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .filter_map(|x| x.parse().ok())
                .collect();
            // user nice system idle iowait irq softirq steal ...
            let get = |i: usize| v.get(i).copied().unwrap_or(0);
            let busy = get(0) + get(1) + get(2) + get(5) + get(6) + get(7);
            let total = busy + get(3) + get(4);
            Some((busy, total))
        })
        .unwrap_or((0, 0));
    let ours = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            let after = &s[s.rfind(')')? + 1..];
            let f: Vec<u64> = after
                .split_whitespace()
                .map(|x| x.parse().unwrap_or(0))
                .collect();
            // Fields 14-17 of stat: utime stime cutime cstime.
            Some(f.get(11)? + f.get(12)? + f.get(13)? + f.get(14)?)
        })
        .unwrap_or(0);
    CpuSnap {
        busy,
        total,
        ours,
        at: Instant::now(),
    }
}

/// Cores' worth of CPU that other processes used between `a` and `b`
/// (children must have been reaped by `b` to count as ours).
pub fn other_cores(a: &CpuSnap, b: &CpuSnap) -> f64 {
    let total = b.total.saturating_sub(a.total);
    if total == 0 {
        return 0.0;
    }
    let busy = b.busy.saturating_sub(a.busy);
    let ours = b.ours.saturating_sub(a.ours);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1) as f64;
    (busy.saturating_sub(ours) as f64 / total as f64 * cores).max(0.0)
}

/// Seconds since `a`.
pub fn seconds(a: &CpuSnap) -> f64 {
    a.at.elapsed().as_secs_f64()
}
