"""The official `anthropic` SDK against the real `strata proxy` processes: a Claude
model through Anthropic's Messages API with a strata key, plain, streamed, with the
prompt cache, and each refusal raising the exception class the SDK documents."""

import time
from datetime import datetime, timezone

import anthropic
import pytest

CLAUDE = "anthropic.claude-opus-4-7"
OSS = "openai.gpt-oss-20b"


def client(base, key, **kw):
    # The SDK appends /v1/messages itself.
    return anthropic.Anthropic(base_url=base, api_key=key, _strict_response_validation=True, **kw)


@pytest.fixture(scope="module")
def project(stack):
    project_id, key = stack.project([CLAUDE, OSS], name="claude")
    return project_id, key["secret"]


@pytest.fixture
def sdk(stack, project):
    # A project fresh from the reconciler reaches the proxies within a snapshot poll.
    ready = client(stack.proxies[0], project[1], max_retries=8)
    ready.messages.create(model=CLAUDE, max_tokens=8, messages=[{"role": "user", "content": "ready?"}])
    return client(stack.proxies[0], project[1], max_retries=0)


def ask(sdk, text, **kw):
    return sdk.messages.create(
        model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": text}], **kw
    )


def test_message_plain(sdk):
    r = ask(sdk, "hello claude")
    assert r.type == "message" and r.role == "assistant"
    assert r.content[0].text == "echo: hello claude"
    assert r.usage.input_tokens > 0 and r.usage.output_tokens == 3


def test_message_stream(sdk, stack):
    with sdk.messages.stream(
        model=CLAUDE, max_tokens=64, messages=[{"role": "user", "content": "one two"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "echo: one two"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3


def test_models_list_the_messages_apis_models(sdk):
    assert [m.id for m in sdk.models.list()] == [CLAUDE]
    assert sdk.models.retrieve(CLAUDE).type == "model"
    with pytest.raises(anthropic.NotFoundError):
        sdk.models.retrieve(OSS)


def test_prompt_cache_written_then_read(sdk):
    system = [{"type": "text", "text": "a long shared preamble " * 40,
               "cache_control": {"type": "ephemeral"}}]
    first = ask(sdk, "first", system=system)
    second = ask(sdk, "second", system=system)
    assert first.usage.cache_creation_input_tokens == 160
    assert (first.usage.cache_read_input_tokens or 0) == 0
    assert second.usage.cache_read_input_tokens == 160
    assert (second.usage.cache_creation_input_tokens or 0) == 0


def test_refusals_raise_the_sdks_exception_classes(sdk, stack, project):
    with pytest.raises(anthropic.AuthenticationError) as e:
        ask(client(stack.proxies[0], "sk-strata-not-a-key", max_retries=0), "hi")
    assert e.value.body["error"]["type"] == "authentication_error"
    with pytest.raises(anthropic.BadRequestError) as e:
        sdk.messages.create(model=OSS, max_tokens=8, messages=[{"role": "user", "content": "hi"}])
    assert "POST /v1/chat/completions" in e.value.body["error"]["message"]
    _, other = stack.project([OSS], name="no-claude")
    # Retried while the new project reaches the proxy (503), then refused for good.
    with pytest.raises(anthropic.NotFoundError):
        ask(client(stack.proxies[0], other["secret"], max_retries=8), "hi")
    slow = stack.key(project[0], name="slow", rate_limits={"rpm": 1})["secret"]
    limited = client(stack.proxies[0], slow, max_retries=0)
    # Both requests in one minute: the limit counts per calendar minute.
    while datetime.now(timezone.utc).second >= 50:
        time.sleep(0.5)
    ask(limited, "first")
    with pytest.raises(anthropic.RateLimitError) as e:
        ask(limited, "second")
    assert e.value.body["error"]["type"] == "rate_limit_error"


def test_mantle_failures_are_retried_by_the_sdk(stack, project):
    stack.faults(fail_next=[503])
    r = ask(client(stack.proxies[0], project[1], max_retries=2), "after a 503")
    assert r.content[0].text == "echo: after a 503"
    stack.faults(fail_next=[500])
    with pytest.raises(anthropic.InternalServerError):
        ask(client(stack.proxies[0], project[1], max_retries=0), "no retry")
