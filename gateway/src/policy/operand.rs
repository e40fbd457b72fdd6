//! Typed condition values: numbers, dates and CIDR blocks, parsed the same way from the
//! policy and from the request.

use std::net::IpAddr;
use time::{Date, Month, PrimitiveDateTime, Time, UtcOffset};

/// A `Numeric*` operand. IAM numbers are integers or decimals.
pub fn parse_number(s: &str) -> Option<f64> {
    let s = s.trim();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '-' | '+' | '.'));
    plain.then(|| s.parse().ok()).flatten()
}

/// A `Date*` operand as nanoseconds since the Unix epoch: epoch seconds (`1700000000`,
/// `1700000000.5`) or ISO 8601: `2024-01-31`, `2024-01-31T12:00Z`, `2024-01-31T12:00:00Z`,
/// `2024-01-31T12:00:00.250+02:00`. A time without offset is UTC.
pub fn parse_date(s: &str) -> Option<i128> {
    let s = s.trim();
    if s.contains('-') && s.len() >= 10 && !s.starts_with('-') {
        return parse_iso8601(s);
    }
    let seconds = parse_number(s)?;
    // Within a few thousand years of the epoch, where f64 seconds are exact enough.
    (seconds.abs() < 1e14).then_some((seconds * 1e9) as i128)
}

fn parse_iso8601(s: &str) -> Option<i128> {
    let (date, rest) = s.split_at_checked(10)?;
    let date = parse_calendar_date(date)?;
    let (time, offset) = match rest.strip_prefix(['T', 't', ' ']) {
        Some(rest) => parse_time_and_offset(rest)?,
        None if rest.is_empty() => (Time::MIDNIGHT, UtcOffset::UTC),
        None => return None,
    };
    let at = PrimitiveDateTime::new(date, time).assume_offset(offset);
    Some(at.unix_timestamp_nanos())
}

fn parse_calendar_date(s: &str) -> Option<Date> {
    let mut parts = s.split('-');
    let year: i32 = digits(parts.next()?, 4)?;
    let month: u8 = digits(parts.next()?, 2)?;
    let day: u8 = digits(parts.next()?, 2)?;
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

fn parse_time_and_offset(s: &str) -> Option<(Time, UtcOffset)> {
    let split = s.find(['Z', 'z', '+', '-']).unwrap_or(s.len());
    let (clock, offset) = s.split_at(split);
    let (clock, fraction) = match clock.split_once('.') {
        Some((clock, fraction)) => (clock, fraction),
        None => (clock, ""),
    };
    let mut parts = clock.split(':');
    let hour: u8 = digits(parts.next()?, 2)?;
    let minute: u8 = digits(parts.next()?, 2)?;
    let second: u8 = parts.next().map_or(Some(0), |s| digits(s, 2))?;
    if parts.next().is_some() {
        return None;
    }
    let time = Time::from_hms_nano(hour, minute, second, parse_fraction(fraction)?).ok()?;
    Some((time, parse_offset(offset)?))
}

fn parse_fraction(s: &str) -> Option<u32> {
    if s.is_empty() {
        return Some(0);
    }
    if s.len() > 9 || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let padded = format!("{s:0<9}");
    padded.parse().ok()
}

fn parse_offset(s: &str) -> Option<UtcOffset> {
    if s.is_empty() || s.eq_ignore_ascii_case("z") {
        return Some(UtcOffset::UTC);
    }
    let (sign, rest) = s.split_at_checked(1)?;
    let (hours, minutes) = match rest.split_once(':') {
        Some((h, m)) => (h, m),
        None => rest.split_at_checked(2)?,
    };
    let hours: i8 = digits(hours, 2)?;
    let minutes: i8 = digits(minutes, 2)?;
    let sign = if sign == "-" { -1 } else { 1 };
    UtcOffset::from_hms(sign * hours, sign * minutes, 0).ok()
}

fn digits<T: std::str::FromStr>(s: &str, len: usize) -> Option<T> {
    let ok = s.len() == len && s.chars().all(|c| c.is_ascii_digit());
    ok.then(|| s.parse().ok()).flatten()
}

/// An `IpAddress` operand: an address with a prefix length; a bare address is a /32 (or /128).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix_len: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (s, None),
        };
        let addr: IpAddr = addr.parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix_len = match prefix {
            Some(p) if !p.is_empty() && p.len() <= 3 && p.chars().all(|c| c.is_ascii_digit()) => {
                p.parse().ok()?
            }
            Some(_) => return None,
            None => max,
        };
        (prefix_len <= max).then_some(Cidr { addr, prefix_len })
    }

    /// Whether it covers every address of its family (`0.0.0.0/0`, `::/0`).
    pub fn is_everything(&self) -> bool {
        self.prefix_len == 0
    }

    /// Whether `ip` is in the block. An IPv4-mapped IPv6 address counts as its IPv4 address.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => same_prefix(
                u32::from(net).into(),
                u32::from(ip).into(),
                self.prefix_len,
                32,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                same_prefix(u128::from(net), u128::from(ip), self.prefix_len, 128)
            }
            _ => false,
        }
    }
}

fn same_prefix(a: u128, b: u128, prefix_len: u8, bits: u32) -> bool {
    let shift = bits - u32::from(prefix_len);
    a.checked_shr(shift).unwrap_or(0) == b.checked_shr(shift).unwrap_or(0)
}
