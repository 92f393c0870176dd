//! Request ids without a syscall per request: a random prefix drawn once per process
//! (so replicas do not collide) and a counter. UUIDs cost a `getrandom` call each,
//! which the benchmark showed on every request.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::{HeaderValue, Request};
use tower_http::request_id::{MakeRequestId, RequestId};

#[derive(Clone)]
pub struct MakeProcessRequestId {
    prefix: u64,
    next: std::sync::Arc<AtomicU64>,
}

impl MakeProcessRequestId {
    pub fn new() -> Self {
        let mut seed = [0u8; 8];
        // Without the OS's randomness the clock's nanoseconds still separate replicas
        // started at different times.
        let prefix = if getrandom::fill(&mut seed).is_ok() {
            u64::from_le_bytes(seed)
        } else {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        };
        Self {
            prefix,
            next: std::sync::Arc::new(AtomicU64::new(0)),
        }
    }
}

impl MakeRequestId for MakeProcessRequestId {
    fn make_request_id<B>(&mut self, _request: &Request<B>) -> Option<RequestId> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // `req_`, the prefix in 16 hex digits, the counter's low 48 bits in 12; written
        // into the stack (`format!` cost ~2,300 instructions a request, callgrind).
        let mut id = *b"req_0000000000000000000000000000";
        hex::encode_to_slice(self.prefix.to_be_bytes(), &mut id[4..20]).ok()?;
        hex::encode_to_slice(&n.to_be_bytes()[2..], &mut id[20..]).ok()?;
        HeaderValue::from_bytes(&id).ok().map(RequestId::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_within_and_across_processes() {
        let request = Request::new(());
        let mut a = MakeProcessRequestId::new();
        let mut b = MakeProcessRequestId::new();
        let id = |m: &mut MakeProcessRequestId| {
            m.make_request_id(&request)
                .map(|r| r.header_value().to_str().unwrap_or_default().to_owned())
                .unwrap_or_default()
        };
        let (a1, a2, b1) = (id(&mut a), id(&mut a), id(&mut b));
        assert!(a1.starts_with("req_") && a1.len() == 32, "{a1}");
        // The prefix, then the counter: 0 and 1.
        assert_eq!(a1[4..20], a2[4..20]);
        assert_eq!(&a1[20..], "000000000000");
        assert_eq!(&a2[20..], "000000000001");
        assert!(
            a1[4..]
                .bytes()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
        );
        assert_ne!(a1, a2);
        assert_ne!(
            a1, b1,
            "another process (another prefix) never repeats an id"
        );
    }
}
