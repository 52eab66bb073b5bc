"""The portal's words, Chinese first with English: one small catalogue, one lookup.

Every string a portal page shows goes through :func:`text` (in templates: ``t("key")``), so a
page never mixes languages and a missing translation is a failed test, not a silent English
word on a Chinese page. The language of a request is :func:`language_of`: the ``lang`` query
parameter, else the ``unica-lang`` cookie, else Chinese (``zh``).

Adding words: append a key to :data:`CATALOGUE` with both languages (helpers of other pages add
their keys here, append-only). Values may hold ``{name}`` fields filled by :func:`text`'s keyword
arguments (str.format; the template engine escapes the result).
"""

from __future__ import annotations

#: the languages, the first one the default
LANGUAGES = ("zh", "en")
DEFAULT = LANGUAGES[0]
#: the cookie remembering a chosen language (not a secret: SameSite=Lax, readable by no script)
LANG_COOKIE = "unica-lang"

CATALOGUE: dict[str, dict[str, str]] = {
    # --- every page ---------------------------------------------------------------------
    "site.name": {"zh": "统一身份认证门户", "en": "Unified identity portal"},
    "site.tagline": {"zh": "一个门户入网，一次认证登录，一站式服务",
                     "en": "One portal, one login, one-stop service"},
    "nav.home": {"zh": "首页", "en": "Home"},
    "nav.login": {"zh": "登录", "en": "Log in"},
    "nav.logout": {"zh": "退出登录", "en": "Log out"},
    "nav.main": {"zh": "主导航", "en": "Main navigation"},
    "nav.skip": {"zh": "跳到正文", "en": "Skip to content"},
    "lang.switch": {"zh": "English", "en": "中文"},
    "lang.switch.label": {"zh": "切换到英文", "en": "Switch to Chinese"},
    "form.errors": {"zh": "请更正以下问题：", "en": "Please correct the following:"},
    "form.submit": {"zh": "提交", "en": "Submit"},
    "error.title": {"zh": "出错了", "en": "Something went wrong"},
    "error.back": {"zh": "返回首页", "en": "Back to the home page"},
    "error.csrf": {"zh": "表单已失效（缺少或错误的防伪令牌），请刷新页面后重试。",
                   "en": "The form has expired (its anti-forgery token is missing or wrong): reload the page "
                         "and try again."},
    "error.origin": {"zh": "请求来自其他网站，已拒绝。", "en": "The request came from another site and was refused."},
    "error.not-found": {"zh": "页面不存在。", "en": "There is no such page."},
    "error.forbidden": {"zh": "您无权访问此页面。", "en": "You may not see this page."},
    "error.invalid": {"zh": "提交的内容不完整或格式错误。", "en": "What was sent is incomplete or malformed."},
    "error.status": {"zh": "状态码 {status}", "en": "Status {status}"},
    # --- login --------------------------------------------------------------------------
    "login.title": {"zh": "使用证书卡登录", "en": "Log in with your certificate card"},
    "login.intro": {"zh": "请插入企业证书卡，并确认本机已运行签名助手（unica agent）。PIN 码只在签名助手中输入，本页面不会询问。",
                    "en": "Insert your enterprise certificate card and make sure the signing agent (unica "
                          "agent) runs on this computer. The PIN is asked by the agent only, never by this page."},
    "login.agent": {"zh": "签名助手端口", "en": "Signing agent port"},
    "login.agent.help": {"zh": "签名助手在本机 127.0.0.1 上监听的端口（默认 8765）。",
                         "en": "The port the signing agent listens on at 127.0.0.1 (8765 by default)."},
    "login.button": {"zh": "用证书卡登录", "en": "Log in with the card"},
    "login.working": {"zh": "正在请签名助手签名……", "en": "Asking the signing agent to sign…"},
    "login.nojs": {"zh": "证书卡登录需要启用本页的脚本（仅用于联系本机签名助手）；也可以使用下方的 TLS 客户端证书登录。",
                   "en": "Card login needs this page's script (it only talks to the agent on this computer); "
                         "or use the TLS client certificate login below."},
    "login.tls.title": {"zh": "使用 TLS 客户端证书登录", "en": "Log in with a TLS client certificate"},
    "login.tls.intro": {"zh": "如果浏览器已配置证书卡（PKCS#11 模块）并在连接时出示了客户端证书，可直接登录。",
                        "en": "If your browser is set up with the card (its PKCS#11 module) and presented a "
                              "client certificate on this connection, log in with it."},
    "login.tls.button": {"zh": "用客户端证书登录", "en": "Log in with the client certificate"},
    "login.error.agent": {"zh": "无法连接签名助手（{detail}）。请确认它正在运行，端口正确，并允许本门户的地址。",
                          "en": "The signing agent cannot be reached ({detail}). Check that it runs, the port is "
                                "right, and it allows this portal's address."},
    "login.error.no-tls-cert": {"zh": "本次连接没有出示客户端证书。", "en": "This connection presented no client "
                                                                          "certificate."},
    "login.error.missing": {"zh": "缺少挑战、签名或证书。", "en": "The challenge, the signature or the certificate "
                                                                   "is missing."},
    "login.error.rate": {"zh": "登录失败次数过多，请 {seconds} 秒后再试。",
                         "en": "Too many failed logins: try again in {seconds} seconds."},
    "login.refused.bad-format": {"zh": "登录数据格式错误。", "en": "The login data is malformed."},
    "login.refused.wrong-origin": {"zh": "该挑战不是本门户签发的（来源不符）。",
                                   "en": "The challenge names another portal (wrong origin)."},
    "login.refused.unknown-challenge": {"zh": "本门户未签发该挑战。", "en": "This portal did not hand out that "
                                                                             "challenge."},
    "login.refused.expired": {"zh": "挑战已过期，请重新登录。", "en": "The challenge expired: log in again."},
    "login.refused.replayed": {"zh": "该挑战已被使用过（每个挑战只能登录一次）。",
                               "en": "The challenge was used already (one login per challenge)."},
    "login.refused.bad-signature": {"zh": "签名验证失败。", "en": "The signature does not verify."},
    "login.refused.certificate-refused": {"zh": "证书被拒绝（已吊销、已过期或不是本系统签发的）。",
                                          "en": "The certificate is refused (revoked, expired, or not issued "
                                                "here)."},
    "login.refused.not-for-login": {"zh": "该证书不能用于登录。", "en": "This certificate may not be used to log in."},
    "login.ended.logout": {"zh": "您已退出登录。", "en": "You are logged out."},
    "login.ended.idle": {"zh": "长时间未操作，会话已结束，请重新登录。", "en": "The session ended after a while "
                                                                              "without use: log in again."},
    "login.ended.expired": {"zh": "会话已到期，请重新登录。", "en": "The session expired: log in again."},
    "login.ended.certificate-refused": {"zh": "您的证书已不再有效（例如已被吊销），会话已结束。",
                                        "en": "Your certificate is no longer valid (revoked, for instance): the "
                                              "session ended."},
    "login.ended.unknown": {"zh": "请先登录。", "en": "Please log in first."},
    # --- home ---------------------------------------------------------------------------
    "home.title": {"zh": "我的门户", "en": "My portal"},
    "home.who": {"zh": "当前登录", "en": "Logged in as"},
    "home.person": {"zh": "姓名", "en": "Name"},
    "home.enterprise": {"zh": "企业名称", "en": "Enterprise"},
    "home.uscc": {"zh": "统一社会信用代码", "en": "Unified social credit code"},
    "home.serial": {"zh": "证书序列号", "en": "Certificate serial"},
    "home.issuer": {"zh": "签发者", "en": "Issuer"},
    "home.office": {"zh": "受理点", "en": "RA office"},
    "home.method": {"zh": "登录方式", "en": "Login method"},
    "home.method.card-agent": {"zh": "证书卡（签名助手）", "en": "Card (signing agent)"},
    "home.method.tls-client": {"zh": "TLS 客户端证书", "en": "TLS client certificate"},
    "home.auth_time": {"zh": "登录时间", "en": "Logged in at"},
    "home.roles": {"zh": "角色", "en": "Roles"},
    "home.systems": {"zh": "可进入的业务系统", "en": "Agency systems you can enter"},
    "home.systems.none": {"zh": "暂无已接入的业务系统。", "en": "No agency system is connected yet."},
    "home.systems.enter": {"zh": "进入 {name}", "en": "Enter {name}"},
    "home.pages": {"zh": "我的业务", "en": "My pages"},
    "home.pages.none": {"zh": "暂无可用的业务页面。", "en": "No page is available to you yet."},
    "role.enterprise": {"zh": "企业用户", "en": "Enterprise"},
    "role.ra-officer": {"zh": "受理员", "en": "RA officer"},
    "role.auditor": {"zh": "审计员", "en": "Auditor"},
    "role.admin": {"zh": "管理员", "en": "Administrator"},
    "page.enterprise": {"zh": "企业服务", "en": "Enterprise services"},
    "page.ra": {"zh": "受理工作台", "en": "RA officer's desk"},
    "page.audit": {"zh": "审计", "en": "Audit"},
}


