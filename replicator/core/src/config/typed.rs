//! Typed option structs from explicit settings, with DRBD's defaults (drbd.conf(5),
//! `drbdsetup xml-help`) and units converted into the names' units.

use super::model::*;
use super::options::Value;
use crate::types::Protocol;

fn num(map: &OptionMap, name: &str, default: u64) -> u64 {
    match map.get(name) {
        Some(Setting {
            value: Value::Num(n),
            ..
        }) => *n,
        _ => default,
    }
}

fn num32(map: &OptionMap, name: &str, default: u32) -> u32 {
    // Every option read through here has a table maximum below u32::MAX.
    u32::try_from(num(map, name, u64::from(default))).expect("option range fits u32")
}

fn flag(map: &OptionMap, name: &str, default: bool) -> bool {
    match map.get(name) {
        Some(Setting {
            value: Value::Bool(b),
            ..
        }) => *b,
        _ => default,
    }
}

fn text<'a>(map: &'a OptionMap, name: &str) -> Option<&'a str> {
    match map.get(name) {
        Some(Setting {
            value: Value::Text(s),
            ..
        }) => Some(s),
        _ => None,
    }
}

/// Typed `net` options from explicit settings, with DRBD's defaults.
pub fn net_options(map: &OptionMap) -> NetOptions {
    let protocol = match text(map, "protocol") {
        Some("A") => Protocol::A,
        Some("B") => Protocol::B,
        _ => Protocol::C,
    };
    NetOptions {
        protocol,
        allow_two_primaries: flag(map, "allow-two-primaries", false),
        after_sb_0pri: text(map, "after-sb-0pri")
            .and_then(AfterSb0Pri::from_word)
            .unwrap_or(AfterSb0Pri::Disconnect),
        after_sb_1pri: text(map, "after-sb-1pri")
            .and_then(AfterSb1Pri::from_word)
            .unwrap_or(AfterSb1Pri::Disconnect),
        after_sb_2pri: text(map, "after-sb-2pri")
            .and_then(AfterSb2Pri::from_word)
            .unwrap_or(AfterSb2Pri::Disconnect),
        rr_conflict: text(map, "rr-conflict")
            .and_then(RrConflict::from_word)
            .unwrap_or(RrConflict::Disconnect),
        fencing: text(map, "fencing")
            .and_then(Fencing::from_word)
            .unwrap_or(Fencing::DontCare),
        verify_alg: text(map, "verify-alg").and_then(DigestAlg::from_word),
        csums_alg: text(map, "csums-alg").and_then(DigestAlg::from_word),
        timeout_ms: num32(map, "timeout", 60) * 100,
        connect_int_ms: num32(map, "connect-int", 10) * 1000,
        ping_int_ms: num32(map, "ping-int", 10) * 1000,
        ping_timeout_ms: num32(map, "ping-timeout", 5) * 100,
        ko_count: num32(map, "ko-count", 7),
        max_buffers: num32(map, "max-buffers", 2048),
        sndbuf_size_bytes: num32(map, "sndbuf-size", 0),
        rcvbuf_size_bytes: num32(map, "rcvbuf-size", 0),
    }
}

/// Typed backing-disk options, with DRBD's defaults.
pub fn disk_options(map: &OptionMap) -> DiskOptions {
    let size_sectors = num(map, "size", 0);
    DiskOptions {
        on_io_error: text(map, "on-io-error")
            .and_then(OnIoError::from_word)
            .unwrap_or(OnIoError::Detach),
        al_extents: num32(map, "al-extents", 1237),
        al_updates: flag(map, "al-updates", true),
        disk_flushes: flag(map, "disk-flushes", true),
        md_flushes: flag(map, "md-flushes", true),
        size_bytes: (size_sectors > 0).then_some(size_sectors * 512),
    }
}

/// Typed resync controller options, with DRBD's defaults.
pub fn resync_options(map: &OptionMap) -> ResyncOptions {
    ResyncOptions {
        resync_rate_kib_s: num32(map, "resync-rate", 250),
        c_plan_ahead_ms: num32(map, "c-plan-ahead", 20) * 100,
        c_delay_target_ms: num32(map, "c-delay-target", 10) * 100,
        c_fill_target_bytes: num(map, "c-fill-target", 100) * 512,
        c_max_rate_kib_s: num32(map, "c-max-rate", 102400),
        c_min_rate_kib_s: num32(map, "c-min-rate", 250),
    }
}

pub fn handlers(map: &OptionMap) -> Handlers {
    let get = |n: &str| text(map, n).map(str::to_owned);
    Handlers {
        fence_peer: get("fence-peer"),
        unfence_peer: get("unfence-peer"),
        split_brain: get("split-brain"),
        initial_split_brain: get("initial-split-brain"),
        pri_lost_after_sb: get("pri-lost-after-sb"),
        pri_lost: get("pri-lost"),
        before_resync_target: get("before-resync-target"),
        after_resync_target: get("after-resync-target"),
        before_resync_source: get("before-resync-source"),
        out_of_sync: get("out-of-sync"),
        disconnected: get("disconnected"),
        local_io_error: get("local-io-error"),
        pri_on_incon_degr: get("pri-on-incon-degr"),
        quorum_lost: get("quorum-lost"),
    }
}
