/* craft-bench report: table sorting, grid filters and column toggles. Without this file every page is
   complete and readable; with it, the state of a view lives in the URL hash, e.g.
   #f.stratum=counting&disagree=1&hide=abcd1234&q=red  or  #sort=lb-geneval.4.desc
   so a filtered or sorted view can be bookmarked, shared and tested (chromium --dump-dom). */
(function () {
  "use strict";
  var doc = document;
  doc.documentElement.classList.add("js");

  function state() {
    var h = location.hash.replace(/^#/, "");
    return new URLSearchParams(h.indexOf("=") >= 0 ? h : "");
  }
  function save(p) {
    var s = p.toString();
    history.replaceState(null, "", s ? "#" + s : location.pathname + location.search);
  }

  /* ---------------------------------------------------------------- sorting */
  function sortKey(cell, numeric) {
    if (!cell) return numeric ? -Infinity : "";
    if (numeric) {
      var v = parseFloat(cell.getAttribute("data-value"));
      return isNaN(v) ? -Infinity : v;
    }
    return cell.textContent.trim().toLowerCase();
  }
  function sortTable(table, col, dir) {
    var head = table.tHead.rows[0].cells;
    if (!head[col]) return;
    var numeric = head[col].getAttribute("data-type") === "num";
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = sortKey(a.cells[col], numeric), y = sortKey(b.cells[col], numeric);
      var c = x < y ? -1 : x > y ? 1 : 0;
      return dir === "asc" ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    for (var i = 0; i < head.length; i++) head[i].removeAttribute("aria-sort");
    head[col].setAttribute("aria-sort", dir === "asc" ? "ascending" : "descending");
  }
  function initSorting() {
    doc.querySelectorAll("table.sortable").forEach(function (table) {
      var head = table.tHead && table.tHead.rows[0];
      if (!head) return;
      Array.prototype.forEach.call(head.cells, function (th, col) {
        th.tabIndex = 0;
        th.addEventListener("keydown", function (e) {
          if (e.key === "Enter" || e.key === " ") { e.preventDefault(); th.click(); }
        });
        th.addEventListener("click", function () {
          var cur = th.getAttribute("aria-sort");
          var numeric = th.getAttribute("data-type") === "num";
          var dir = cur ? (cur === "ascending" ? "desc" : "asc") : (numeric ? "desc" : "asc");
          sortTable(table, col, dir);
          var p = state();
          p.set("sort", table.id + "." + col + "." + dir);
          save(p);
        });
      });
    });
  }
  function applySort() {
    var s = state().get("sort");
    if (!s) return;
    var parts = s.split(".");
    var table = doc.getElementById(parts[0]);
    if (table && table.tHead) sortTable(table, parseInt(parts[1], 10), parts[2] === "asc" ? "asc" : "desc");
  }

  /* ---------------------------------------------------------------- filters */
  var form = null;
  function readControls() {
    var p = state();
    form.querySelectorAll("select").forEach(function (s) { if (s.value) p.set(s.name, s.value); else p.delete(s.name); });
    var dis = form.querySelector("input[name=disagree]");
    if (dis) { if (dis.checked) p.set("disagree", "1"); else p.delete("disagree"); }
    var q = form.querySelector("input[name=q]");
    if (q && q.value.trim()) p.set("q", q.value.trim()); else p.delete("q");
    var hidden = [];
    form.querySelectorAll("input[name=run]").forEach(function (c) { if (!c.checked) hidden.push(c.value); });
    if (hidden.length) p.set("hide", hidden.join(",")); else p.delete("hide");
    return p;
  }
  function writeControls(p) {
    form.querySelectorAll("select").forEach(function (s) { s.value = p.get(s.name) || ""; });
    var dis = form.querySelector("input[name=disagree]");
    if (dis) dis.checked = p.get("disagree") === "1";
    var q = form.querySelector("input[name=q]");
    if (q) q.value = p.get("q") || "";
    var hidden = (p.get("hide") || "").split(",");
    form.querySelectorAll("input[name=run]").forEach(function (c) { c.checked = hidden.indexOf(c.value) < 0; });
  }
  function applyFilters() {
    if (!form) return;
    var p = state();
    writeControls(p);
    var facets = [];
    form.querySelectorAll("select").forEach(function (s) {
      if (s.value) facets.push(["data-" + s.name.replace(/^f\./, "f-"), s.value]);
    });
    var disagree = p.get("disagree") === "1";
    var q = (p.get("q") || "").toLowerCase();
    var hidden = (p.get("hide") || "").split(",").filter(Boolean);
    var shownRuns = 0;
    form.querySelectorAll("input[name=run]").forEach(function (c) { if (c.checked) shownRuns++; });
    doc.querySelectorAll(".grid").forEach(function (g) {
      g.querySelectorAll("[data-run]").forEach(function (el) { el.hidden = hidden.indexOf(el.getAttribute("data-run")) >= 0; });
      if (form.querySelector("input[name=run]")) g.style.setProperty("--cols", shownRuns);
    });
    var items = 0, rows = 0, totalItems = 0;
    doc.querySelectorAll(".grid .item").forEach(function (item) {
      totalItems++;
      var match = facets.every(function (f) { return item.getAttribute(f[0]) === f[1]; });
      if (match && q) {
        var prompt = item.querySelector(".prompt q");
        match = !!prompt && prompt.textContent.toLowerCase().indexOf(q) >= 0;
      }
      var visibleRows = 0;
      item.querySelectorAll(".row").forEach(function (row) {
        var show = match;
        if (show && disagree) {
          var values = {};
          var n = 0;
          row.querySelectorAll("figure[data-v]").forEach(function (f) {
            if (f.hidden) return;
            var v = f.getAttribute("data-v");
            if (!(v in values)) { values[v] = 1; n++; }
          });
          show = n > 1;
        }
        row.hidden = !show;
        if (show) visibleRows++;
      });
      item.hidden = visibleRows === 0;
      if (visibleRows) { items++; rows += visibleRows; }
    });
    doc.querySelectorAll("section.group").forEach(function (sec) {
      sec.hidden = !sec.querySelector(".item:not([hidden])");
    });
    var out = form.querySelector("output");
    if (out) out.textContent = "showing " + items + " of " + totalItems + " prompts (" + rows + " image rows)";
  }
  function initFilters() {
    form = doc.querySelector("form.filters");
    if (!form) return;
    form.hidden = false;
    form.addEventListener("submit", function (e) { e.preventDefault(); });
    form.addEventListener("input", function () { save(readControls()); applyFilters(); });
    form.addEventListener("change", function () { save(readControls()); applyFilters(); });
    /* in-page links (#g-counting) scroll without replacing the filter state in the hash */
    doc.querySelectorAll('a[href^="#g-"]').forEach(function (a) {
      a.addEventListener("click", function (e) {
        var target = doc.getElementById(a.getAttribute("href").slice(1));
        if (target) { e.preventDefault(); target.scrollIntoView(); }
      });
    });
  }

  /* ---------------------------------------------------------------- provenance anchors */
  function openTarget() {
    var id = location.hash.replace(/^#/, "");
    if (!id || id.indexOf("=") >= 0) return;
    var el = doc.getElementById(id);
    if (el && el.tagName === "DETAILS") { el.open = true; el.scrollIntoView(); }
  }

  /* ---------------------------------------------------------------- lazy images
     Grid images carry data-src (an <img src> costs ~1 ms of parsing each on a file:// page). The first EAGER
     shown ones get their src at once (the first screen, without waiting for an observer callback); the others
     when they come within a screen of the viewport. data-first-images-ms on <html>: when that first batch has
     loaded (or failed), for measurements. */
  var EAGER = 24;
  function initImages() {
    var imgs = doc.querySelectorAll("img[data-src]");
    if (!imgs.length) return;
    var first = [];
    function show(img) {
      img.src = img.getAttribute("data-src");
      img.removeAttribute("data-src");
    }
    function firstScreen(batch) {
      var left = batch.length;
      function done() {
        if (--left === 0) doc.documentElement.setAttribute("data-first-images-ms", String(Math.round(performance.now())));
      }
      batch.forEach(function (img) {
        if (img.complete) done(); else { img.addEventListener("load", done); img.addEventListener("error", done); }
      });
    }
    if (!("IntersectionObserver" in window)) { imgs.forEach(show); return; }
    var io = new IntersectionObserver(function (entries) {
      entries.forEach(function (e) {
        if (!e.isIntersecting) return;
        io.unobserve(e.target);
        show(e.target);
      });
    }, { rootMargin: "800px 0px" });
    imgs.forEach(function (img) {
      if (first.length < EAGER && !img.closest("[hidden]")) { show(img); first.push(img); }
      else io.observe(img);
    });
    if (first.length) firstScreen(first);
  }

  function apply() { applySort(); applyFilters(); openTarget(); }
  doc.addEventListener("DOMContentLoaded", function () {
    initSorting();
    initFilters();
    apply();
    initImages();
    window.addEventListener("hashchange", apply);
  });
  /* time from navigation start to the load event, for measurements (chromium --dump-dom shows it) */
  window.addEventListener("load", function () {
    doc.documentElement.setAttribute("data-load-ms", String(Math.round(performance.now())));
  });
})();
