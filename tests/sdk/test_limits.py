"""Rate limits and budgets as the official SDK meets them, on the two proxy replicas
that share one Redis: a 429 whose retry-after the SDK honours, and a project's budget
and a cost tag's hard budget over two projects that hold against 200 concurrent
requests split across both replicas."""

import asyncio
import time
import uuid
from datetime import datetime, timezone

import openai
import pytest
from conftest import wait_until

OSS = "openai.gpt-oss-20b"
BIG = "openai.gpt-oss-120b"


def client(base, key, **kw):
    return openai.OpenAI(base_url=f"{base}/v1", api_key=key, _strict_response_validation=True, **kw)


def patch_project(stack, project_id, body):
    status, p = stack.api("PATCH", f"/projects/{project_id}", body)
    assert status == 200, p
    # The proxies follow the snapshot within a second.
    time.sleep(1.5)


def rate_limited(stack, base, project_id, kind):
    for line in stack.proxy_metrics(base).splitlines():
        if line.startswith("strata_proxy_rate_limited_total{") and f'project="{project_id}"' in line \
                and f'kind="{kind}"' in line:
            return int(float(line.rsplit(" ", 1)[1]))
    return 0


def test_a_429_retry_after_is_honoured_by_the_sdk(stack):
    project_id, key = stack.project([OSS], name="rpm")
    patch_project(stack, project_id, {"rate_limits": {"rpm": 1, "tpm": None}})
    # Start late in a minute so the wait the 429 asks for is short.
    while datetime.now(timezone.utc).second < 54:
        time.sleep(0.2)
    sdk = client(stack.proxies[0], key["secret"], max_retries=2)
    first = sdk.chat.completions.with_raw_response.create(
        model=OSS, messages=[{"role": "user", "content": "first"}]
    )
    assert first.headers["x-ratelimit-limit-requests"] == "1"
    assert first.headers["x-ratelimit-remaining-requests"] == "0"
    # The other replica refuses the second request of the minute (one shared count);
    # the SDK waits the retry-after and its retry lands in the next minute.
    other = client(stack.proxies[1], key["secret"], max_retries=2)
    started = time.monotonic()
    second = other.chat.completions.with_raw_response.create(
        model=OSS, messages=[{"role": "user", "content": "second"}]
    )
    waited = time.monotonic() - started
    assert second.parse().choices[0].message.content == "echo: second"
    assert second.retries_taken == 1, "one 429, then success"
    assert waited >= 1, f"the SDK retried after {waited:.2f} s, sooner than retry-after"
    assert rate_limited(stack, stack.proxies[1], project_id, "requests") == 1

    # Without retries the SDK raises RateLimitError with OpenAI's code.
    with pytest.raises(openai.RateLimitError) as e:
        client(stack.proxies[0], key["secret"], max_retries=0).chat.completions.create(
            model=OSS, messages=[{"role": "user", "content": "third"}]
        )
    assert e.value.code == "rate_limit_exceeded"
    assert 1 <= int(e.value.response.headers["retry-after"]) <= 60


def set_price(stack, model, input_usd, output_usd):
    status, m = stack.api("GET", f"/models/{model}")
    assert status == 200, m
    body = {k: m[k] for k in (
        "provider", "display_name", "supports_chat", "supports_responses", "supports_streaming",
        "supports_multiple_choices", "supports_logprobs", "accepts_content_parts", "regions",
    )}
    body.update(input_price_per_mtok_usd=input_usd, output_price_per_mtok_usd=output_usd)
    status, updated = stack.api("PUT", f"/models/{model}", body)
    assert status == 200, updated
    return m["input_price_per_mtok_usd"], m["output_price_per_mtok_usd"]


