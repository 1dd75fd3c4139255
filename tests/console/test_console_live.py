"""A data steward's day in a real headless Chromium against a real sandbox network.

Log in to the insurer's console, see a pending job with its columns and recipients,
approve it, watch it reach `succeeded`, find the approval and the release in the audit
page with the chain verified; reject another with a reason the analyst's CLI reports. And
the refusals: no token, a wrong token, a forged CSRF form, a form posted from another
origin. TEENET_CONSOLE_SCREENSHOTS=DIR saves the approvals, jobs and audit pages there.
"""

from __future__ import annotations

import http.server
import os
import re
import threading
from pathlib import Path

import httpx
import pytest

from console_helpers import CLAIMS_MODEL, wait_for

pytestmark = pytest.mark.slow

SHOTS = os.environ.get("TEENET_CONSOLE_SCREENSHOTS")


@pytest.fixture(scope="module")
def insurer(console_network):
    return console_network.consoles["insurer"]


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    try:
        yield context.new_page()
    finally:
        context.close()


def log_in(page, console, operator: str = "Dana") -> None:
    page.goto(console.url + "/approvals")
    assert page.url.endswith("/login"), "a page without a session must send the browser to the login page"
    page.fill("#operator", operator)
    page.fill("#token", console.token)
    page.click("button[type=submit]")
    page.wait_for_url(console.url + "/approvals")


def insurer_status(network, capsys, job_id: str) -> str:
    return network.status(capsys, job_id)["state"]


def test_no_token_and_wrong_token_are_refused(page, insurer):
    page.goto(insurer.url + "/audit")
    assert page.url == insurer.url + "/login"
    assert httpx.get(insurer.url + "/metrics").status_code == 401
    assert httpx.get(insurer.url + "/metrics", headers={"authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(insurer.url + "/audit.jsonl", follow_redirects=False).status_code == 303

    page.fill("#operator", "Mallory")
    page.fill("#token", "not-the-token")
    with page.expect_response(lambda r: r.url.endswith("/login") and r.request.method == "POST") as resp:
        page.click("button[type=submit]")
    assert resp.value.status == 401
    assert "wrong operator token" in page.inner_text("main")
    page.goto(insurer.url + "/approvals")
    assert page.url == insurer.url + "/login", "a failed login must not give a session"


def test_approve_in_the_browser_then_watch_it_succeed_and_find_it_audited(page, insurer, console_network, capsys):
    job_id = console_network.submit(capsys, CLAIMS_MODEL, "claims-model")
    log_in(page, insurer)
    section = f"#job-{job_id[:12]}"
    wait_for(lambda: page.reload() or page.locator(section).count() == 1, 30, "the job on the approvals page")
    card = page.locator(section)
    text = card.inner_text()
    # the insurer's columns the job reads, and who receives what
    for column in ("customer_id", "premium", "claims"):
        assert column in card.locator("td.cols").inner_text()
    assert "region" not in card.locator("td.cols").inner_text()  # not read, so not shown as read
    recipients = [r.inner_text() for r in card.locator("td.recipients").all()]
    assert recipients == ["analyst, bank", "analyst, bank, insurer"]
    assert re.search(r"Smallest group \(k\)\s*10\b", text)
    assert "no auto-approve rule covers this job" in text
    # the privacy budget left, from the node's own ledger (a train job spends none of it)
    assert "left: policies" in text and "no budget ledger" not in text
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / "console-approvals.png"), full_page=True)
    assert insurer_status(console_network, capsys, job_id) == "awaiting_approvals"

    card.locator("input[name=reason]").fill("within our model-sharing agreement")
    card.locator("button.approve").click()
    page.wait_for_url(re.compile(r".*/approvals\?done=approve"))
    assert f"Recorded approve for job {job_id[:12]}" in page.inner_text("main")
    # recorded at once; signed by the daemon on its next poll, after which the job leaves the page
    decided = page.locator(section)
    assert decided.count() == 0 or (decided.locator("form.decide").count() == 0
                                    and "approve recorded by Dana" in decided.inner_text())
    wait_for(lambda: page.reload() or page.locator(section).count() == 0, 15, "the signed job to leave the page")

    page.goto(insurer.url + "/approvals?done=approve:" + "0" * 12)  # a crafted link claims a decision
    assert "Recorded" not in page.inner_text("main")

    page.goto(insurer.url + "/jobs")
    row = page.locator(f"tr.job-row[data-job='{job_id}']")
    # htmx refreshes the rows every two seconds; no reload here
    page.wait_for_function(
        "id => { const r = document.querySelector(`tr.job-row[data-job='${id}'] td.network-state`);"
        " return r && r.textContent.trim() === 'succeeded'; }", arg=job_id, timeout=90_000)
    timeline = row.locator("ol.timeline").inner_text()
    for step in ("received", "awaiting operator", "approved", "attested", "uploaded", "network: running",
                 "network: succeeded"):
        assert step in timeline, f"the timeline lacks '{step}'"
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / "console-jobs.png"), full_page=True)
    assert insurer_status(console_network, capsys, job_id) == "succeeded"

    page.goto(insurer.url + f"/audit?job={job_id[:16]}")
    assert page.inner_text("#chain-status").startswith("Chain verified")
    approved = page.locator("tr.event-approved")
    assert approved.count() == 1
    assert "operator:Dana" in approved.inner_text()
    released = page.locator("tr.event-released_table")
    assert released.count() == 1
    assert "compute-1" in released.inner_text() and "sealed_bytes" in released.inner_text()
    if SHOTS:
        page.screenshot(path=str(Path(SHOTS) / "console-audit.png"), full_page=True)

    export = page.context.request.get(insurer.url + f"/audit.jsonl?job={job_id[:16]}")
    lines = export.text().splitlines()
    assert any('"event": "approved"' in line and "operator:Dana" in line for line in lines)


