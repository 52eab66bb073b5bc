"""An application from the form to the certificate, with the RA officer's approval, in a real browser
(issue #14's Done-when): Debian's chromium through Playwright on a real ``unica serve``; both people
log in with their cards (SoftHSM2 tokens) through real ``unica agent`` processes -- the enterprise's
card of tests/portal's ``portal`` fixture, and bob's operator card (RA officer of customs).

The enterprise applies with a request made for a new key (the form first refused with the message
next to the field), bob approves it on his desk, the enterprise collects the certificate and
downloads it: it certifies exactly that key. Screenshots go to docs/img/portal-*.png.
"""

from __future__ import annotations

import re
import subprocess

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.login.conftest import Agent
from tests.portal.conftest import IMG, ORG, PERSON, USCC, CardHolder, browser, portal  # noqa: F401 (fixtures)


def _login(page, url: str, agent_port: int, next_path: str) -> None:
    page.goto(f"{url}/login?agent={agent_port}&next={next_path}")
    page.get_by_role("button", name="用证书卡登录").click()
    page.wait_for_url(f"{url}{next_path}", timeout=30_000)


def test_an_application_from_form_to_certificate_with_the_officers_approval(portal, browser, tmp_path):  # noqa: F811
    j, url = portal.service.joint, portal.url
    j.ok("enterprise", "add", "--uscc", USCC, "--name", ORG, "--office", "customs", who="bob")
    key = tmp_path / "new.key"
    csr = tmp_path / "new.csr"
    subprocess.run(["openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                    "-keyout", str(key), "-out", str(csr), "-subj", "/CN=ignored"], check=True, capture_output=True)
    officer = Agent(CardHolder(j.dir, j.env, j.card("bob")), "--allow-origin", url)
    IMG.mkdir(parents=True, exist_ok=True)
    try:
        # the enterprise, with its card: the form refuses a missing holder next to the field
        ent = browser.context().new_page()
        _login(ent, url, portal.agent.port, "/enterprise/apply")
        assert ent.get_by_role("heading", level=1).inner_text() == "申请新证书"
        ent.get_by_label("证书类型").select_option("enterprise-sign")
        ent.get_by_label("证书请求（PKCS#10，PEM 格式）").fill(csr.read_text())
        ent.get_by_role("button", name="提交申请").click()
        holder = ent.get_by_label("持有人姓名")
        assert holder.get_attribute("aria-invalid") == "true"
        message = ent.locator("#e-holder").inner_text()
        assert message == "此项必填。" and "e-holder" in holder.get_attribute("aria-describedby")
        assert ent.locator("#f-csr").input_value().startswith("-----BEGIN CERTIFICATE REQUEST-----")  # kept
        ent.screenshot(path=str(IMG / "portal-apply-error.png"), full_page=True)
        holder.fill(PERSON)
        ent.screenshot(path=str(IMG / "portal-apply.png"), full_page=True)
        ent.get_by_role("button", name="提交申请").click()
        assert ent.get_by_role("heading", level=1).inner_text() == "申请已提交"
        app_id = re.search(r"a[0-9a-f]{12}", ent.locator("main").inner_text()).group(0)

        # bob, RA officer of customs, with his operator card: the queue, the application, approve
        ra = browser.context().new_page()
        _login(ra, url, officer.port, "/ra")
        assert ra.get_by_role("heading", level=1).inner_text() == "受理工作台"
        ra.screenshot(path=str(IMG / "portal-ra.png"), full_page=True)
        ra.get_by_role("link", name=app_id).click()
        assert ra.get_by_role("heading", level=1).inner_text() == f"申请 {app_id}"
        ra.get_by_label("批准", exact=True).check()
        ra.get_by_label("理由", exact=True).fill("营业执照与证书请求已核对")
        ra.get_by_role("button", name="提交", exact=True).click()
        assert "已批准" in ra.get_by_role("status").inner_text()
        ra.screenshot(path=str(IMG / "portal-ra-approved.png"), full_page=True)

        # the enterprise collects its certificate and downloads it with the chain
        ent.goto(f"{url}/enterprise/applications/{app_id}")
        ent.get_by_role("button", name="领取证书").click()
        assert ent.get_by_role("heading", level=1).inner_text() == "证书已签发"
        ent.screenshot(path=str(IMG / "portal-certificate.png"), full_page=True)
        with ent.expect_download() as got:
            ent.get_by_role("link", name="下载证书及证书链（PEM）").click()
        chain = x509.load_pem_x509_certificates(open(got.value.path(), "rb").read())
        mine = serialization.load_pem_private_key(key.read_bytes(), None).public_key()
        assert chain[0].public_key() == mine and len(chain) >= 2
        assert chain[0].subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)[0].value == PERSON
        ent.goto(f"{url}/enterprise")
        assert "已签发" in ent.locator("main").inner_text()
        ent.screenshot(path=str(IMG / "portal-enterprise.png"), full_page=True)
        ent.context.close()
        ra.context.close()
    finally:
        officer.stop()


def test_the_auditor_reads_the_log_and_checks_the_chain(portal, browser):  # noqa: F811
    """alice (admin: the audit log is hers to read too) with her card: the filtered log, the chain check."""
    j, url = portal.service.joint, portal.url
    auditor = Agent(CardHolder(j.dir, j.env, j.card("alice")), "--allow-origin", url)
    try:
        page = browser.context().new_page()
        _login(page, url, auditor.port, "/audit")
        assert page.get_by_role("heading", level=1).inner_text() == "审计"
        page.get_by_label("事件", exact=True).fill("login.*")
        page.get_by_role("button", name="筛选", exact=True).click()
        rows = page.locator("main table tbody tr")
        assert rows.count() >= 1 and "login.succeeded" in rows.first.inner_text()
        page.screenshot(path=str(IMG / "portal-audit.png"), full_page=True)
        page.get_by_role("link", name="校验审计链").click()
        assert "审计链完整" in page.locator("#verdict").inner_text()
        page.context.close()
    finally:
        auditor.stop()