def language_of(query_lang: str | None, cookie_lang: str | None) -> str:
    """The page's language: a known ``lang`` query value, else a known cookie value, else zh."""
    for v in (query_lang, cookie_lang):
        if v in LANGUAGES:
            return v
    return DEFAULT


def text(key: str, lang: str = DEFAULT, /, **fields) -> str:
    """The words for ``key`` in ``lang`` (KeyError for an unknown key: a page bug, caught by the
    catalogue test), with ``fields`` filled in."""
    entry = CATALOGUE[key]
    value = entry.get(lang) or entry[DEFAULT]
    return value.format(**fields) if fields else value


def text_in(lang: str, key: str, /, **fields) -> str:
    """:func:`text` with the language first (the templates' ``t``)."""
    return text(key, lang, **fields)


def has(key: str) -> bool:
    return key in CATALOGUE


# --- the role pages (enterprise, RA officer, auditor: unica/service/portal_views.py) ---------
CATALOGUE.update({
    "st.submitted": {"zh": "待审核", "en": "submitted"},
    "st.approved": {"zh": "已批准", "en": "approved"},
    "st.rejected": {"zh": "已驳回", "en": "rejected"},
    "st.enrolled": {"zh": "已签发", "en": "certificate issued"},
    "st.expired": {"zh": "已过期", "en": "expired"},
    "st.active": {"zh": "正常", "en": "active"},
    "st.pending": {"zh": "待处理", "en": "pending"},
    "st.withdrawn": {"zh": "已撤回", "en": "withdrawn"},
    "st.disabled": {"zh": "已停用", "en": "disabled"},
    "st.valid": {"zh": "有效", "en": "valid"},
    "st.hold": {"zh": "已冻结", "en": "on hold"},
    "st.revoked": {"zh": "已吊销", "en": "revoked"},
    "st.done": {"zh": "已完成", "en": "done"},
    "st.executing": {"zh": "执行中", "en": "executing"},
    "st.executed": {"zh": "已执行", "en": "executed"},
    "st.failed": {"zh": "失败", "en": "failed"},
    "decision.approve": {"zh": "批准", "en": "approved"},
    "decision.reject": {"zh": "驳回", "en": "rejected"},
    "decision.request": {"zh": "提出", "en": "asked"},
    "reason.unspecified": {"zh": "未说明", "en": "unspecified"},
    "reason.keyCompromise": {"zh": "密钥泄露", "en": "key compromise"},
    "reason.affiliationChanged": {"zh": "隶属关系变更", "en": "affiliation changed"},
    "reason.superseded": {"zh": "已被替换", "en": "superseded"},
    "reason.cessationOfOperation": {"zh": "停止经营", "en": "cessation of operation"},
    "reason.privilegeWithdrawn": {"zh": "权限撤销", "en": "privilege withdrawn"},
    "reason.certificateHold": {"zh": "冻结", "en": "certificate hold"},
    "app.title": {"zh": "申请 {id}", "en": "Application {id}"},
    "app.id": {"zh": "编号", "en": "ID"},
    "app.profile": {"zh": "证书类型", "en": "Certificate profile"},
    "app.holder": {"zh": "持有人姓名", "en": "Holder's name"},
    "app.contact": {"zh": "联系方式", "en": "Contact"},
    "app.csr": {"zh": "证书请求（PKCS#10，PEM 格式）", "en": "Certificate request (PKCS#10, PEM)"},
    "app.status": {"zh": "状态", "en": "Status"},
    "app.created": {"zh": "提交时间", "en": "Submitted"},
    "app.source": {"zh": "来源", "en": "Source"},
    "app.source.officer": {"zh": "受理员录入", "en": "entered by an officer"},
    "app.source.self-service": {"zh": "企业自助申请", "en": "self-service"},
    "app.approvals": {"zh": "审批数", "en": "Approvals"},
    "app.decisions": {"zh": "审批记录", "en": "Decisions"},
    "cert.subject": {"zh": "证书主体", "en": "Subject"},
    "cert.not_after": {"zh": "有效期至", "en": "Valid until"},
    "cert.download": {"zh": "下载", "en": "Download"},
    "cert.download.pem": {"zh": "下载证书及证书链（PEM）", "en": "Download the certificate and its chain (PEM)"},
    "ent.who": {"zh": "企业信息", "en": "The enterprise"},
    "ent.status": {"zh": "登记状态", "en": "Registration status"},
    "ent.legal_rep": {"zh": "法定代表人", "en": "Legal representative"},
    "ent.applications": {"zh": "证书申请", "en": "Applications"},
    "ent.applications.none": {"zh": "暂无申请。", "en": "No application yet."},
    "ent.certificates": {"zh": "企业证书", "en": "Certificates"},
    "ent.certificates.none": {"zh": "暂无证书。", "en": "No certificate yet."},
    "ent.revocations": {"zh": "吊销申请", "en": "Revocation requests"},
    "ent.apply": {"zh": "申请新证书", "en": "Apply for a certificate"},
    "ent.apply.intro": {"zh": "为 {name}（{uscc}）申请证书，由受理点 {office} 审核。",
                        "en": "Apply for a certificate of {name} ({uscc}); office {office} decides."},
    "ent.apply.profile.help": {"zh": "受理点可签发的证书类型。", "en": "The profiles your office issues."},
    "ent.apply.holder.help": {"zh": "证书上的持有人姓名（最多 64 个字符）。",
                              "en": "The holder's name in the certificate (at most 64 characters)."},
    "ent.apply.contact.help": {"zh": "选填：电话或电子邮箱。", "en": "Optional: a telephone number or e-mail."},
    "ent.apply.csr.help": {"zh": "用证书卡或密钥生成的 PKCS#10 请求（以 -----BEGIN CERTIFICATE REQUEST----- 开头）。批准后只为该密钥签发证书。",
                           "en": "The PKCS#10 request made with the card or key (starting with -----BEGIN "
                                 "CERTIFICATE REQUEST-----). Once approved, only that key is certified."},
    "ent.apply.button": {"zh": "提交申请", "en": "Send the application"},
    "ent.applied": {"zh": "申请已提交", "en": "Application sent"},
    "ent.applied.text": {"zh": "申请 {id} 已提交，等待受理点审核。", "en": "Application {id} was sent; its office will "
                                                                       "decide."},
    "ent.applied.token": {"zh": "状态令牌（只显示这一次；本浏览器已记住，换浏览器领取证书时需要输入）：",
                          "en": "Status token (shown this once; this browser keeps it, another browser needs it to "
                                "collect the certificate):"},
    "ent.follow": {"zh": "查看申请进度", "en": "Follow the application"},
    "ent.collect": {"zh": "领取证书", "en": "Collect the certificate"},
    "ent.collect.help": {"zh": "申请已批准：领取时使用一次性注册码为申请中提交的密钥签发证书。",
                         "en": "The application is approved: collecting uses its one-time code to issue the "
                               "certificate for the key of its request."},
    "ent.collect.token": {"zh": "状态令牌", "en": "Status token"},
    "ent.collect.token.help": {"zh": "提交申请时显示的状态令牌。", "en": "The status token shown when the application "
                                                                   "was sent."},
    "ent.collect.button": {"zh": "领取证书", "en": "Collect the certificate"},
    "ent.collected": {"zh": "证书已签发", "en": "Certificate issued"},
    "ent.collected.text": {"zh": "证书 {serial} 已签发。", "en": "Certificate {serial} was issued."},
    "ent.collected.code": {"zh": "该申请未附证书请求。一次性注册码（只显示这一次）：",
                           "en": "This application came without a request. Its one-time enrollment code (shown this "
                                 "once):"},
    "ent.back": {"zh": "返回企业服务", "en": "Back to enterprise services"},
    "ent.revoke": {"zh": "申请吊销证书", "en": "Ask for a revocation"},
    "ent.revoke.help": {"zh": "密钥泄露的证书立即吊销；其他原因由受理点审核。",
                        "en": "A compromised key is revoked at once; other reasons wait for the office."},
    "ent.revoke.reason": {"zh": "吊销原因", "en": "Reason"},
    "ent.revoke.reason.help": {"zh": "如证书卡丢失或密钥可能泄露，请选择“密钥泄露”。",
                               "en": "If the card is lost or the key may be known to others, choose key compromise."},
    "ent.revoke.button": {"zh": "提交吊销申请", "en": "Ask for the revocation"},
    "ent.revoked.done": {"zh": "证书 {serial} 已吊销（{id}）。", "en": "Certificate {serial} is revoked ({id})."},
    "ent.revoked.pending": {"zh": "证书 {serial} 的吊销申请 {id} 已提交，等待受理点审核。",
                            "en": "Revocation request {id} for certificate {serial} waits for the office."},
    "ra.intro": {"zh": "受理员 {name}，受理点：{office}。", "en": "Officer {name}, office: {office}."},
    "ra.all-offices": {"zh": "全部受理点", "en": "every office"},
    "ra.queue": {"zh": "待审核的申请", "en": "Applications waiting for a decision"},
    "ra.queue.none": {"zh": "没有待审核的申请。", "en": "No application is waiting."},
    "ra.lookup": {"zh": "查询企业", "en": "Find an enterprise"},
    "ra.lookup.q": {"zh": "统一社会信用代码或企业名称", "en": "Unified social credit code or name"},
    "ra.lookup.help": {"zh": "输入代码或名称的一部分。", "en": "Part of the code or of the name."},
    "ra.lookup.button": {"zh": "查询", "en": "Search"},
    "ra.lookup.results": {"zh": "找到 {n} 家企业", "en": "{n} enterprises found"},
    "ra.lookup.none": {"zh": "没有匹配的企业。", "en": "No enterprise matches."},
    "ra.back": {"zh": "返回", "en": "Back"},
    "ra.decide": {"zh": "审核", "en": "Decide"},
    "ra.decision": {"zh": "审核结果", "en": "Decision"},
    "ra.approve": {"zh": "批准", "en": "Approve"},
    "ra.reject": {"zh": "驳回", "en": "Reject"},
    "ra.reason": {"zh": "理由", "en": "Reason"},
    "ra.reason.help": {"zh": "驳回时必须填写理由（最多 500 个字符）。", "en": "Required to reject (at most 500 "
                                                                         "characters)."},
    "ra.decided": {"zh": "已记录对申请 {id} 的审核：", "en": "Your decision on application {id} is recorded:"},
    "ra.waiting": {"zh": "已有 {have}/{needed} 个批准，等待其他受理员批准。",
                   "en": "{have} of {needed} approvals: waiting for another officer."},
    "ra.code.once": {"zh": "一次性注册码（只显示这一次，请交给申请企业）：",
                     "en": "One-time enrollment code (shown this once: hand it to the enterprise):"},
    "ra.code.help": {"zh": "企业使用申请编号 {id} 和该注册码通过 EST 或证书卡工具注册。",
                     "en": "The enterprise enrolls with application {id} and this code (EST or the card tool)."},
    "ra.codes": {"zh": "签发注册码", "en": "Issue an enrollment code"},
    "ra.codes.intro": {"zh": "为已登记企业的持有人创建申请；若无需第二人审批，注册码立即显示。",
                       "en": "Make an application for a holder of a registered enterprise; the code is shown at "
                             "once unless a second officer must approve."},
    "ra.codes.button": {"zh": "创建申请", "en": "Make the application"},
    "ra.revocations": {"zh": "待审核的吊销申请", "en": "Revocation requests waiting"},
    "ra.revocations.none": {"zh": "没有待审核的吊销申请。", "en": "No revocation request is waiting."},
    "ra.revoke.approve": {"zh": "吊销证书", "en": "Revoke the certificate"},
    "ra.revoke.reject": {"zh": "驳回申请", "en": "Decline the request"},
    "ra.revocation.decided": {"zh": "吊销申请 {id}（证书 {serial}）已处理：", "en": "Revocation request {id} "
                                                                           "(certificate {serial}) decided:"},
    "ra.approvals": {"zh": "等待您审批的双人控制请求", "en": "Dual-control requests waiting for you"},
    "ra.approvals.none": {"zh": "没有等待您审批的请求。", "en": "No request is waiting for you."},
    "ra.approvals.help": {"zh": "审批需用您的证书卡在命令行签名（页面签名助手只签登录挑战）。",
                          "en": "Approving is signed with your card on the command line (the portal's agent signs "
                                "login challenges only)."},
    "ra.approvals.operation": {"zh": "操作", "en": "Operation"},
    "ra.approvals.expires": {"zh": "截止时间", "en": "Expires"},
    "ra.approvals.command": {"zh": "命令", "en": "Command"},
    "audit.intro": {"zh": "审计日志只读视图（最新的在前）。", "en": "The audit log, read-only, newest first."},
    "audit.filters": {"zh": "筛选", "en": "Filters"},
    "audit.since": {"zh": "起始时间", "en": "Since"},
    "audit.since.help": {"zh": "日期（2026-11-30）或时间（2026-11-30T08:00:00Z），未写时区按 UTC。",
                         "en": "A date (2026-11-30) or a time (2026-11-30T08:00:00Z); no zone means UTC."},
    "audit.event": {"zh": "事件", "en": "Event"},
    "audit.event.help": {"zh": "例如 application.*（* 匹配任意文字）。", "en": "E.g. application.* (* matches any "
                                                                              "text)."},
    "audit.actor": {"zh": "操作人", "en": "Actor"},
    "audit.at": {"zh": "时间", "en": "Time"},
    "audit.target": {"zh": "对象", "en": "Target"},
    "audit.details": {"zh": "详情", "en": "Details"},
    "audit.filter": {"zh": "筛选", "en": "Filter"},
    "audit.entries": {"zh": "审计记录（{n} 条，每页最多 {limit} 条）", "en": "Entries ({n}; at most {limit} a page)"},
    "audit.none": {"zh": "没有匹配的审计记录。", "en": "No entry matches."},
    "audit.verify": {"zh": "校验审计链", "en": "Check the audit chain"},
    "audit.verify.ok": {"zh": "审计链完整：{entries} 条记录，{seals} 个封印均校验通过。",
                        "en": "The chain is intact: {entries} entries and {seals} seals check."},
    "audit.verify.bad": {"zh": "审计链发现 {n} 个问题（共 {entries} 条记录）：",
                         "en": "{n} problems found in the chain ({entries} entries):"},
    "audit.verify.sealed": {"zh": "最后封印的记录：{id}", "en": "Last sealed entry: {id}"},
    "form.required": {"zh": "此项必填。", "en": "This field is required."},
    "form.choose": {"zh": "请从列表中选择一项。", "en": "Choose one of the options offered."},
    "form.detail": {"zh": "未通过检查：{detail}", "en": "{detail}"},
})

