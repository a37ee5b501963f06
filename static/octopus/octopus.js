// Octopus pages: the few behaviours HTMX does not cover. No build step, no dependencies.
//
// - Bad-input answers (400/422) are swapped in like any other, so their error text shows.
// - The live log socket (htmx ws extension) reconnects with `after_seq` = the newest line on
//   screen, so a reconnect neither repeats nor skips lines; a repeated seq is dropped anyway.
// - Live/offline badges, "follow" (keep the newest line in view), and a refresh of the run's
//   summary (progress, result, buttons) from the server once its status is final.
(function () {
  "use strict";
  if (!window.htmx) return;

  htmx.config.responseHandling = [
    { code: "204", swap: false },
    { code: "[23]..", swap: true },
    { code: "(400|422)", swap: true, error: false },
    { code: "[45]..", swap: false, error: true },
  ];

  var TERMINAL = ["SUCCESS", "FAILED", "CANCELLED"];

  function logContainer(root) {
    return (root || document).querySelector(".log-lines[data-last-seq]");
  }

  // The ws extension calls this on every (re)connect with the URL from ws-connect.
  var makeSocket = htmx.createWebSocket || function (url) { return new WebSocket(url); };
  htmx.createWebSocket = function (url) {
    var box = logContainer();
    if (box && url.indexOf("/logs/") !== -1) {
      url = url.replace(/([?&]after_seq=)\d*/, "$1" + (box.dataset.lastSeq || "0"));
    }
    return makeSocket(url);
  };

  function setBadge(id, state, text) {
    var badge = document.getElementById(id);
    if (!badge) return;
    badge.classList.remove("live", "offline", "ended");
    badge.classList.add(state);
    badge.textContent = text;
  }

  function summaryIsFinal() {
    var summary = document.getElementById("task-summary");
    return summary && summary.dataset.terminal === "true";
  }

  function follow() {
    var box = logContainer();
    var toggle = document.getElementById("log-follow");
    if (box && toggle && toggle.checked) box.scrollTop = box.scrollHeight;
  }

  var lastBefore = null;

  document.addEventListener("htmx:wsBeforeMessage", function () {
    var box = logContainer();
    lastBefore = box ? box.lastElementChild : null;
  });

  document.addEventListener("htmx:wsAfterMessage", function () {
    var box = logContainer();
    if (box) {
      var last = parseInt(box.dataset.lastSeq || "0", 10);
      var el = lastBefore ? lastBefore.nextElementSibling : box.firstElementChild;
      while (el) {
        var next = el.nextElementSibling;
        var seq = parseInt(el.dataset.seq || "0", 10);
        if (seq && seq <= last) el.remove();
        else if (seq) last = seq;
        el = next;
      }
      box.dataset.lastSeq = String(last);
      follow();
    }
    var summary = document.getElementById("task-summary");
    if (summary && summary.dataset.terminal !== "true") {
      var badge = document.getElementById("task-" + summary.dataset.task + "-status");
      var final = badge && TERMINAL.some(function (s) { return badge.classList.contains("st-" + s); });
      if (final) {
        summary.dataset.terminal = "true";
        htmx.ajax("GET", location.pathname + "?part=summary", { target: "#task-summary", swap: "outerHTML" });
      }
    }
  });

  document.addEventListener("htmx:wsOpen", function (event) {
    var id = event.target.id === "log-body" ? "log-live" : event.target.dataset.badge;
    if (id) setBadge(id, "live", "live");
  });

  document.addEventListener("htmx:wsClose", function (event) {
    var id = event.target.id === "log-body" ? "log-live" : event.target.dataset.badge;
    if (!id) return;
    if (id === "log-live" && summaryIsFinal()) setBadge(id, "ended", "finished");
    else setBadge(id, "offline", "offline");
  });

  // Scrolling up to read stops following; ticking "Follow" jumps to the newest line.
  document.addEventListener("scroll", function (event) {
    var box = event.target;
    if (!(box instanceof Element) || !box.matches(".log-lines")) return;
    var toggle = document.getElementById("log-follow");
    var atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 24;
    if (toggle && toggle.checked !== atBottom) toggle.checked = atBottom;
  }, true);

  document.addEventListener("change", function (event) {
    if (event.target.id === "log-follow") follow();
  });

  document.addEventListener("htmx:afterSettle", function (event) {
    if (event.target.id === "log-body") follow();
  });

  document.addEventListener("DOMContentLoaded", follow);
})();