def test_reject_with_a_reason_the_analyst_sees(page, insurer, console_network, capsys):
    job_id = console_network.submit(capsys, CLAIMS_MODEL, "claims-model-2")
    log_in(page, insurer, "Dana")
    section = f"#job-{job_id[:12]}"
    wait_for(lambda: page.reload() or page.locator(section).count() == 1, 30, "the job on the approvals page")
    card = page.locator(section)
    card.locator("button.reject").click()  # no reason: refused, the job stays
    assert "a rejection needs a reason" in page.inner_text("main")
    card = page.locator(section)
    card.locator("input[name=reason]").fill("claims data is not shared for credit models")
    card.locator("button.reject").click()
    page.wait_for_url(re.compile(r".*/approvals\?done=reject"))

    status = wait_for(lambda: (s := console_network.status(capsys, job_id))["state"] == "failed" and s, 30,
                      "the job to fail at the coordinator")
    assert "claims data is not shared for credit models" in status["reason"]
    assert "insurer" in status["reason"]


def test_forged_csrf_and_foreign_origin_are_refused(page, browser, insurer, console_network, capsys):
    job_id = console_network.submit(capsys, CLAIMS_MODEL, "claims-model-3")
    log_in(page, insurer, "Dana")
    wait_for(lambda: page.reload() or page.locator(f"#job-{job_id[:12]}").count() == 1, 30, "the pending job")

    # 1. the operator's own browser, session cookie and all, but a forged CSRF token
    forged = page.context.request.post(insurer.url + f"/approvals/{job_id}", headers={"origin": insurer.url},
                                       form={"csrf": "forged", "action": "approve", "reason": "x"})
    assert forged.status == 403 and "CSRF" in forged.text()
    # ...and no CSRF field at all
    missing = page.context.request.post(insurer.url + f"/approvals/{job_id}", headers={"origin": insurer.url},
                                        form={"action": "approve"})
    assert missing.status == 403

    # 2. a page on another origin that posts a form to the console in the same browser
    evil_html = (f"<form id=f method=post action='{insurer.url}/approvals/{job_id}'>"
                 "<input name=action value=approve><input name=csrf value=guess></form>"
                 "<script>document.getElementById('f').submit()</script>").encode()

    class Evil(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(evil_html)

        def log_message(self, *args):
            pass

    evil = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Evil)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    try:
        with page.expect_response(lambda r: f"/approvals/{job_id}" in r.url) as resp:
            page.goto(f"http://127.0.0.1:{evil.server_port}/")
        assert resp.value.status == 403
    finally:
        evil.shutdown()

    # nothing was decided: the job still waits at the insurer and at the coordinator
    page.goto(insurer.url + "/approvals")
    assert page.locator(f"#job-{job_id[:12]}").count() == 1
    assert console_network.status(capsys, job_id)["state"] == "awaiting_approvals"