def test_a_budget_holds_against_200_concurrent_requests_on_two_replicas(stack):
    # Each request costs exactly $0.0002: two output tokens ("echo: hi") at $100 per
    # million, input free. A $0.01 budget fits 50.
    old_prices = set_price(stack, BIG, 0, 100)
    try:
        project_id, key = stack.project([BIG], name="budget")
        patch_project(stack, project_id, {"monthly_budget_usd": 0.01, "rate_limits": {"rpm": None, "tpm": None}})
        before = stack.fake_stats()

        async def one(i):
            sdk = openai.AsyncOpenAI(
                base_url=f"{stack.proxies[i % 2]}/v1", api_key=key["secret"],
                _strict_response_validation=True, max_retries=0,
            )
            try:
                await sdk.chat.completions.create(
                    model=BIG, max_tokens=2, messages=[{"role": "user", "content": "hi"}]
                )
                return "ok"
            except openai.RateLimitError as e:
                return e.code
            finally:
                await sdk.close()

        async def burst():
            return await asyncio.gather(*(one(i) for i in range(200)))

        outcomes = asyncio.run(burst())
        admitted = outcomes.count("ok")
        assert admitted <= 51, f"{admitted} admitted against a budget that fits 50"
        assert admitted >= 50, f"only {admitted} admitted: reservations were not settled"
        assert set(outcomes) == {"ok", "insufficient_quota"}, set(outcomes)
        after = stack.fake_stats()
        calls = after["calls"] - before["calls"]
        completion = after["completion_tokens"] - before["completion_tokens"]
        assert calls == admitted

        # What the control plane recorded equals what the fake served, priced.
        def recorded():
            status, u = stack.api("GET", f"/projects/{project_id}/usage")
            assert status == 200, u
            return u["total"]

        wait_until(lambda: recorded()["requests"] == admitted, 10, "usage from both replicas")
        total = recorded()
        assert total["output_tokens"] == completion
        assert round(total["cost_usd"] * 1e6) == completion * 100
        assert round(total["cost_usd"] * 1e6) <= 10_000, "spend within the budget"

        status, budget = stack.api("GET", f"/projects/{project_id}/budget")
        assert status == 200, budget
        assert [e["threshold_percent"] for e in budget["events"]] == [50, 80, 100], budget
        assert budget["percent_used"] == pytest.approx(100.0)
    finally:
        set_price(stack, BIG, *old_prices)


def test_a_tags_hard_budget_holds_across_two_projects_on_two_replicas(stack):
    # $0.0002 a request (as above); a hard $0.01 budget on a cost tag both projects
    # carry fits 50 requests between them, whichever project and replica each uses.
    old_prices = set_price(stack, BIG, 0, 100)
    tag = f"cc-{uuid.uuid4().hex[:8]}"
    budget_id = None
    try:
        keys = []
        for name in ("tag-a", "tag-b"):
            project_id, key = stack.project([BIG], name=name, tags={"CostCenter": tag})
            keys.append(key["secret"])
        status, budget = stack.api("POST", "/budgets", {
            "name": f"budget-{tag}", "scope": "tag", "target": f"CostCenter={tag}",
            "period": "month", "amount_usd": 0.01, "enforcement": "hard",
        })
        assert status == 201, budget
        budget_id = budget["id"]
        time.sleep(1.5)  # the proxies follow the snapshot within a second

        async def one(i):
            sdk = openai.AsyncOpenAI(
                base_url=f"{stack.proxies[i % 2]}/v1", api_key=keys[(i // 2) % 2],
                _strict_response_validation=True, max_retries=0,
            )
            try:
                await sdk.chat.completions.create(
                    model=BIG, max_tokens=2, messages=[{"role": "user", "content": "hi"}]
                )
                return "ok"
            except openai.RateLimitError as e:
                assert f"budget 'budget-{tag}'" in e.message, e.message
                return e.code
            finally:
                await sdk.close()

        async def burst():
            return await asyncio.gather(*(one(i) for i in range(200)))

        outcomes = asyncio.run(burst())
        admitted = outcomes.count("ok")
        assert 50 <= admitted <= 51, f"{admitted} admitted against a budget that fits 50"
        assert set(outcomes) == {"ok", "insufficient_quota"}, set(outcomes)

        def spent():
            status, listed = stack.api("GET", "/budgets")
            assert status == 200, listed
            return next(b for b in listed["items"] if b["id"] == budget_id)["spent_usd"]

        wait_until(lambda: round(spent() * 1e6) == admitted * 200, 10, "usage from both replicas")
        assert round(spent() * 1e6) <= 10_000, "spend within the budget"
    finally:
        if budget_id:
            stack.api("DELETE", f"/budgets/{budget_id}")
        set_price(stack, BIG, *old_prices)
