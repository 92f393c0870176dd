//! Borrowed, allocation-light reads of the few fields the proxy needs from a JSON body
//! (the request's model and flags, a response's timestamps and usage). Building a full
//! `serde_json::Value` of every body and writing it back showed in the proxy
//! benchmark; with these the body is forwarded as it came whenever nothing in it has to
//! change. Anything these readers do not accept (odd types, duplicate keys, a body
//! that is not an object) goes to the `Value` path in `normalize`, which decides.

use std::borrow::Cow;
use std::marker::PhantomData;

use serde::de::{IgnoredAny, MapAccess, Visitor, value::MapAccessDeserializer};
use serde::{Deserialize, Deserializer};
use serde_json::Number;
use serde_json::value::RawValue;

use strata_contract::ServiceTier;

use crate::normalize::Usage;

/// `T` read from a JSON object only. serde's derived structs also accept an array
/// (fields by position), which would let `["m", []]` pass for a request.
pub struct Obj<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        d.deserialize_map(ObjVisitor(PhantomData))
    }
}

/// `Some(value)` whenever the key is present, also when its value is `null` (serde's
/// `Option` alone cannot tell a `null` from a missing key).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

#[derive(Deserialize)]
struct ChatFields<'a> {
    #[serde(borrow)]
    model: Cow<'a, str>,
    #[serde(borrow)]
    messages: Vec<&'a RawValue>,
    stream: Option<bool>,
    #[serde(default, deserialize_with = "present")]
    stream_options: Option<Option<Obj<StreamOptions>>>,
    n: Option<u64>,
    logprobs: Option<bool>,
    top_logprobs: Option<IgnoredAny>,
    max_tokens: Option<u64>,
    max_completion_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct MessageFields<'a> {
    #[serde(borrow)]
    content: Option<&'a RawValue>,
}

/// What a chat request says, as far as the proxy cares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatPeek {
    pub model: String,
    pub stream: bool,
    pub client_wants_usage: bool,
    pub has_stream_options: bool,
    pub n: u64,
    pub logprobs: bool,
    pub top_logprobs: bool,
    /// Some message's content is an array of parts.
    pub content_parts: bool,
    /// `max_completion_tokens`, else `max_tokens`.
    pub max_output_tokens: Option<u64>,
}

/// The chat request's fields, or `None` when the body is anything but a plainly
/// well-formed request (then the `Value` path judges it, and words any error).
pub fn chat(body: &[u8]) -> Option<ChatPeek> {
    let Obj(f) = serde_json::from_slice::<Obj<ChatFields>>(body).ok()?;
    if f.model.is_empty() || f.messages.is_empty() {
        return None;
    }
    let mut content_parts = false;
    for message in &f.messages {
        let Obj(m) = serde_json::from_str::<Obj<MessageFields>>(message.get()).ok()?;
        content_parts |= m.content.is_some_and(|c| c.get().starts_with('['));
    }
    let options = f.stream_options.as_ref();
    Some(ChatPeek {
        model: f.model.into_owned(),
        stream: f.stream.unwrap_or(false),
        client_wants_usage: options
            .and_then(|o| o.as_ref())
            .and_then(|Obj(o)| o.include_usage)
            .unwrap_or(false),
        has_stream_options: options.is_some(),
        n: f.n.unwrap_or(1),
        logprobs: f.logprobs == Some(true),
        top_logprobs: f.top_logprobs.is_some(),
        content_parts,
        max_output_tokens: f.max_completion_tokens.or(f.max_tokens),
    })
}

#[derive(Deserialize)]
struct ResponseFields<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    status: Option<Cow<'a, str>>,
    #[serde(borrow)]
    service_tier: Option<Cow<'a, str>>,
    created: Option<Number>,
    created_at: Option<Number>,
    completed_at: Option<Number>,
    usage: Option<Obj<UsageFields>>,
    choices: Option<Vec<IgnoredAny>>,
    #[serde(default, deserialize_with = "present")]
    error: Option<Option<IgnoredAny>>,
}

#[derive(Deserialize)]
struct UsageFields {
    prompt_tokens: Option<u64>,
    input_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    output_tokens: Option<u64>,
    prompt_tokens_details: Option<Obj<Details>>,
    input_tokens_details: Option<Obj<Details>>,
}

#[derive(Deserialize)]
struct Details {
    cached_tokens: Option<u64>,
}

/// What an upstream JSON object (a response, or one streamed event) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsePeek<'a> {
    /// The object's `id` and `status` (a Responses API object's are recorded).
    pub id: Option<Cow<'a, str>>,
    pub status: Option<Cow<'a, str>>,
    /// A top-level timestamp is a float (strict clients need an integer).
    pub float_timestamp: bool,
    /// `Some` when a non-null `usage` is present; inside, its counts if readable.
    pub usage: Option<Option<Usage>>,
    /// `choices` is an empty array (the usage-only chunk of a stream).
    pub no_choices: bool,
    pub error: bool,
}

pub fn response(body: &[u8]) -> Option<ResponsePeek<'_>> {
    let Obj(f) = serde_json::from_slice::<Obj<ResponseFields>>(body).ok()?;
    let tier = f
        .service_tier
        .as_deref()
        .map(ServiceTier::reported)
        .unwrap_or_default();
    let float_timestamp = [&f.created, &f.created_at, &f.completed_at]
        .into_iter()
        .any(|n| n.as_ref().is_some_and(Number::is_f64));
    Some(ResponsePeek {
        id: f.id,
        status: f.status,
        float_timestamp,
        usage: f.usage.map(|Obj(u)| u.counts(tier)),
        no_choices: f.choices.is_some_and(|c| c.is_empty()),
        error: f.error.is_some(),
    })
}

impl UsageFields {
    fn counts(self, service_tier: ServiceTier) -> Option<Usage> {
        let input = self.prompt_tokens.or(self.input_tokens)?;
        let details = self.prompt_tokens_details.or(self.input_tokens_details);
        Some(Usage {
            input_tokens: input,
            output_tokens: self.completion_tokens.or(self.output_tokens).unwrap_or(0),
            cached_tokens: details.and_then(|Obj(d)| d.cached_tokens).unwrap_or(0),
            cache_write_tokens: 0,
            service_tier,
        })
    }
}
