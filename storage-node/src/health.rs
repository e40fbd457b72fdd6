//! Liveness and readiness for load balancers and Kubernetes probes: `GET /health/live` and
//! `GET /health/ready`, unauthenticated, answered 200 or 503 with one line of text that says
//! why. A gateway answers them on its S3 listener, a node on its `health_listen_addr` (its
//! RPC listener needs a client certificate, which probes do not have).
//!
//! Ready means the process can serve now: for a node, its disk takes writes and enough of
//! the cluster is up; for a gateway, enough nodes answer its probes and its clock is within
//! bounds. "Enough" is at most `m` nodes unreachable: then every metadata partition keeps a
//! majority of its `2m + 1` replicas and every stripe `k` of its `k + m` chunks, wherever
//! placement put them.

/// Which probe a request is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Probe {
    Live,
    Ready,
}

/// The probe `req` asks for: a GET without a query or credentials of `/health/live` or
/// `/health/ready`.
pub fn probe<B>(req: &http::Request<B>) -> Option<Probe> {
    if req.method() != http::Method::GET
        || req.uri().query().is_some()
        || req.headers().contains_key(http::header::AUTHORIZATION)
    {
        return None;
    }
    match req.uri().path() {
        "/health/live" => Some(Probe::Live),
        "/health/ready" => Some(Probe::Ready),
        _ => None,
    }
}

/// Whether `reachable` of `total` nodes are enough with `m` parity chunks (see the module
/// doc): `Err` says what is missing.
pub fn quorum(reachable: usize, total: usize, m: usize) -> Result<(), String> {
    let needed = total.saturating_sub(m).max(1);
    if reachable >= needed {
        Ok(())
    } else {
        Err(format!(
            "{reachable} of {total} storage nodes reachable, {needed} needed"
        ))
    }
}

/// The status and body of a probe's answer.
pub fn answer(verdict: Result<(), String>, probe: Probe) -> (http::StatusCode, String) {
    let what = match probe {
        Probe::Live => "live",
        Probe::Ready => "ready",
    };
    match verdict {
        Ok(()) => (http::StatusCode::OK, format!("{what}\n")),
        Err(why) => (
            http::StatusCode::SERVICE_UNAVAILABLE,
            format!("not {what}: {why}\n"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_most_m_nodes_may_be_unreachable() {
        assert!(quorum(6, 6, 2).is_ok());
        assert!(quorum(4, 6, 2).is_ok());
        assert_eq!(
            quorum(3, 6, 2).unwrap_err(),
            "3 of 6 storage nodes reachable, 4 needed"
        );
        assert!(quorum(0, 1, 2).is_err(), "one node is always needed");
    }

    #[test]
    fn only_plain_gets_of_the_two_paths_are_probes() {
        let req = |method: &str, uri: &str, auth: bool| {
            let mut b = http::Request::builder().method(method).uri(uri);
            if auth {
                b = b.header("authorization", "AWS4-HMAC-SHA256 ...");
            }
            b.body(()).unwrap()
        };
        assert_eq!(probe(&req("GET", "/health/live", false)), Some(Probe::Live));
        assert_eq!(
            probe(&req("GET", "/health/ready", false)),
            Some(Probe::Ready)
        );
        assert_eq!(probe(&req("GET", "/health/ready", true)), None);
        assert_eq!(probe(&req("GET", "/health/ready?x=1", false)), None);
        assert_eq!(probe(&req("PUT", "/health/live", false)), None);
        assert_eq!(probe(&req("GET", "/health/other", false)), None);
    }
}
