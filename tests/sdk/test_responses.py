"""The Responses API through strata's proxies with the official SDK (strict mode):
plain, streamed, background, chained, cancelled, deleted; another project's ids are
404s that never reach Mantle; the platform's rules (GPT-OSS only; under zero data
retention, unstored responses only); and every route's usage metered."""

import time

import openai
import pytest
from conftest import wait_until

OSS = "openai.gpt-oss-20b"
GEMMA = "google.gemma-3-27b-it"


def client(base, key, **kw):
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, _strict_response_validation=True, **kw)


@pytest.fixture(scope="module")
def tenants(stack):
    """Two projects that may use the Responses API, each with a key."""
    out = []
    for name in ("tenant-a", "tenant-b"):
        project_id, key = stack.project([OSS, GEMMA], name=name, data_retention="standard")
        out.append((project_id, key["secret"]))
    return out


@pytest.fixture
def sdk(stack, tenants):
    return client(stack.proxies[0], tenants[0][1])


def responses_stats(stack):
    return stack.fake_stats()["responses"]


def test_create_retrieve_and_input_items(stack, sdk, tenants):
    raw = sdk.responses.with_raw_response.create(model=OSS, input="hello there")
    assert isinstance(raw.http_response.json()["created_at"], int), "float timestamps made integers"
    r = raw.parse()
    assert r.status == "completed"
    assert r.output_text == "echo: hello there (turn 1)"
    assert r.usage.output_tokens > 0
    # Any replica can read it: the owner was recorded before the id left the proxy.
    other = client(stack.proxies[1], tenants[0][1])
    got = other.responses.retrieve(r.id)
    assert got.id == r.id and got.output_text == r.output_text
    items = other.responses.input_items.list(r.id)
    assert [i.content[0].text for i in items.data] == ["hello there"]


def test_stream_and_replay(sdk):
    events = list(sdk.responses.create(model=OSS, input="one two", stream=True))
    types = [e.type for e in events]
    assert types[0] == "response.created" and types[-1] == "response.completed", types
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == "echo: one two (turn 1)"
    done = events[-1].response
    assert done.usage.output_tokens == 5
    numbers = [e.sequence_number for e in events]
    assert numbers == sorted(numbers)
    # The stored stream again, after event 2 only.
    replay = list(sdk.responses.retrieve(done.id, stream=True, starting_after=2))
    assert [e.sequence_number for e in replay] == numbers[3:]


def test_previous_response_id_chain(stack, sdk, tenants):
    first = sdk.responses.create(model=OSS, input="a")
    second = sdk.responses.create(model=OSS, input="b", previous_response_id=first.id)
    # The chain continues on the other replica too.
    third = client(stack.proxies[1], tenants[0][1]).responses.create(
        model=OSS, input="c", previous_response_id=second.id
    )
    assert third.output_text == "echo: c (turn 3)"
    assert third.previous_response_id == second.id


def usage_total(stack, project_id):
    status, u = stack.api("GET", f"/projects/{project_id}/usage")
    assert status == 200, u
    return u["total"]


def fresh(stack, name):
    """A project of its own, so its usage totals start at zero."""
    project_id, key = stack.project([OSS], name=name, data_retention="standard")
    return project_id, key["secret"]


def test_background_polling_and_metering(stack):
    stack.faults(background_ms=700)
    project_id, key = fresh(stack, "background")
    sdk = client(stack.proxies[0], key)
    r = sdk.responses.create(model=OSS, input="later please", background=True)
    assert r.status == "queued" and r.background
    while r.status in ("queued", "in_progress"):
        time.sleep(0.1)
        r = sdk.responses.retrieve(r.id)
    assert r.status == "completed"
    assert r.output_text == "echo: later please (turn 1)"
    # Metered once, when it finished (by the replica following it).
    wait_until(lambda: usage_total(stack, project_id)["requests"] == 1, 10, "the background response's usage")
    total = usage_total(stack, project_id)
    assert (total["input_tokens"], total["output_tokens"]) == (r.usage.input_tokens, r.usage.output_tokens)
    time.sleep(1.5)
    assert usage_total(stack, project_id)["requests"] == 1, "metered once"


def test_a_background_response_nobody_polls_is_still_metered(stack):
    stack.faults(background_ms=300)
    project_id, key = fresh(stack, "unpolled")
    r = client(stack.proxies[1], key).responses.create(model=OSS, input="fire and forget", background=True)
    assert r.status == "queued"
    wait_until(lambda: usage_total(stack, project_id)["requests"] == 1, 10, "the follower to meter the response")
    total = usage_total(stack, project_id)
    # "echo: fire and forget (turn 1)": six words out; "fire and forget" + 3 in.
    assert (total["input_tokens"], total["output_tokens"]) == (6, 6)


