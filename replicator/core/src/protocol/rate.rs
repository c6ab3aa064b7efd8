//! Resync rate control: fixed (`resync-rate`) or DRBD's dynamic controller (`c-plan-ahead`,
//! `c-fill-target`, `c-delay-target`, `c-max-rate`, `c-min-rate`), as `drbd_rs_controller` in
//! DRBD 8.4's drbd_worker.c computes it.
//!
//! The controller runs once per [`STEP`] (DRBD's `SLEEP_TIME`, 100 ms). Each step it learns how
//! many sectors of resync data the peer has confirmed since the last step (`sect_in`) and how
//! many are still in flight, and returns how many sectors the SyncSource may send in this step.
//! It aims for a constant amount in flight (`c-fill-target`), or, with a fill target of 0, a
//! constant delay (`c-delay-target`), spreading corrections over `c-plan-ahead` steps, never
//! above `c-max-rate`. When application I/O was seen in the last step, resync is held to
//! `c-min-rate` (DRBD's `drbd_rs_should_slow_down`) so the application keeps its latency.
//! Units: sectors of 512 bytes, like DRBD, so the arithmetic can be compared line by line.

use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::time::Duration;

/// One controller step (DRBD's `SLEEP_TIME` = HZ/10).
pub const STEP: Duration = Duration::from_millis(100);
/// Steps per second.
const STEPS_PER_SEC: u64 = 10;
/// Application I/O above this many sectors in one step counts as "application I/O active"
/// (DRBD's threshold in `drbd_rs_should_slow_down` is 64 sectors).
pub const APP_IO_ACTIVE_SECTORS: u64 = 64;
/// Steps over which the recent resync rate is averaged for the `c-min-rate` check (3 s, like
/// DRBD's sync marks).
const RATE_WINDOW_STEPS: usize = 30;

/// Resync rate settings (`disk {}` / `syncer {}` section of a `.res` file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RateConfig {
    /// `resync-rate`, KiB/s: the fixed rate (`c-plan-ahead 0`) and the dynamic controller's
    /// first step.
    pub resync_rate_kib_s: u32,
    /// `c-plan-ahead`, tenths of a second; 0 selects the fixed rate.
    pub c_plan_ahead_ds: u32,
    /// `c-fill-target`, sectors in flight to aim for; 0 selects `c-delay-target`.
    pub c_fill_target_sectors: u32,
    /// `c-delay-target`, tenths of a second.
    pub c_delay_target_ds: u32,
    /// `c-max-rate`, KiB/s.
    pub c_max_rate_kib_s: u32,
    /// `c-min-rate`, KiB/s; 0 disables throttling for application I/O.
    pub c_min_rate_kib_s: u32,
}

impl Default for RateConfig {
    /// DRBD 8.4's defaults (drbd_limits.h).
    fn default() -> Self {
        RateConfig {
            resync_rate_kib_s: 250,
            c_plan_ahead_ds: 20,
            c_fill_target_sectors: 100,
            c_delay_target_ds: 10,
            c_max_rate_kib_s: 102_400,
            c_min_rate_kib_s: 250,
        }
    }
}

/// Sectors per step at `kib_s` KiB/s.
fn per_step_sectors(kib_s: u32) -> i64 {
    i64::from(kib_s) * 2 / STEPS_PER_SEC as i64
}

/// The controller's state.
#[derive(Debug, Clone)]
pub struct RateController {
    cfg: RateConfig,
    /// Planned corrections, one slot per step ahead (`fifo_buffer` in DRBD).
    plan: VecDeque<i64>,
    plan_total: i64,
    /// Sectors confirmed per step over the last [`RATE_WINDOW_STEPS`] steps.
    recent: VecDeque<u64>,
}

