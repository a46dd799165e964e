"""The ledger's web UI at /ledger/ through the access point, in headless Debian chromium (Playwright):
sign-in, a transfer, the CSRF and session checks, and an admin's Failover and Failback buttons running the
ledger plan on real PostgreSQL nodes. Screenshots go to test-artifacts/console/ledger-*.png."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from browserkit import shot
from regionflow.workloads.ledger.users import UserStore, users_path
from stackkit import EAST, WEST, Stack, running_stack

pytestmark = [pytest.mark.timeout(600), pytest.mark.slow]

TELLER, ADMIN, PASSWORD = "teller", "operator", "correct horse battery"


@pytest.fixture(scope="module")
def stack() -> Stack:
    import shutil
    import tempfile
    from pathlib import Path

    base = Path(tempfile.mkdtemp(prefix="regionflow-ledger-ui-"))
    base.chmod(0o711)  # the PostgreSQL nodes run as the postgres user
    try:
        with running_stack(base / "stack", init_args=("--ledger",)) as s:
            s.rf("ledger", "seed", "--accounts", "4", "--balance", "500")
            store = UserStore(users_path(s.config.data_dir))
            store.add(TELLER, password=PASSWORD)
            store.add(ADMIN, admin=True, password=PASSWORD)
            yield s
    finally:
        shutil.rmtree(base, ignore_errors=True)




def sign_in(page: Page, stack: Stack, user: str, password: str = PASSWORD) -> None:
    page.goto(f"{stack.url()}/ledger/")
    page.fill("input[name=user]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")


def test_the_api_behind_the_ui_needs_a_session_and_its_csrf_token(stack: Stack):
    with httpx.Client(base_url=stack.url(), timeout=10) as anon:
        assert anon.get("/ledger/ui/state").status_code == 401
        assert anon.post("/ledger/ui/transfers", json={}).status_code == 401
        page = anon.get("/ledger/").text
        nonce = page.split('name="nonce" value="')[1].split('"')[0]
        wrong = anon.post("/ledger/login", data={"user": TELLER, "password": "nope", "nonce": nonce})
        assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
        forged = anon.post("/ledger/login", data={"user": TELLER, "password": PASSWORD, "nonce": "1.forged"})
        assert forged.status_code == 403
        ok = anon.post("/ledger/login", data={"user": TELLER, "password": PASSWORD, "nonce": nonce})
        assert ok.status_code == 303
        cookie = ok.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/ledger" in cookie
        assert anon.get("/ledger/ui/state").status_code == 200
        body = {"from": "acct-0001", "to": "acct-0002", "amount": "1.00", "idempotency_key": "ui-csrf"}
        assert anon.post("/ledger/ui/transfers", json=body).status_code == 403  # no CSRF token
        assert anon.post("/ledger/ui/transfers", json=body, headers={"x-csrf-token": "guess"}).status_code == 403
        switch = anon.post("/ledger/ui/switch", json={"action": "failover", "confirm": WEST})
        assert switch.status_code == 403
        # The access point forwards everyone's requests with one client: one caller's sign-in is not another's.
        with httpx.Client(base_url=stack.url(), timeout=10) as other:
            assert other.get("/ledger/ui/state").status_code == 401
            assert "Sign in" in other.get("/ledger/").text
        # An altered cookie is no session.
        anon.cookies.set("rf_ledger", anon.cookies["rf_ledger"][:-2] + "xx", path="/ledger")
        assert anon.get("/ledger/ui/state").status_code == 401
    with stack.http() as h:
        assert h.get("/ledger/api/transfers").json()["transfers"] == []  # nothing above moved money


def test_sign_in_send_a_transfer_and_see_it(stack: Stack, page: Page):
    sign_in(page, stack, TELLER)
    expect(page.locator("#served-by")).to_have_text(EAST)
    expect(page.locator("#db-primary")).to_have_text(EAST)
    expect(page.locator("#admin")).to_be_hidden()  # a teller has no region switch
    cookies = {c["name"]: c for c in page.context.cookies()}
    assert cookies["rf_ledger"]["httpOnly"] and cookies["rf_ledger"]["sameSite"] == "Strict"
    expect(page.locator("#from option")).to_have_count(4)
    page.select_option("#from", "acct-0001")
    page.select_option("#to", "acct-0003")
    page.fill("#amount", "42.50")
    page.click("#send-button")
    expect(page.locator("#transfer-result")).to_contain_text(f"committed in {EAST}")
    expect(page.locator("#transfers tbody tr").first).to_contain_text("42.50")
    expect(page.locator("#total")).to_have_text("2000.00")
    page.fill("#amount", "9999")
    page.click("#send-button")
    expect(page.locator("#transfer-result")).to_contain_text("insufficient funds")
    shot(page, "ledger-transfer")
    with stack.http() as h:
        balances = {a["id"]: a["balance"] for a in h.get("/ledger/api/accounts").json()["accounts"]}
    assert balances["acct-0001"] == "457.50" and balances["acct-0003"] == "542.50"


def test_admin_fails_over_and_back_with_the_buttons(stack: Stack, page: Page):
    sign_in(page, stack, ADMIN)
    expect(page.locator("#admin")).to_be_visible()
    page.click("#failover")
    expect(page.locator("#confirm-target")).to_have_text(WEST)
    page.fill("#confirm", "us-west-1")
    page.click("#confirm-button")
    expect(page.locator("#execution")).to_contain_text("type the target region's name")
    page.fill("#confirm", WEST)
    page.click("#confirm-button")
    expect(page.locator("#execution-status")).to_contain_text("SUCCEEDED", timeout=180_000)
    expect(page.locator("#execution li")).to_have_count(7)
    expect(page.locator("#db-primary")).to_have_text(WEST, timeout=30_000)
    expect(page.locator("#served-by")).to_have_text(WEST, timeout=30_000)
    shot(page, "ledger-failover")
    # Transfers go on in us-west-2.
    page.fill("#amount", "5.00")
    page.click("#send-button")
    expect(page.locator("#transfer-result")).to_contain_text(f"committed in {WEST}", timeout=30_000)

    page.click("#failback")
    expect(page.locator("#confirm-target")).to_have_text(EAST)
    page.fill("#confirm", EAST)
    page.click("#confirm-button")
    expect(page.locator("#execution-status")).to_contain_text("SUCCEEDED", timeout=300_000)
    expect(page.locator("#db-primary")).to_have_text(EAST, timeout=30_000)
    shot(page, "ledger-failback")
    def audit_from_east() -> dict | None:  # the access point follows the control within its cache's second
        with stack.http() as h:
            audit = h.get("/ledger/api/audit").json()
        return audit if audit.get("region") == EAST else None

    audit = stack.eventually(audit_from_east, timeout=30, what="the access point to send reads to us-east-1")
    assert audit["total_balance"] == "2000.00"
    assert {t["amount"] for t in audit["transfers"]} >= {"42.50", "5.00"}
