"""Finance and a developer use the pages in headless Chromium (Debian's), as people
would: sign in with a token, read an environment's costs, switch the tag key,
download the CSV, make a key; a developer is refused another team's project."""

import datetime
import re

import pytest
from playwright.sync_api import expect, sync_playwright

from conftest import CHROMIUM, SHOTS, cost_results


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture(scope="module")
def seeded(site):
    checkout = site.project("checkout", "payments", monthly_budget_usd=500,
                            tags={"CostCenter": "cc-1234"})
    search = site.project("search", "discovery", tags={"CostCenter": "cc-9"})
    today = datetime.datetime.now(datetime.timezone.utc).date()
    days = [today - datetime.timedelta(days=n) for n in range(3, 0, -1)]

    def by_project(d):
        return [("prod", checkout["id"], "12.5"), ("prod", search["id"], "2.25"), ("prod", "", "1.75")]

    def by_cost_center(d):
        return [("prod", "cc-1234", "12.5"), ("prod", "cc-9", "2.25"), ("prod", "", "1.75")]

    out = site.refresh_costs(
        cost_results(days, by_project, "strata:project"),
        cost_results(days, by_cost_center, "CostCenter"),
    )
    assert "refreshed: strata:project, CostCenter" in out, out
    return {"checkout": checkout, "search": search, "days": days}