PSI_OVERLAP = """\
name: psi-overlap
function: psi
compute: compute-1
inputs:
  - {party: bank,    table: customers, key: customer_id, columns: []}
  - {party: telco,   table: usage,     key: customer_id, columns: []}
params: {normalise: {trim: true, case: none, type: int}}
release:
  - {kind: size, to: [analyst, bank, telco]}
"""


def scrape(console) -> dict[str, float]:
    """Every sample of a console's /metrics, by its name and labels, scraped with the operator token."""
    from prometheus_client.parser import text_string_to_metric_families

    reply = httpx.get(console.url + "/metrics", headers={"authorization": f"Bearer {console.token}"})
    assert reply.status_code == 200 and reply.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(reply.text):
        for s in family.samples:
            out[s.name + "{" + ",".join(f"{k}={v}" for k, v in sorted(s.labels.items())) + "}"] = s.value
    return out


def test_metrics_move_during_a_job(console_network, capsys):
    bank, telco, compute = (console_network.consoles[n] for n in ("bank", "telco", "compute-1"))
    coordinator = console_network.consoles["coordinator"]
    before = {c.name: scrape(c) for c in (bank, telco, compute, coordinator)}
    approvals = "teenet_approvals_total{decided_by=policy,decision=approve}"

    job_id = console_network.submit(capsys, PSI_OVERLAP, "psi-two")
    during = wait_for(lambda: (m := scrape(bank)).get(approvals, 0) > before["bank"].get(approvals, 0) and m,
                      30, "the bank's approval to show in its metrics")
    assert during[approvals] == before["bank"].get(approvals, 0) + 1
    wait_for(lambda: console_network.status(capsys, job_id)["state"] == "succeeded", 60, "the job to succeed")

    after = {c.name: scrape(c) for c in (bank, telco, compute, coordinator)}
    for node in ("bank", "telco"):
        assert after[node]["teenet_sealed_bytes_total{}"] > before[node].get("teenet_sealed_bytes_total{}", 0)
        assert after[node]["teenet_sealed_rows_total{}"] == before[node].get("teenet_sealed_rows_total{}", 0) + 2000
        ok = "teenet_attestation_verifications_total{reason=,result=ok}"
        assert after[node][ok] == before[node].get(ok, 0) + 1
        hist = "teenet_phase_seconds_count{phase=received}"
        assert after[node][hist] > before[node].get(hist, 0)
    opened_key = "teenet_opened_bytes_total{}"
    opened = after["compute-1"][opened_key] - before["compute-1"].get(opened_key, 0)
    sealed = sum(after[n]["teenet_sealed_bytes_total{}"] - before[n].get("teenet_sealed_bytes_total{}", 0)
                 for n in ("bank", "telco"))
    assert opened == sealed > 0, "the compute enclave opened exactly the bytes the owners sealed"
    done = "teenet_jobs{state=succeeded}"
    assert after["coordinator"][done] == before["coordinator"].get(done, 0) + 1


def test_the_compute_and_coordinator_consoles_show_what_they_hold(console_network, capsys):
    def logged_in(console) -> httpx.Client:
        c = httpx.Client(base_url=console.url, follow_redirects=False)
        r = c.post("/login", data={"token": console.token, "operator": "ops"}, headers={"origin": console.url})
        assert r.status_code == 303
        return c

    job_id = console_network.submit(capsys, PSI_OVERLAP, "psi-compute-page")
    wait_for(lambda: console_network.status(capsys, job_id)["state"] == "succeeded", 60, "the job to succeed")
    compute = logged_in(console_network.consoles["compute-1"])
    try:
        page = compute.get("/jobs").text
        assert "Own evidence verified" in page and "pinned by the consortium" in page and "sim-snp" in page
        row = page.split(f'data-job="{job_id}"', 1)[1].split("</tr>", 1)[0]
        for step in ("accepted", "table received", "bank/customers", "telco/usage", "released"):
            assert step in row, f"the compute timeline lacks '{step}'"
    finally:
        compute.close()
    coordinator = logged_in(console_network.consoles["coordinator"])
    try:
        page = coordinator.get("/jobs").text
        assert "<td>succeeded</td>" in page
        for absent in ("customer_id", "premium", "Approve"):  # it has nothing else to show
            assert absent not in page
    finally:
        coordinator.close()