def test_cancel_and_delete(stack, sdk):
    stack.faults(background_ms=10_000)
    r = sdk.responses.create(model=OSS, input="too slow", background=True)
    cancelled = sdk.responses.cancel(r.id)
    assert cancelled.status == "cancelled"
    assert responses_stats(stack)["cancelled"] >= 1
    done = sdk.responses.create(model=OSS, input="short lived")
    assert sdk.responses.delete(done.id) is None
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve(done.id)


def test_another_projects_response_is_404_and_never_forwarded(stack, tenants):
    a = client(stack.proxies[0], tenants[0][1])
    b = client(stack.proxies[1], tenants[1][1], max_retries=0)
    mine = a.responses.create(model=OSS, input="private")
    before = responses_stats(stack)
    attempts = [
        lambda: b.responses.retrieve(mine.id),
        lambda: b.responses.retrieve(mine.id, stream=True),
        lambda: b.responses.input_items.list(mine.id),
        lambda: b.responses.cancel(mine.id),
        lambda: b.responses.delete(mine.id),
        lambda: b.responses.retrieve("resp_strata_never_saw_this"),
    ]
    for attempt in attempts:
        with pytest.raises(openai.NotFoundError) as e:
            attempt()
        assert e.value.code == "response_not_found"
    with pytest.raises(openai.NotFoundError) as e:
        b.responses.create(model=OSS, input="steal", previous_response_id=mine.id)
    assert e.value.code == "response_not_found"
    assert e.value.body["param"] == "previous_response_id"
    after = responses_stats(stack)
    for field in ("foreign", "created", "cancelled", "deleted"):
        assert after[field] == before[field], f"{field}: something reached Mantle"
    # The owner still has it.
    assert a.responses.retrieve(mine.id).output_text == "echo: private (turn 1)"


def test_a_zero_data_retention_project_uses_responses_only_unstored(stack):
    """AWS's rule for Mantle mode none: store=false (its default there) is served and
    kept nowhere; store=true and background are refused, by the proxy, naming the rule."""
    _, key = stack.project([OSS], name="zdr")  # zdr is the default
    zdr = client(stack.proxies[0], key["secret"])
    r = zdr.responses.create(model=OSS, input="forget me", store=False)
    assert r.output_text == "echo: forget me (turn 1)"
    r = zdr.responses.create(model=OSS, input="also forget me")
    assert r.status == "completed", "store is false by default under mode none"
    # Not stored: nothing to give back (no owner recorded, and Mantle kept nothing).
    with pytest.raises(openai.NotFoundError):
        zdr.responses.retrieve(r.id)
    before = responses_stats(stack)
    for kwargs, param in (({"store": True}, "store"), ({"background": True}, "background")):
        with pytest.raises(openai.BadRequestError) as e:
            zdr.responses.create(model=OSS, input="x", **kwargs)
        assert e.value.code == "zero_data_retention"
        assert e.value.body["param"] == param
        assert "zero data retention" in e.value.message and "store=false" in e.value.message
    after = responses_stats(stack)
    assert after["created"] == before["created"] and after["retention_refused"] == before["retention_refused"], (
        "refused by the proxy: nothing reached Mantle"
    )


def test_models_without_the_responses_api_are_refused(sdk):
    with pytest.raises(openai.BadRequestError) as e:
        sdk.responses.create(model=GEMMA, input="x")
    assert e.value.code == "unsupported_api"
    assert e.value.body["param"] == "model"
    assert "Chat Completions" in e.value.message


def test_usage_from_every_route_counts(stack):
    stack.faults(background_ms=200)
    project_id, key = fresh(stack, "meter-all")
    sdk = client(stack.proxies[0], key)
    before = stack.fake_stats()
    sdk.chat.completions.create(model=OSS, messages=[{"role": "user", "content": "chat"}])
    list(sdk.chat.completions.create(model=OSS, messages=[{"role": "user", "content": "chat stream"}], stream=True))
    sdk.responses.create(model=OSS, input="plain")
    list(sdk.responses.create(model=OSS, input="streamed", stream=True))
    sdk.responses.create(model=OSS, input="in the background", background=True)
    wait_until(lambda: usage_total(stack, project_id)["requests"] == 5, 10, "usage of all five")
    after = stack.fake_stats()
    expected_in = (after["prompt_tokens"] - before["prompt_tokens"]) + (
        after["responses"]["input_tokens"] - before["responses"]["input_tokens"])
    expected_out = (after["completion_tokens"] - before["completion_tokens"]) + (
        after["responses"]["output_tokens"] - before["responses"]["output_tokens"])
    total = usage_total(stack, project_id)
    assert (total["input_tokens"], total["output_tokens"]) == (expected_in, expected_out)
    assert total["errors"] == 0
