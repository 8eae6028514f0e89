//! Measurement helpers for the load generator: latency percentiles, and the CPU time and
//! memory of processes read from `/proc` (Linux). Pure except for the `/proc` reads.

use serde::Serialize;

/// Latency percentiles in milliseconds.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub p999: f64,
    pub max: f64,
    pub samples: usize,
}

impl Percentiles {
    /// From latencies in microseconds (sorted in place).
    pub fn from_micros(samples: &mut [u32]) -> Self {
        if samples.is_empty() {
            return Percentiles::default();
        }
        samples.sort_unstable();
        let at = |q: f64| {
            // Nearest-rank: the smallest value with at least q of the samples at or below it.
            let rank = ((q * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
            f64::from(samples[rank - 1]) / 1000.0
        };
        Percentiles {
            p50: at(0.50),
            p90: at(0.90),
            p99: at(0.99),
            p999: at(0.999),
            max: f64::from(samples[samples.len() - 1]) / 1000.0,
            samples: samples.len(),
        }
    }
}

/// CPU time (user + system) of a process, in clock ticks, from `/proc/<pid>/stat`.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat)
}

/// The command name may contain spaces and parentheses, so fields are counted after the
/// last `)`: utime and stime are fields 14 and 15 of the line.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Resident memory of a process in KiB, from `/proc/<pid>/status`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Clock ticks per second for `/proc` CPU times (USER_HZ, 100 on Linux).
pub const TICKS_PER_SEC: f64 = 100.0;

/// CPU use of a process over a window, as a percentage of one core.
#[derive(Debug, Clone, Copy)]
pub struct CpuMeter {
    pid: u32,
    start: Option<u64>,
    at: std::time::Instant,
}

impl CpuMeter {
    pub fn start(pid: u32) -> Self {
        CpuMeter {
            pid,
            start: cpu_ticks(pid),
            at: std::time::Instant::now(),
        }
    }

    /// CPU seconds used since `start`, and the seconds elapsed; `None` if `/proc` could not
    /// be read.
    pub fn used(&self) -> Option<CpuUse> {
        let ticks = cpu_ticks(self.pid)?.checked_sub(self.start?)?;
        Some(CpuUse {
            cpu_s: ticks as f64 / TICKS_PER_SEC,
            window_s: self.at.elapsed().as_secs_f64(),
        })
    }

    /// Percent of one core used since `start`; `None` if `/proc` could not be read.
    pub fn percent(&self) -> Option<f64> {
        self.used()?.percent()
    }
}

/// CPU time used by a process over a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CpuUse {
    /// User + system CPU time, in seconds (10 ms resolution).
    pub cpu_s: f64,
    /// The window's length, in seconds.
    pub window_s: f64,
}

impl CpuUse {
    /// Percent of one core.
    pub fn percent(self) -> Option<f64> {
        (self.window_s > 0.0).then(|| self.cpu_s / self.window_s * 100.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut v: Vec<u32> = (1..=1000).map(|i| i * 1000).collect();
        let p = Percentiles::from_micros(&mut v);
        assert_eq!(p.p50, 500.0);
        assert_eq!(p.p90, 900.0);
        assert_eq!(p.p99, 990.0);
        assert_eq!(p.p999, 999.0);
        assert_eq!(p.max, 1000.0);
        assert_eq!(p.samples, 1000);
        assert_eq!(Percentiles::from_micros(&mut []), Percentiles::default());
        assert_eq!(Percentiles::from_micros(&mut [7000]).p999, 7.0);
    }

    #[test]
    fn cpu_ticks_survive_odd_command_names() {
        let line = "123 (my (weird) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 0";
        assert_eq!(parse_cpu_ticks(line), Some(300));
    }

    #[test]
    fn cpu_use_is_a_share_of_one_core() {
        let u = CpuUse {
            cpu_s: 0.5,
            window_s: 2.0,
        };
        assert_eq!(u.percent(), Some(25.0));
        let empty = CpuUse {
            cpu_s: 0.0,
            window_s: 0.0,
        };
        assert_eq!(empty.percent(), None);
    }

    #[test]
    fn this_process_can_be_measured() {
        let me = std::process::id();
        assert!(cpu_ticks(me).is_some());
        assert!(rss_kib(me).unwrap() > 100);
    }
}