def sign_in(page, site, token):
    page.goto(f"{site.url}/ui/env/prod/costs")
    expect(page).to_have_url(re.compile(r"/ui/signin\?next="))
    page.get_by_label("Bearer token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def test_finance_reads_costs_switches_tag_key_and_downloads_csv(site, seeded, browser, tmp_path):
    SHOTS.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(accept_downloads=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    sign_in(page, site, site.mint("fin@example.com", "finance"))
    # Back on the page asked for, signed in.
    expect(page).to_have_url(re.compile(r"/ui/env/prod/costs$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Costs: prod")
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["strata_session"]["httpOnly"] and cookies["strata_session"]["sameSite"] == "Strict"

    # A range covering the seeded days, through the date pickers.
    first, last = seeded["days"][0], seeded["days"][-1]
    page.get_by_label("From").fill(str(first))
    page.get_by_label("Through").fill(str(last))
    page.get_by_role("button", name="Show").click()
    by_project = page.get_by_role("table", name=re.compile("Spend per project"))
    expect(by_project.get_by_role("row", name=re.compile("checkout"))).to_contain_text("$37.50")
    expect(by_project.get_by_role("row", name=re.compile("search"))).to_contain_text("$6.75")
    expect(by_project.get_by_role("row", name=re.compile("Untagged"))).to_contain_text("$5.25")
    # Budget burn against checkout's $500 and a month end that says where it comes from
    # (moto gives no forecast, so a linear projection, labelled).
    expect(page.get_by_text("Linear projection")).to_be_visible()
    chart = page.get_by_role("img", name=re.compile("Daily cost by project in prod"))
    expect(chart).to_be_visible()
    assert page.locator("svg.chart rect").count() == 9  # 3 days × (checkout, search, untagged)

    # No traffic went through the proxy for the billed days: estimate vs bill flags
    # each project's billed day as having bypassed it.
    flagged = page.get_by_role("table", name=re.compile("Flagged project-days"))
    checkout_days = flagged.get_by_role("row", name=re.compile("checkout"))
    expect(checkout_days).to_have_count(3)
    expect(checkout_days.first).to_contain_text("Bypassed the proxy")
    expect(checkout_days.first).to_contain_text("$12.50")
    expect(flagged.get_by_role("row", name=re.compile("search"))).to_have_count(3)

    # Switch the breakdown to the CostCenter tag key.
    page.get_by_label("Break down by tag").select_option("tag:CostCenter")
    page.get_by_role("button", name="Show").click()
    expect(page).to_have_url(re.compile(r"group_by=tag%3ACostCenter"))
    breakdown = page.get_by_role("table", name=re.compile("Spend per CostCenter value"))
    expect(breakdown.get_by_role("row", name=re.compile("cc-1234"))).to_contain_text("$37.50")
    expect(breakdown.get_by_role("row", name=re.compile("no CostCenter tag"))).to_contain_text("$5.25")
    page.screenshot(path=str(SHOTS / "costs-prod-finance.png"), full_page=True)

    # Download the CostCenter table as CSV.
    with page.expect_download() as download:
        page.get_by_role("link", name=re.compile(r"Download CSV \(per CostCenter")).click()
    saved = tmp_path / download.value.suggested_filename
    download.value.save_as(saved)
    assert saved.name.endswith(".csv") and "prod" in saved.name
    text = saved.read_text()
    assert text.splitlines()[0].startswith("day,group,untagged"), text
    assert f"{first},cc-1234,false" in text, text
    assert sum(1 for line in text.splitlines() if ",true," in line) == 3, "untagged kept per day"

    # The same range as FinOps FOCUS 1.0: Cost Explorer's actuals, marked as such.
    with page.expect_download() as focus:
        page.get_by_role("link", name=re.compile("FinOps FOCUS 1.0")).click()
    saved = tmp_path / focus.value.suggested_filename
    focus.value.save_as(saved)
    import csv as csvlib
    rows = list(csvlib.DictReader(saved.open()))
    assert saved.name.startswith("focus-1.0-prod-")
    checkout_rows = [r for r in rows if r["ResourceName"] == "checkout"]
    assert len(checkout_rows) == 3 and all(r["BilledCost"] == "12.500000" for r in checkout_rows), rows
    assert all(r["x_Source"] == "aws-cost-explorer" and r["ServiceName"] == "Amazon Bedrock" for r in rows)

    # Finance sees a project but no keys.
    page.get_by_role("link", name="Projects").first.click()
    page.get_by_role("link", name=re.compile("checkout")).first.click()
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    expect(page.get_by_role("heading", name="Keys")).to_have_count(0)
    context.close()


def test_developer_makes_a_key_and_is_refused_another_teams_project(site, seeded, browser):
    own = site.project("dev-own", "payments")
    status, _ = site.api("PUT", f"/projects/{own['id']}/members/dev@example.com", {"role": "developer"})
    assert status in (200, 201)
    context = browser.new_context()
    page = context.new_page()
    sign_in(page, site, site.mint("dev@example.com", "developer"))
    # No costs for a developer: the page says so.
    expect(page.get_by_role("heading", level=1)).to_have_text("Not allowed")
    page.goto(f"{site.url}/ui")
    expect(page.get_by_role("link", name=re.compile("dev-own"))).to_be_visible()
    expect(page.get_by_role("link", name=re.compile("checkout"))).to_have_count(0)

    response = page.goto(f"{site.url}/ui/projects/{seeded['checkout']['id']}")
    assert response.status == 404
    expect(page.get_by_role("heading", level=1)).to_have_text("Not found")

    page.goto(f"{site.url}/ui/projects/{own['id']}")
    page.get_by_label("Name", exact=True).fill("laptop")
    page.get_by_label(re.compile("Expires in")).fill("7")
    page.get_by_role("button", name="Create key").click()
    secret = page.get_by_label(re.compile("Secret for the OpenAI SDK"))
    expect(secret).to_have_value(re.compile(r"^sk-strata-"))
    # Coming back to the page (not re-posting the form): the secret is gone.
    page.goto(f"{site.url}/ui/projects/{own['id']}")
    expect(page.get_by_label(re.compile("Secret for the OpenAI SDK"))).to_have_count(0)
    page.get_by_role("button", name="Revoke key laptop").click()
    expect(page.get_by_role("row", name=re.compile("laptop"))).to_contain_text("revoked")
    context.close()


def test_pages_pass_axe_accessibility_checks(site, seeded, browser):
    """axe-core (WCAG 2.1 A/AA rules: labels, headings, table semantics, contrast …)
    finds nothing on the sign-in form, the project list, a cost page and a project page."""
    from axe_playwright_python.sync_playwright import Axe

    axe = Axe()
    # axe is injected as a script, which the pages' CSP (script-src 'none') refuses.
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    page.goto(f"{site.url}/ui/signin")
    results = {"sign-in": axe.run(page)}
    page.get_by_label("Bearer token").fill(site.admin)
    page.get_by_role("button", name="Sign in").click()
    first = seeded["days"][0]
    for name, path in [
        ("projects", "/ui"),
        ("costs", f"/ui/env/prod/costs?from={first}&group_by=tag:CostCenter"),
        ("project", f"/ui/projects/{seeded['checkout']['id']}"),
        ("notifications", "/ui/notifications"),
        ("budgets", "/ui/budgets"),
    ]:
        response = page.goto(f"{site.url}{path}")
        assert response.status == 200, name
        results[name] = axe.run(page)
    problems = {
        name: [(v["id"], v["help"], [n["target"] for n in v["nodes"]][:3]) for v in r.response["violations"]]
        for name, r in results.items()
        if r.violations_count
    }
    assert not problems, problems
    context.close()


def test_admin_sends_a_test_notification_and_reads_the_delivery_log(site, browser):
    """A receiver on loopback takes one test; a dead port refuses the other: the page
    says how each went, and the delivery log keeps it."""
    import http.server
    import socket
    import threading

    got = []

    class Hook(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            got.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    for name, url in (("ops-hook", f"http://127.0.0.1:{server.server_port}/hook"), ("dead-hook", f"http://127.0.0.1:{dead}/x")):
        status, body = site.api("POST", "/notification-destinations", {"name": name, "kind": "webhook", "url": url})
        assert status == 201, body
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{site.url}/ui/notifications")
    page.get_by_label("Bearer token").fill(site.admin)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Notifications")
    table = page.get_by_role("table", name="Notification destinations")
    expect(table.get_by_role("row", name=re.compile("ops-hook"))).to_contain_text("/…")
    page.get_by_role("button", name="Send a test to ops-hook").click()
    expect(page.get_by_role("status")).to_have_text("Test sent to ops-hook: delivered")
    assert len(got) == 1 and b'"type":"test"' in got[0]
    page.get_by_role("button", name="Send a test to dead-hook").click()
    expect(page.get_by_role("status")).to_contain_text("Test sent to dead-hook: not accepted: could not connect")
    expect(table.get_by_role("row", name=re.compile("dead-hook"))).to_contain_text("could not connect")
    page.get_by_role("link", name="ops-hook").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Deliveries: ops-hook")
    expect(page.get_by_role("row", name=re.compile("test"))).to_contain_text("delivered")
    server.shutdown()
    context.close()


def test_admin_adds_a_hard_budget_and_changes_it_on_the_budgets_page(site, browser):
    """The form adds a team's hard budget, the table shows its spend this period, a
    refused form keeps what was typed and says why, and the row's controls change it."""
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{site.url}/ui/budgets")
    page.get_by_label("Bearer token").fill(site.admin)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Budgets")
    page.get_by_label("Name", exact=True).fill("payments-weekly-ui")
    page.get_by_label("Covers").select_option("team")
    page.get_by_label("Which one").fill("payments")
    page.get_by_label("Period", exact=True).select_option("week")
    page.get_by_label("Amount per period (USD)").fill("0.001")
    # The browser's own check refuses a sub-cent amount before it is sent.
    page.get_by_role("button", name="Add budget").click()
    expect(page.get_by_role("status")).to_have_count(0)
    page.get_by_label("Amount per period (USD)").fill("25")
    page.get_by_label("Enforcement", exact=True).select_option("hard")
    page.get_by_role("button", name="Add budget").click()
    expect(page.get_by_role("status")).to_have_text("Budget 'payments-weekly-ui' added.")
    table = page.get_by_role("table", name="Budgets and their spend this period")
    row = table.get_by_role("row", name=re.compile("payments-weekly-ui"))
    expect(row).to_contain_text("team payments")
    expect(row).to_contain_text("$25.00")
    expect(row.get_by_role("cell", name="hard", exact=True)).to_be_visible()
    # The same name again: refused, the reason shown, the values kept.
    page.get_by_label("Name", exact=True).fill("payments-weekly-ui")
    page.get_by_label("Which one").fill("payments")
    page.get_by_label("Amount per period (USD)").fill("30")
    page.get_by_role("button", name="Add budget").click()
    expect(page.get_by_role("alert")).to_contain_text("a budget named 'payments-weekly-ui' exists")
    expect(page.get_by_label("Amount per period (USD)")).to_have_value("30")
    row.get_by_label("Amount of payments-weekly-ui (USD)").fill("40")
    row.get_by_label("Enforcement of payments-weekly-ui").select_option("soft")
    row.get_by_role("button", name="Save payments-weekly-ui").click()
    expect(page.get_by_role("status")).to_have_text("Budget 'payments-weekly-ui' is now $40.00 per week, soft.")
    status, body = site.api("GET", "/budgets")
    assert status == 200, body
    mine = [b for b in body["items"] if b["name"] == "payments-weekly-ui"]
    assert [(b["amount_usd"], b["enforcement"]) for b in mine] == [(40.0, "soft")], body
    row.get_by_role("button", name="Delete payments-weekly-ui").click()
    expect(page.get_by_role("status")).to_have_text("Budget removed.")
    expect(table.get_by_role("row", name=re.compile("payments-weekly-ui"))).to_have_count(0)
    context.close()
