//! SigV4 request signing for Mantle (service `bedrock-mantle`), shared by the Projects
//! API adapter and the proxy.
//!
//! Two signers: `sign_headers` is aws-sigv4's, for any request; `sign_json_post` is
//! the proxy's hot path, for the one shape it sends (POST, a JSON body, no query).
//! aws-sigv4 made ~90 allocations per request in the proxy benchmark (a header map,
//! an identity, a canonical request built piecewise); `sign_json_post` makes a handful
//! and a test holds its output byte-identical to aws-sigv4's.

use foldhash::HashMap;
use std::fmt::Write as _;
use std::sync::RwLock;
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use chrono::{Datelike, Timelike};
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};

pub const MANTLE_SERVICE: &str = "bedrock-mantle";

/// The headers (`authorization`, `x-amz-date`, `x-amz-security-token` …) that sign a
/// request whose other signed headers are `headers`.
pub fn sign_headers(
    credentials: &Credentials,
    region: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Result<Vec<(String, String)>, String> {
    sign_headers_at(
        credentials,
        region,
        method,
        url,
        headers,
        body,
        SystemTime::now(),
    )
}

fn sign_headers_at(
    credentials: &Credentials,
    region: &str,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
) -> Result<Vec<(String, String)>, String> {
    let identity = credentials.clone().into();
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name(MANTLE_SERVICE)
        .time(time)
        .settings(SigningSettings::default())
        .build()
        .map_err(|e| e.to_string())?
        .into();
    let signable = SignableRequest::new(
        method,
        url,
        headers.iter().copied(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| e.to_string())?;
    let (instructions, _) = sign(signable, &params)
        .map_err(|e| e.to_string())?
        .into_parts();
    Ok(instructions
        .headers()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect())
}

/// Derived SigV4 signing keys (an HMAC chain over date, region and service) by access
/// key id and region, each kept for the UTC day it is valid: deriving one costs four
/// HMACs, as much as the rest of a signature, and every request of a role on one day
/// uses the same key.
#[derive(Default)]
pub struct SigningKeys(RwLock<HashMap<String, Vec<DerivedKey>>>);

struct DerivedKey {
    region: String,
    /// `YYYYMMDD`.
    date: [u8; 8],
    key: [u8; 32],
}

impl SigningKeys {
    /// Access key ids kept at most; assumed-role credentials change every hour, so
    /// the map is emptied when it is full rather than tracked entry by entry.
    const MAX_ACCESS_KEYS: usize = 4096;

    fn key(&self, credentials: &Credentials, date: &str, region: &str) -> Option<[u8; 32]> {
        let id = credentials.access_key_id();
        let cached = self.0.read().ok().and_then(|keys| {
            keys.get(id)?
                .iter()
                .find(|k| k.region == region && k.date == date.as_bytes())
                .map(|k| k.key)
        });
        if cached.is_some() {
            return cached;
        }
        let k_date = hmac_sha256(
            format!("AWS4{}", credentials.secret_access_key()).as_bytes(),
            date.as_bytes(),
        )?;
        let k_region = hmac_sha256(&k_date, region.as_bytes())?;
        let k_service = hmac_sha256(&k_region, MANTLE_SERVICE.as_bytes())?;
        let key = hmac_sha256(&k_service, b"aws4_request")?;
        if let (Ok(mut keys), Ok(day)) = (self.0.write(), <[u8; 8]>::try_from(date.as_bytes())) {
            if keys.len() >= Self::MAX_ACCESS_KEYS && !keys.contains_key(id) {
                keys.clear();
            }
            let entries = keys.entry(id.to_owned()).or_default();
            entries.retain(|k| k.region != region);
            entries.push(DerivedKey {
                region: region.to_owned(),
                date: day,
                key,
            });
        }
        Some(key)
    }
}

/// `YYYYMMDDTHHMMSSZ`, the form SigV4 dates take. Written digit by digit: `format!`
/// cost ~2,300 instructions per signed request (callgrind, bench/proxy.sh).
fn amz_date(time: SystemTime) -> String {
    let t = chrono::DateTime::<chrono::Utc>::from(time);
    let mut out = String::with_capacity(16);
    // A year before 0 or after 9999 is no time to sign in; its digits wrap.
    let year = u32::try_from(t.year()).unwrap_or(0);
    for (n, width) in [(year, 4), (t.month(), 2), (t.day(), 2)] {
        push_digits(&mut out, n, width);
    }
    out.push('T');
    for n in [t.hour(), t.minute(), t.second()] {
        push_digits(&mut out, n, 2);
    }
    out.push('Z');
    out
}

/// The last `width` decimal digits of `n`, zero-padded.
fn push_digits(out: &mut String, n: u32, width: u32) {
    for place in (0..width).rev() {
        let digit = n / 10u32.pow(place) % 10;
        out.push(char::from(b'0' + digit as u8));
    }
}

/// The signing headers for `POST url` with `body` and the other signed `headers`
/// (lower-case names, no `host`), now, with the signing key from `keys`. `None` for
/// a URL outside the shape this signer knows (a query, a fragment, user info): then
/// use `sign_headers`.
pub fn sign_json_post(
    keys: &SigningKeys,
    credentials: &Credentials,
    region: &str,
    url: &reqwest::Url,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Vec<(&'static str, String)>> {
    sign_json_post_at(
        keys,
        credentials,
        region,
        url,
        headers,
        body,
        SystemTime::now(),
    )
}

fn sign_json_post_at(
    keys: &SigningKeys,
    credentials: &Credentials,
    region: &str,
    url: &reqwest::Url,
    headers: &[(&str, &str)],
    body: &[u8],
    time: SystemTime,
) -> Option<Vec<(&'static str, String)>> {
    if url.query().is_some()
        || url.fragment().is_some()
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    let host = url.host_str()?;
    let amz_date = amz_date(time);
    let date = &amz_date[..8];
    let token = credentials.session_token();

    let mut signed: Vec<(&str, &str)> = headers.to_vec();
    let host_header;
    let host = match url.port() {
        Some(port) => {
            host_header = format!("{host}:{port}");
            host_header.as_str()
        }
        None => host,
    };
    signed.push(("host", host));
    signed.push(("x-amz-date", &amz_date));
    if let Some(token) = token {
        signed.push(("x-amz-security-token", token));
    }
    signed.sort_unstable_by(|a, b| a.0.cmp(b.0));

    // The canonical request: method, path (each byte outside RFC 3986's unreserved
    // set encoded, so an already-encoded `%` becomes `%25`), empty query, headers,
    // signed header names, the body's hash.
    // Sized for the lot (a session token alone is ~1 KB), so it is never regrown.
    let headers_len: usize = signed.iter().map(|(n, v)| 2 * n.len() + v.len() + 2).sum();
    let mut canonical = String::with_capacity(96 + 3 * url.path().len() + headers_len);
    canonical.push_str("POST\n");
    for b in url.path().bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b'/') {
            canonical.push(char::from(b));
        } else {
            let _ = write!(canonical, "%{b:02X}");
        }
    }
    canonical.push_str("\n\n");
    for (name, value) in &signed {
        canonical.push_str(name);
        canonical.push(':');
        // Trimmed, inner runs of spaces collapsed to one. Nearly every value (the
        // ~1 KB session token above all) needs neither: copied whole.
        let value = value.trim();
        if !value.contains("  ") {
            canonical.push_str(value);
            canonical.push('\n');
            continue;
        }
        let mut space = false;
        for c in value.chars() {
            if c == ' ' {
                space = true;
                continue;
            }
            if space {
                canonical.push(' ');
                space = false;
            }
            canonical.push(c);
        }
        canonical.push('\n');
    }
    canonical.push('\n');
    let signed_names = signed
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(";");
    canonical.push_str(&signed_names);
    canonical.push('\n');
    let mut hex = [0u8; 64];
    canonical.push_str(hex_lower(&Sha256::digest(body).into(), &mut hex));

    let scope = [date, region, MANTLE_SERVICE, "aws4_request"].join("/");
    let mut string_to_sign = String::with_capacity(128 + scope.len());
    for part in ["AWS4-HMAC-SHA256\n", &amz_date, "\n", &scope, "\n"] {
        string_to_sign.push_str(part);
    }
    string_to_sign.push_str(hex_lower(
        &Sha256::digest(canonical.as_bytes()).into(),
        &mut hex,
    ));
    let k_signing = keys.key(credentials, date, region)?;
    let signature = hmac_sha256(&k_signing, string_to_sign.as_bytes())?;

    let access_key_id = credentials.access_key_id();
    let mut authorization =
        String::with_capacity(128 + access_key_id.len() + scope.len() + signed_names.len());
    for part in [
        "AWS4-HMAC-SHA256 Credential=",
        access_key_id,
        "/",
        &scope,
        ", SignedHeaders=",
        &signed_names,
        ", Signature=",
        hex_lower(&signature, &mut hex),
    ] {
        authorization.push_str(part);
    }
    let mut out = Vec::with_capacity(3);
    out.push(("authorization", authorization));
    out.push(("x-amz-date", amz_date.clone()));
    if let Some(token) = token {
        out.push(("x-amz-security-token", token.to_owned()));
    }
    Some(out)
}

/// A SHA-256 digest in lower-case hex, written into `out` (no allocation: three per
/// request on the proxy's hot path).
fn hex_lower<'a>(digest: &[u8; 32], out: &'a mut [u8; 64]) -> &'a str {
    // 64 = 2 × 32, so neither fails: only ASCII digits are written.
    match hex::encode_to_slice(digest, out) {
        Ok(()) => std::str::from_utf8(out).unwrap_or_default(),
        Err(_) => "",
    }
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Option<[u8; 32]> {
    let mut mac = hmac::Hmac::<Sha256>::new_from_slice(key).ok()?;
    mac.update(data);
    Some(mac.finalize().into_bytes().into())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use super::*;

    /// Header pairs, sorted, for comparison.
    fn sorted<N: AsRef<str>>(headers: Vec<(N, String)>) -> Vec<(String, String)> {
        let mut h: Vec<(String, String)> = headers
            .into_iter()
            .map(|(n, v)| (n.as_ref().to_owned(), v))
            .collect();
        h.sort();
        h
    }

    #[test]
    fn dates_take_the_sigv4_form() {
        let at = |s: &str| {
            SystemTime::from(
                chrono::DateTime::parse_from_rfc3339(s).unwrap_or_else(|e| panic!("{s}: {e}")),
            )
        };
        assert_eq!(amz_date(at("2026-01-05T03:04:05Z")), "20260105T030405Z");
        assert_eq!(amz_date(at("1999-12-31T23:59:59Z")), "19991231T235959Z");
        assert_eq!(
            amz_date(at("2030-10-20T10:00:00+02:00")),
            "20301020T080000Z"
        );
    }

    #[test]
    fn the_fast_signer_matches_aws_sigv4_byte_for_byte() {
        let session = Credentials::new(
            "ASIAEXAMPLE",
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            Some("FwoGZXIvYXdzEJr//////////token=".into()),
            None,
            "test",
        );
        let long_lived = Credentials::new("AKIAEXAMPLE", "secret", None, None, "test");
        let urls = [
            "https://bedrock-mantle.us-east-1.api.aws/v1/chat/completions",
            "https://bedrock-mantle.eu-west-1.api.aws:443/v1/responses",
            "http://127.0.0.1:20123/plain/us-east-1/v1/chat/completions",
            "http://localhost:80/a%20b/c%2Fd/~x_y.z-w/s*t:u@v=w+x,y;z!/chat/completions",
            "http://[::1]:8080/v1/chat/completions",
        ];
        let headers = [
            ("content-type", "application/json"),
            ("openai-project", "proj_  0123 "),
        ];
        let bodies: [&[u8]; 2] = [b"{\"model\":\"m\"}", b""];
        // Two seconds of one day (the cached signing key reused), then the next day's
        // first second and a later day (a new key each).
        let times = [
            UNIX_EPOCH + Duration::from_secs(1_764_028_798),
            UNIX_EPOCH + Duration::from_secs(1_764_028_799),
            UNIX_EPOCH + Duration::from_secs(1_764_028_800),
            UNIX_EPOCH + Duration::from_secs(1_798_761_599),
        ];
        // One cache through every case: a key kept for the wrong day, region or
        // credentials would show as a signature aws-sigv4 does not make.
        let keys = SigningKeys::default();
        for url in urls {
            let parsed = reqwest::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            for credentials in [&session, &long_lived] {
                for region in ["us-east-1", "eu-west-1"] {
                    for body in bodies {
                        for time in times {
                            let fast = sign_json_post_at(
                                &keys,
                                credentials,
                                region,
                                &parsed,
                                &headers,
                                body,
                                time,
                            )
                            .unwrap_or_else(|| panic!("{url} is in the fast signer's shape"));
                            let reference = sign_headers_at(
                                credentials,
                                region,
                                "POST",
                                parsed.as_str(),
                                &headers,
                                body,
                                time,
                            )
                            .unwrap_or_else(|e| panic!("{e}"));
                            assert_eq!(sorted(fast), sorted(reference), "{url} {region}");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn a_full_cache_starts_over() {
        let keys = SigningKeys::default();
        let url =
            reqwest::Url::parse("https://h/v1/chat/completions").unwrap_or_else(|e| panic!("{e}"));
        for i in 0..=SigningKeys::MAX_ACCESS_KEYS {
            let c = Credentials::new(format!("AKIA{i}"), "secret", None, None, "test");
            assert!(sign_json_post(&keys, &c, "us-east-1", &url, &[], b"").is_some());
        }
        let kept = keys.0.read().map(|k| k.len()).unwrap_or_default();
        assert_eq!(
            kept, 1,
            "the map was emptied when full, then took the new key"
        );
    }

    #[test]
    fn urls_outside_the_shape_are_left_to_aws_sigv4() {
        let c = Credentials::new("AKIA", "secret", None, None, "test");
        for url in ["https://h/v1?x=1", "https://h/v1#f", "https://u:p@h/v1"] {
            let parsed = reqwest::Url::parse(url).unwrap_or_else(|e| panic!("{e}"));
            let keys = SigningKeys::default();
            assert!(sign_json_post(&keys, &c, "us-east-1", &parsed, &[], b"").is_none());
        }
    }
}
