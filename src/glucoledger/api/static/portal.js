/* glucoledger portal: the only script. Same origin (CSP script-src 'self'), no libraries.
   1. Moves focus to a confirmation (#notice) after an action.
   2. Refreshes the patient's current glucose (#now) by polling /portal/now.json every
      data-poll seconds; the server answers {"changed": false} cheaply until a newer
      reading is stored. The minutes-ago text and the stale warning update in between.
   3. A reading cursor on each chart (tap-for-value, keyboard too).
   4. Print buttons (data-print) open the browser's print dialog (print stylesheet). */
(function () {
  "use strict";
  var notice = document.getElementById("notice");
  if (notice) { notice.focus(); }
  document.querySelectorAll("button[data-print]").forEach(function (b) {
    b.hidden = false;
    b.addEventListener("click", function () { window.print(); });
  });
  /* 3. Tap-for-value: a reading cursor on every chart that carries data-read (see
        api/portal_charts.py): a focusable role=slider after the chart (arrow keys: one
        point; Page Up/Down: data-read-step points; Home/End) and a polite live region;
        a tap or click on the chart picks the nearest point. */
  var SVG = "http://www.w3.org/2000/svg";
  function reader(svg, n) {
    var pts;
    try { pts = JSON.parse(svg.getAttribute("data-read") || "[]"); } catch (e) { return; }
    if (!pts.length) { return; }
    var name = svg.getAttribute("data-read-name") || "the chart";
    var step = Math.max(1, parseInt(svg.getAttribute("data-read-step") || "12", 10));
    var ys = (svg.getAttribute("data-read-y") || "0 0").split(" ");
    var line = document.createElementNS(SVG, "line");
    line.setAttribute("y1", ys[0]); line.setAttribute("y2", ys[1]);
    line.setAttribute("stroke", "#111"); line.setAttribute("stroke-width", "1");
    var dot = document.createElementNS(SVG, "circle");
    dot.setAttribute("r", "4"); dot.setAttribute("fill", "#111");
    dot.setAttribute("stroke", "#fff"); dot.setAttribute("stroke-width", "1.5");
    line.setAttribute("visibility", "hidden"); dot.setAttribute("visibility", "hidden");
    svg.appendChild(line); svg.appendChild(dot);
    var box = document.createElement("div");
    box.className = "reader";
    var slider = document.createElement("div");
    slider.className = "reader-cursor";
    slider.id = "reader-" + n;
    slider.setAttribute("role", "slider");
    slider.setAttribute("tabindex", "0");
    slider.setAttribute("aria-label", "Read " + name + ", point by point");
    slider.setAttribute("aria-valuemin", "1");
    slider.setAttribute("aria-valuemax", String(pts.length));
    slider.textContent = "◀ ▶ Read a value: tap the chart, or focus here and use the arrow keys";
    var last = pts[pts.length - 1];  /* before any move the cursor rests on the newest point */
    slider.setAttribute("aria-valuenow", String(pts.length));
    slider.setAttribute("aria-valuetext", last[2] + ": " + last[3]);
    var out = document.createElement("output");
    out.className = "readout";
    out.setAttribute("aria-live", "polite");
    out.setAttribute("for", slider.id);
    box.appendChild(slider); box.appendChild(out);
    svg.parentNode.insertBefore(box, svg.nextSibling);
    var at = pts.length - 1;
    function show(i) {
      at = Math.max(0, Math.min(pts.length - 1, i));
      var p = pts[at];
      line.setAttribute("x1", p[0]); line.setAttribute("x2", p[0]);
      dot.setAttribute("cx", p[0]); dot.setAttribute("cy", p[1]);
      line.setAttribute("visibility", "visible"); dot.setAttribute("visibility", "visible");
      var text = p[2] + ": " + p[3];
      slider.setAttribute("aria-valuenow", String(at + 1));
      slider.setAttribute("aria-valuetext", text);
      out.textContent = text;
    }
    svg.addEventListener("click", function (ev) {
      var r = svg.getBoundingClientRect();
      var vb = svg.viewBox.baseVal;
      if (!r.width || !vb) { return; }
      var x = vb.x + (ev.clientX - r.left) * vb.width / r.width;
      var best = 0;
      for (var i = 1; i < pts.length; i++) {
        if (Math.abs(pts[i][0] - x) < Math.abs(pts[best][0] - x)) { best = i; }
      }
      show(best);
    });
    slider.addEventListener("keydown", function (ev) {
      var moves = {ArrowLeft: -1, ArrowDown: -1, ArrowRight: 1, ArrowUp: 1,
                   PageDown: -step, PageUp: step};
      if (ev.key in moves) { show(at + moves[ev.key]); }
      else if (ev.key === "Home") { show(0); }
      else if (ev.key === "End") { show(pts.length - 1); }
      else { return; }
      ev.preventDefault();
    });
  }
  document.querySelectorAll("svg[data-read]").forEach(reader);

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
