//! Virtual-hosted-style addressing beside path-style. With `virtual_host_domains` configured, a
//! request to `BUCKET.DOMAIN` addresses BUCKET; any other Host (an IP address, a load balancer
//! name, `DOMAIN` itself) is path-style. Without domains, everything is path-style.

use s3s::host::{S3Host, VirtualHost};
use s3s::S3Result;

#[derive(Debug)]
pub struct VirtualHosts {
    domains: Vec<String>,
}

impl VirtualHosts {
    pub fn new(domains: &[String]) -> VirtualHosts {
        VirtualHosts {
            domains: domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
        }
    }

    /// The bucket a Host header names, if it is `BUCKET.DOMAIN` for a configured domain.
    fn bucket<'a>(&self, host: &'a str) -> Option<&'a str> {
        let name = host
            .rsplit_once(':')
            .filter(|(_, port)| port.parse::<u16>().is_ok())
            .map_or(host, |(n, _)| n);
        self.domains.iter().find_map(|d| {
            let prefix = name.len().checked_sub(d.len() + 1)?;
            let (bucket, rest) = name.split_at(prefix);
            (rest.len() == d.len() + 1
                && rest[1..].eq_ignore_ascii_case(d)
                && rest.starts_with('.')
                && !bucket.is_empty())
            .then_some(bucket)
        })
    }
}

impl S3Host for VirtualHosts {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        Ok(match self.bucket(host) {
            Some(bucket) => VirtualHost::new(host).with_bucket(bucket),
            None => VirtualHost::new(host),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_bucket_dot_domain_is_virtual_hosted() {
        let h = VirtualHosts::new(&["s3.example.com".into(), "localhost".into()]);
        assert_eq!(h.bucket("segments.s3.example.com"), Some("segments"));
        assert_eq!(h.bucket("segments.s3.example.com:9000"), Some("segments"));
        assert_eq!(
            h.bucket("my.dotted.bucket.localhost:9000"),
            Some("my.dotted.bucket")
        );
        assert_eq!(h.bucket("s3.example.com"), None);
        assert_eq!(h.bucket("127.0.0.1:9000"), None);
        assert_eq!(h.bucket("xs3.example.com"), None);
        assert_eq!(h.bucket("lb.internal:9000"), None);
    }
}
