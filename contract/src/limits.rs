//! Requests and tokens per minute, as a project or a key states them and the proxy
//! enforces them.

use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::FieldError;

const MAX_RATE: u64 = 1_000_000_000;

/// Reads `T` from a JSON object only: serde's derived structs also accept an array
/// (fields by position), which a client sending `[1, 2]` for an object did not mean.
pub fn from_object<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<T, D::Error> {
    struct ObjectVisitor<T>(std::marker::PhantomData<T>);
    impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjectVisitor<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(ObjectVisitor(std::marker::PhantomData))
}

/// Requests and tokens per minute; `null` means no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RateLimits {
    /// Requests per minute, 1 to 1e9.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub rpm: Option<u64>,
    /// Tokens per minute, 1 to 1e9.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1_000_000_000)]
    pub tpm: Option<u64>,
}

/// [`RateLimits`] as a body states it (an object only).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RateLimitsObject {
    #[serde(default)]
    rpm: Option<u64>,
    #[serde(default)]
    tpm: Option<u64>,
}

impl<'de> Deserialize<'de> for RateLimits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let RateLimitsObject { rpm, tpm } = from_object(d)?;
        Ok(Self { rpm, tpm })
    }
}

impl RateLimits {
    pub fn validate(&self, errors: &mut Vec<FieldError>) {
        for (field, value) in [("rate_limits.rpm", self.rpm), ("rate_limits.tpm", self.tpm)] {
            if let Some(v) = value
                && !(1..=MAX_RATE).contains(&v)
            {
                errors.push(FieldError::new(
                    field,
                    format!("must be between 1 and {MAX_RATE}, or null for no limit"),
                ));
            }
        }
    }
}