impl RateController {
    /// A controller with `cfg`, at the start of a resync.
    pub fn new(cfg: RateConfig) -> Self {
        let steps = usize::try_from(cfg.c_plan_ahead_ds)
            .unwrap_or(usize::MAX)
            .min(1000);
        RateController {
            cfg,
            plan: VecDeque::from(vec![0; steps]),
            plan_total: 0,
            recent: VecDeque::new(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &RateConfig {
        &self.cfg
    }

    /// One step: `sect_in` sectors confirmed by the peer since the last step, `in_flight`
    /// sectors sent and not yet confirmed, `app_sectors` sectors of application I/O in the last
    /// step. Returns the sectors the source may send in this step.
    pub fn step(&mut self, sect_in: u64, in_flight: u64, app_sectors: u64) -> u64 {
        self.recent.push_back(sect_in);
        if self.recent.len() > RATE_WINDOW_STEPS {
            self.recent.pop_front();
        }
        let mut budget = if self.plan.is_empty() {
            per_step_sectors(self.cfg.resync_rate_kib_s)
        } else {
            self.dynamic(
                i64::try_from(sect_in).unwrap_or(i64::MAX),
                i64::try_from(in_flight).unwrap_or(i64::MAX),
            )
        };
        if self.cfg.c_min_rate_kib_s > 0
            && app_sectors > APP_IO_ACTIVE_SECTORS
            && self.recent_rate_kib_s() > u64::from(self.cfg.c_min_rate_kib_s)
        {
            budget = budget.min(per_step_sectors(self.cfg.c_min_rate_kib_s).max(1));
        }
        u64::try_from(budget.max(0)).unwrap_or(0)
    }

    /// `drbd_rs_controller`.
    fn dynamic(&mut self, sect_in: i64, in_flight: i64) -> i64 {
        let steps = i64::try_from(self.plan.len()).unwrap_or(i64::MAX);
        let want = if in_flight + sect_in == 0 {
            per_step_sectors(self.cfg.resync_rate_kib_s) * steps
        } else if self.cfg.c_fill_target_sectors > 0 {
            i64::from(self.cfg.c_fill_target_sectors)
        } else {
            sect_in * i64::from(self.cfg.c_delay_target_ds) * STEPS_PER_SEC as i64 / 10
        };
        let correction = want - in_flight - self.plan_total;
        let cps = correction / steps;
        for slot in self.plan.iter_mut() {
            *slot += cps;
        }
        self.plan_total += cps * steps;
        let curr = self.plan.pop_front().unwrap_or(0);
        self.plan.push_back(0);
        self.plan_total -= curr;
        let req = (sect_in + curr).max(0);
        req.min(per_step_sectors(self.cfg.c_max_rate_kib_s))
    }

    /// Resync rate over the last few seconds, KiB/s.
    pub fn recent_rate_kib_s(&self) -> u64 {
        if self.recent.is_empty() {
            return 0;
        }
        let sectors: u64 = self.recent.iter().sum();
        sectors / 2 * STEPS_PER_SEC / self.recent.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_rate_is_constant() {
        let mut c = RateController::new(RateConfig {
            resync_rate_kib_s: 10_240,
            c_plan_ahead_ds: 0,
            c_min_rate_kib_s: 0,
            ..RateConfig::default()
        });
        // 10 MiB/s = 20480 sectors/s = 2048 per 100 ms step, whatever happens.
        assert_eq!(c.step(0, 0, 0), 2048);
        assert_eq!(c.step(5000, 100_000, 0), 2048);
    }

    /// A simulated link that delivers everything sent after one step: the in-flight amount
    /// settles at the fill target.
    #[test]
    fn dynamic_converges_to_fill_target() {
        let cfg = RateConfig {
            c_fill_target_sectors: 4000,
            c_min_rate_kib_s: 0,
            ..RateConfig::default()
        };
        let mut c = RateController::new(cfg);
        let mut in_flight: u64 = 0;
        let mut sect_in = 0;
        for _ in 0..200 {
            let send = c.step(sect_in, in_flight, 0);
            // The link confirms what was in flight at the start of the step.
            sect_in = in_flight;
            in_flight = send;
        }
        assert!((3600..=4400).contains(&in_flight), "in flight {in_flight}");
    }

    #[test]
    fn dynamic_respects_max_rate() {
        let cfg = RateConfig {
            c_fill_target_sectors: 1_000_000,
            c_max_rate_kib_s: 1000,
            c_min_rate_kib_s: 0,
            ..RateConfig::default()
        };
        let mut c = RateController::new(cfg);
        for _ in 0..50 {
            assert!(c.step(100, 0, 0) <= 200);
        }
    }

    #[test]
    fn first_step_starts_at_resync_rate() {
        let cfg = RateConfig {
            resync_rate_kib_s: 1000,
            c_plan_ahead_ds: 20,
            c_min_rate_kib_s: 0,
            ..RateConfig::default()
        };
        let mut c = RateController::new(cfg);
        // want = 200 sectors/step * 20 steps, spread over 20 steps: 200 this step.
        assert_eq!(c.step(0, 0, 0), 200);
    }

    #[test]
    fn application_io_holds_resync_to_min_rate() {
        let cfg = RateConfig {
            resync_rate_kib_s: 100_000,
            c_plan_ahead_ds: 0,
            c_min_rate_kib_s: 500,
            ..RateConfig::default()
        };
        let mut c = RateController::new(cfg);
        assert_eq!(c.step(20_000, 0, 0), 20_000);
        // Application I/O and a recent rate above c-min-rate: 500 KiB/s = 100 sectors/step.
        assert_eq!(c.step(20_000, 0, 1000), 100);
        // Tiny application I/O does not count.
        assert_eq!(c.step(20_000, 0, 10), 20_000);
    }
}
