// Octopus pages: the few behaviours HTMX does not cover. No build step, no dependencies.
//
// - Bad-input answers (400/422) are swapped in like any other, so their error text shows.
// - Live sockets: an element with `data-live="/ws/..."` holds one WebSocket. Each frame is
//   HTML of out-of-band fragments (`hx-swap-oob`, rendered by the server from the page's own
//   partials) and goes through htmx's own swap, so hx-disable and escaping rules hold. The
//   htmx ws extension is not used: it opens one socket per processed ancestor of the element,
//   and every extra socket would swap every frame again.
// - The log socket reconnects with `after_seq` = the newest line on screen, so a reconnect
//   neither repeats nor skips lines; a repeated seq is dropped anyway.
// - Live/offline badges, "follow" (keep the newest line in view), and a refresh of the run's
//   summary (status, progress, result, buttons) from the server when the socket opens and
//   when the status becomes final: the database is the truth, the socket a hint.
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
  var RETRY_CODES = [1006, 1011, 1012, 1013];

  function logContainer() {
    return document.querySelector(".log-lines[data-last-seq]");
  }

  function setBadge(id, state, text) {
    var badge = id && document.getElementById(id);
    if (!badge) return;
    badge.classList.remove("live", "offline", "ended");
    badge.classList.add(state);
    badge.textContent = text;
  }

  function summary() {
    return document.getElementById("task-summary");
  }

  function refreshSummary() {
    if (!summary()) return;
    htmx.ajax("GET", location.pathname + "?part=summary", { target: "#task-summary", swap: "outerHTML" });
  }

  function follow() {
    var box = logContainer();
    var toggle = document.getElementById("log-follow");
    if (box && toggle && toggle.checked) box.scrollTop = box.scrollHeight;
  }

  // --- one socket per [data-live] element ----------------------------------------------------

  function socketUrl(elt) {
    var url = elt.dataset.live;
    var box = logContainer();
    if (box && elt.contains(box)) {
      url = url.replace(/([?&]after_seq=)\d*/, "$1" + (box.dataset.lastSeq || "0"));
    }
    var scheme = location.protocol === "https:" ? "wss://" : "ws://";
    return scheme + location.host + url;
  }

  function connect(elt, attempt) {
    if (!document.body.contains(elt) || elt._liveClosed) return;
    var socket = new WebSocket(socketUrl(elt));
    elt._liveSocket = socket;
    socket.onopen = function () {
      attempt = 0;
      setBadge(elt.dataset.badge, "live", "live");
      if (elt.id === "log-body") refreshSummary();
      // Same for the task list: rows that changed before the socket opened are read again.
      if (elt.id === "task-table" && elt.querySelector("tbody")) {
        htmx.ajax("GET", location.pathname + location.search,
          { target: "#task-table tbody", select: "#task-table tbody", swap: "outerHTML" });
      }
    };
    socket.onmessage = function (event) {
      var box = logContainer();
      var lastBefore = box ? box.lastElementChild : null;
      htmx.swap(elt, event.data, { swapStyle: "none" });
      afterFrame(box, lastBefore);
    };
    socket.onclose = function (event) {
      if (elt._liveSocket !== socket) return;
      var final = elt.id === "log-body" && summary() && summary().dataset.terminal === "true";
      if (final || event.code === 1000) setBadge(elt.dataset.badge, "ended", final ? "finished" : "closed");
      else setBadge(elt.dataset.badge, "offline", "offline");
      if (RETRY_CODES.indexOf(event.code) !== -1 && !elt._liveClosed) {
        var delay = Math.min(30000, 500 * Math.pow(2, attempt)) * (0.5 + Math.random() / 2);
        setTimeout(function () { connect(elt, attempt + 1); }, delay);
      }
    };
  }

  function startLive(root) {
    var scope = root && root.querySelectorAll ? root : document;
    var elts = Array.from(scope.querySelectorAll("[data-live]"));
    if (scope.matches && scope.matches("[data-live]")) elts.push(scope);
    elts.forEach(function (elt) {
      if (!elt._liveSocket) connect(elt, 0);
    });
  }

  document.addEventListener("htmx:beforeCleanupElement", function (event) {
    var elt = event.target;
    if (elt._liveSocket) {
      elt._liveClosed = true;
      elt._liveSocket.close(1000);
    }
  });

  document.addEventListener("htmx:load", function (event) { startLive(event.target); });

  // --- after a frame: drop repeated lines, keep following, notice the final status ----------

  function afterFrame(box, lastBefore) {
    if (box && document.body.contains(box)) {
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
    var s = summary();
    if (s && s.dataset.terminal !== "true") {
      var badge = document.getElementById("task-" + s.dataset.task + "-status");
      var final = badge && TERMINAL.some(function (st) { return badge.classList.contains("st-" + st); });
      if (final) {
        s.dataset.terminal = "true";
        refreshSummary();
      }
    }
  }

  // --- the source select learns new sources without losing what the user picked ----------

  document.addEventListener("htmx:oobBeforeSwap", function (event) {
    var current = event.detail.target;
    if (!current || current.id !== "log-source") return;
    var incoming = event.detail.fragment.querySelector ? event.detail.fragment.querySelector("select") : null;
    if (!incoming) return;
    event.detail.shouldSwap = false;
    Array.from(incoming.options).forEach(function (option) {
      var mine = Array.from(current.options).find(function (o) { return o.value === option.value; });
      if (mine) mine.textContent = option.textContent;
      else current.add(new Option(option.textContent, option.value));
    });
  });

  // --- follow --------------------------------------------------------------------------------

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