# --- the OpenID Connect provider's pages (unica/service/oidc.py) -----------------------------
CATALOGUE.update({
    "oidc.error.client": {"zh": "无法登录该业务系统：它未注册或已停用，或回调地址与注册的地址不完全一致。",
                          "en": "Cannot sign in to this agency system: it is not registered or is disabled, or "
                                "its redirect address is not exactly a registered one."},
    "oidc.error.repeated": {"zh": "请求中的参数 {name} 出现了不止一次。", "en": "The parameter {name} is repeated."},
    "oidc.error.logout-target": {"zh": "退出后要返回的地址不是该业务系统注册的地址。",
                                 "en": "The address to return to after signing out is not one registered for "
                                       "this agency system."},
    "oidc.error.state": {"zh": "state 参数无效。", "en": "The state parameter is invalid."},
    "oidc.logout.title": {"zh": "退出统一门户", "en": "Sign out of the portal"},
    "oidc.logout.confirm": {"zh": "确认退出？退出后，各业务系统都需要重新用证书登录。",
                            "en": "Sign out? Every agency system will then need a new card login."},
    "oidc.logout.button": {"zh": "退出", "en": "Sign out"},
    "oidc.logout.done": {"zh": "您已退出统一门户。", "en": "You are signed out of the portal."},
})
