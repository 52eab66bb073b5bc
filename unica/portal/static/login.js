// Card login: ask the portal for a challenge, have the local signing agent (unica agent, on
// 127.0.0.1) sign it with the card, and post challenge, signature and certificate to /login.
// The PIN is the agent's business: this page never sees it. No framework, no inline script
// (the page's CSP allows scripts from the portal only).
(function () {
  "use strict";
  var form = document.getElementById("login-form");
  if (!form) { return; }
  var status = document.getElementById("login-status");
  var button = document.getElementById("login-button");

  function fail(detail) {
    var message = form.getAttribute("data-agent-error").replace("%s", detail);
    status.textContent = message;
    status.setAttribute("role", "alert");
    status.setAttribute("tabindex", "-1");
    button.disabled = false;
    status.focus();
  }

  function agentUrl(hint) {
    var port = parseInt(form.elements.agent.value, 10);
    if (!(port > 0 && port < 65536)) {
      var m = /:(\d+)\/?$/.exec(hint || "");
      port = m ? parseInt(m[1], 10) : 8765;
    }
    return "http://127.0.0.1:" + port + "/v1/sign";
  }

  // the agent's port, remembered in this browser once a login worked (not a secret)
  var KEY = "unica-agent-port";
  try {
    var remembered = window.localStorage.getItem(KEY);
    if (remembered && !/[?&]agent=/.test(window.location.search)) { form.elements.agent.value = remembered; }
  } catch (e) { /* storage disabled: the field's value stands */ }

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    button.disabled = true;
    status.setAttribute("role", "status");
    status.textContent = form.getAttribute("data-working");
    fetch("/login/challenge", { credentials: "same-origin", cache: "no-store" })
      .then(function (r) {
        if (!r.ok) { throw new Error("portal " + r.status); }
        return r.json();
      })
      .then(function (c) {
        return fetch(agentUrl(c.agent), {
          method: "POST", mode: "cors", credentials: "omit", cache: "no-store",
          headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ challenge: c.challenge })
        }).then(function (r) {
          return r.json().then(function (body) {
            if (!r.ok) { throw new Error(body.error || ("agent " + r.status)); }
            form.elements.challenge.value = c.challenge;
            form.elements.signature.value = body.signature;
            form.elements.certificate.value = body.certificate;
            try { window.localStorage.setItem(KEY, form.elements.agent.value); } catch (e) { /* none */ }
            form.submit();
          });
        });
      })
      .catch(function (e) { fail(e && e.message ? e.message : String(e)); });
  });
}());
