/* glucoledger portal: the only script. Same origin (CSP script-src 'self'), no libraries.
   1. Moves focus to a confirmation (#notice) after an action.
   2. Refreshes the patient's current glucose (#now) by polling /portal/now.json every
      data-poll seconds; the server answers {"changed": false} cheaply until a newer
      reading is stored. The minutes-ago text and the stale warning update in between.
   3. Print buttons (data-print) open the browser's print dialog (print stylesheet). */
(function () {
  "use strict";
  var notice = document.getElementById("notice");
  if (notice) { notice.focus(); }
  document.querySelectorAll("button[data-print]").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () { window.print(); });
  });
  var now = document.getElementById("now");
  if (!now) { return; }
  var at = parseInt(now.getAttribute("data-time") || "0", 10);
  var version = now.getAttribute("data-version") || "";
  var poll = Math.max(2, parseInt(now.getAttribute("data-poll") || "60", 10)) * 1000;
  function set(id, text) {
    var el = document.getElementById(id);
    if (el) { el.textContent = text; }
  }
  function ago(minutes) {
    return minutes === 0 ? "just now" : minutes === 1 ? "1 minute ago" : minutes + " minutes ago";
  }
  function tick(data) {
    if (data.changed) {
      at = data.time_ms;
      version = data.version;
      now.setAttribute("data-time", String(at));
      now.setAttribute("data-version", String(version));
      now.setAttribute("data-band", data.band);
      set("now-value", data.value);
      set("now-arrow", data.arrow);
      set("now-trend", data.trend);
      set("now-delta", data.delta ? data.delta + " " + data.units + " since the last reading" : "");
      set("now-time", data.time);
      set("now-band", data.band);
    }
    if (typeof data.minutes_ago === "number") { set("now-ago", ago(data.minutes_ago)); }
    var stale = document.getElementById("now-stale");
    if (stale) { stale.hidden = !data.stale; }
  }
  function poll_once() {
    fetch("/portal/now.json?since=" + encodeURIComponent(version) + "&at=" + at, {credentials: "same-origin",
                                               headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (data) { if (data) { tick(data); } })
      .catch(function () { /* offline: try again at the next tick */ })
      .then(function () { window.setTimeout(poll_once, poll); });
  }
  window.setTimeout(poll_once, poll);
}());
