"""OpenAI's Admin API shapes served by strata's control plane, read with the official
`openai` SDK's admin client (strict response validation): usage and costs of traffic
that went through the proxy, bucketed, grouped and paged as OpenAI documents."""

import time

import openai
import pytest
from conftest import wait_until

OSS = "openai.gpt-oss-20b"
GEMMA = "google.gemma-3-27b-it"


def admin(stack, token):
    return openai.OpenAI(
        base_url=f"{stack.control}/v1", api_key="unused", admin_api_key=token,
        _strict_response_validation=True, max_retries=0,
    ).admin.organization


@pytest.fixture(scope="module")
def traffic(stack):
    """Two keys of one project: 2 requests on OSS with the first, 1 on GEMMA with the other."""
    project_id, first = stack.project([OSS, GEMMA], name="admin-usage")
    second = stack.key(project_id, name="second")
    start = int(time.time()) - 60
    for key, model in ((first, OSS), (first, OSS), (second, GEMMA)):
        sdk = openai.OpenAI(base_url=f"{stack.proxies[0]}/v1", api_key=key["secret"])
        sdk.chat.completions.create(model=model, messages=[{"role": "user", "content": "hello there"}])

    def metered():
        status, usage = stack.api("GET", f"/projects/{project_id}/usage")
        return status == 200 and usage["total"]["requests"] == 3

    wait_until(metered, 15, "the proxy's usage to reach the control plane")
    return project_id, first["id"], second["id"], start


def test_completions_usage_grouped_by_project_model_and_key(stack, traffic):
    project_id, first, second, start = traffic
    page = admin(stack, stack.admin).usage.completions(
        start_time=start, bucket_width="1h", group_by=["project_id", "model", "api_key_id"],
        project_ids=[project_id],
    )
    assert page.object == "page" and not page.has_more
    results = [r for bucket in page.data for r in bucket.results]
    by = {(r.model, r.api_key_id): r for r in results}
    assert set(by) == {(OSS, first), (GEMMA, second)}, results
    assert by[(OSS, first)].num_model_requests == 2
    assert by[(GEMMA, second)].num_model_requests == 1
    assert all(r.project_id == project_id and r.input_tokens > 0 and r.output_tokens > 0 for r in results)
    status, usage = stack.api("GET", f"/projects/{project_id}/usage")
    assert sum(r.input_tokens for r in results) == usage["total"]["input_tokens"]
    for bucket in page.data:
        assert bucket.end_time - bucket.start_time == 3600


def test_costs_by_project_and_line_item_and_paging(stack, traffic):
    project_id, _, _, start = traffic
    org = admin(stack, stack.admin)
    query = dict(start_time=start - 3 * 86400, group_by=["project_id", "line_item"],
                 project_ids=[project_id], limit=2)
    pages = [org.usage.costs(**query)]
    while pages[-1].has_more:
        pages.append(org.usage.costs(**query, page=pages[-1].next_page))
    # Four or five daily buckets (five when the traffic is just past midnight), two a
    # page, the older days empty.
    days = [b.start_time for p in pages for b in p.data]
    assert len(days) in (4, 5) and len(pages) == (len(days) + 1) // 2, days
    assert all(len(p.data) == 2 for p in pages[:-1])
    assert [len(b.results) for b in pages[0].data] == [0, 0]
    assert days == sorted(days) and len(set(days)) == len(days)
    assert all(b - a == 86400 for a, b in zip(days, days[1:]))
    results = [r for p in pages for b in p.data for r in b.results]
    assert {r.line_item for r in results} == {OSS, GEMMA}
    status, usage = stack.api("GET", f"/projects/{project_id}/usage")
    total = sum(r.amount.value for r in results)
    assert total == pytest.approx(usage["total"]["cost_usd"]) and total > 0
    assert all(r.amount.currency == "usd" and r.project_id == project_id for r in results)


def test_who_may_read_and_bad_parameters(stack, traffic):
    finance = admin(stack, stack.token("fin@example.com", "finance"))
    assert finance.usage.completions(start_time=traffic[3]).object == "page"
    with pytest.raises(openai.PermissionDeniedError):
        admin(stack, stack.token("dev@example.com", "developer")).usage.costs(start_time=traffic[3])
    org = admin(stack, stack.admin)
    with pytest.raises(openai.BadRequestError) as e:
        org.usage.completions(start_time=0, group_by=["user_id"])
    assert "user_id" in e.value.message
    with pytest.raises(openai.BadRequestError):
        org.usage.costs(start_time=0, bucket_width="1h")
    with pytest.raises(openai.AuthenticationError):
        admin(stack, "not-a-token").usage.completions(start_time=0)
