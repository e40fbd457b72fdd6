//! P_HA (DESIGN 17) in the status: the share of S3 requests answered without a server-side
//! error, per gateway and for the cluster, from each gateway's newest report to the nodes.

use dmpstore_common::availability::Served;
use dmpstore_common::rpc::{GatewayAvailability, NodeStatus};
use serde::Serialize;
use std::collections::BTreeMap;

/// P_HA (DESIGN 17): the share of S3 requests answered without a server-side error, from
/// each gateway's newest report to the nodes.
#[derive(Debug, Serialize)]
pub struct AvailabilitySummary {
    pub last_hour: ServedSummary,
    pub last_day: ServedSummary,
    pub gateways: Vec<GatewayServed>,
}

#[derive(Debug, Serialize)]
pub struct GatewayServed {
    /// The gateway's S3 listen address.
    pub gateway: String,
    /// Age of its newest report (by the gateway's clock against this one's).
    pub reported_ms_ago: u64,
    pub last_hour: ServedSummary,
    pub last_day: ServedSummary,
}

#[derive(Debug, Serialize)]
pub struct ServedSummary {
    pub requests: u64,
    pub failed: u64,
    /// `None` when no request was answered in the window.
    pub availability: Option<f64>,
}

impl From<Served> for ServedSummary {
    fn from(s: Served) -> ServedSummary {
        ServedSummary {
            requests: s.requests,
            failed: s.failed,
            availability: s.availability(),
        }
    }
}

impl AvailabilitySummary {
    pub(super) fn of(answered: &[&NodeStatus]) -> AvailabilitySummary {
        let mut newest: BTreeMap<&str, &GatewayAvailability> = BTreeMap::new();
        for report in answered.iter().flat_map(|s| &s.gateways) {
            let slot = newest.entry(&report.gateway).or_insert(report);
            if report.sent_ms > slot.sent_ms {
                *slot = report;
            }
        }
        let now = crate::state::GatewayState::now_ms();
        let (mut hour, mut day) = (Served::default(), Served::default());
        let gateways = newest
            .into_values()
            .map(|r| {
                hour.add(&r.last_hour);
                day.add(&r.last_day);
                GatewayServed {
                    gateway: r.gateway.clone(),
                    reported_ms_ago: now.saturating_sub(r.sent_ms),
                    last_hour: r.last_hour.into(),
                    last_day: r.last_day.into(),
                }
            })
            .collect();
        AvailabilitySummary {
            last_hour: hour.into(),
            last_day: day.into(),
            gateways,
        }
    }
}
