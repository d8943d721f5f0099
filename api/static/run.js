// The run page's live grid: each cell follows the run's Server-Sent Events (state, phase,
// elapsed time) without a reload. Everything a guest or the engine said goes in as textContent,
// never as HTML.
(function () {
  "use strict";
  var grid = document.getElementById("grid");
  if (!grid) { return; }
  var skew = parseFloat(grid.dataset.serverNow) - Date.now() / 1000;
  var live = document.getElementById("live-status");

  function cellOf(cellId) {
    var cells = grid.querySelectorAll("td[data-cell-id]");
    for (var i = 0; i < cells.length; i++) {
      if (cells[i].dataset.cellId === cellId) { return cells[i]; }
    }
    return null;
  }

  function field(cell, name) { return cell.querySelector('[data-field="' + name + '"]'); }

  function setClass(cell, prefix, value) {
    var kept = cell.className.split(/\s+/).filter(function (c) { return c.indexOf(prefix) !== 0; });
    if (value) { kept.push(prefix + value); }
    cell.className = kept.join(" ");
  }

  function elapsed(seconds) {
    if (!(seconds >= 0)) { return ""; }
    var whole = Math.round(seconds);
    if (whole < 60) { return whole + "s"; }
    var minutes = Math.floor(whole / 60), rest = whole % 60;
    if (minutes < 60) { return minutes + "m" + (rest < 10 ? "0" : "") + rest + "s"; }
    return Math.floor(minutes / 60) + "h" + (minutes % 60 < 10 ? "0" : "") + (minutes % 60) + "m";
  }

  function showElapsed(cell) {
    var started = parseFloat(cell.dataset.startedAt);
    var finished = parseFloat(cell.dataset.finishedAt);
    var now = Date.now() / 1000 + skew;
    field(cell, "elapsed").textContent = started ? elapsed((finished || now) - started) : "";
  }

  function tick() {
    var cells = grid.querySelectorAll("td[data-cell-id]");
    for (var i = 0; i < cells.length; i++) { showElapsed(cells[i]); }
  }

  function asDeclared(event) {
    var data = event.kind === "cell_finished" && event.data;
    return Boolean(data && data.expected_outcome && data.observed === data.expected_outcome);
  }

  function onCell(event) {
    var cell = cellOf(event.cell_id);
    if (!cell) { return; }
    if (event.attempt && cell.dataset.attempt && event.attempt > Number(cell.dataset.attempt)) {
      cell.dataset.finishedAt = "";  // a new attempt on a fresh clone
      setClass(cell, "outcome-", "");
      cell.classList.remove("as-expected");
      field(cell, "title").textContent = "";
    }
    cell.dataset.attempt = event.attempt || 1;
    if (event.state) { setClass(cell, "state-", event.state); }
    var asExpected = asDeclared(event);
    field(cell, "state").textContent = asExpected ? event.data.observed + " (expected)" : event.outcome || event.state || "";
    field(cell, "phase").textContent = event.phase || "";
    if (!cell.dataset.startedAt && event.state && event.state !== "pending" && event.state !== "done") {
      cell.dataset.startedAt = event.at;
    }
    if (event.kind === "cell_finished") {
      cell.dataset.finishedAt = (event.data && event.data.finished_at) || event.at;
      if (event.data && event.data.started_at) { cell.dataset.startedAt = event.data.started_at; }
      // A control image doing what it is declared to do counts as a pass, as the verdict has it.
      setClass(cell, "outcome-", asExpected ? "passed" : event.outcome);
      cell.classList.toggle("as-expected", asExpected);
      if (event.data && event.data.crash && event.data.crash.title) {
        field(cell, "title").textContent = event.data.crash.title;
      }
    }
    showElapsed(cell);
  }

  function onRun(event) {
    if (event.kind !== "run_finished") { return; }
    var badge = document.querySelector("[data-verdict]");
    if (badge && event.verdict) {
      badge.textContent = event.verdict;
      badge.className = "badge verdict-" + event.verdict;
    }
    document.getElementById("run-status").textContent = "finished";
    document.getElementById("run-summary").textContent = event.detail || "";
  }

  function handle(message) {
    var event = JSON.parse(message.data);
    if (event.cell_id) { onCell(event); } else { onRun(event); }
  }

  tick();
  window.setInterval(tick, 1000);
  if (grid.dataset.finished === "true" || !window.EventSource) { return; }
  var source = new EventSource(grid.dataset.liveUrl);
  ["run_started", "cell_changed", "cell_note", "cell_finished", "run_finished"].forEach(function (kind) {
    source.addEventListener(kind, handle);
  });
  source.addEventListener("end", function () {
    source.close();
    live.textContent = "finished";
  });
  source.onopen = function () { live.textContent = "live"; };
  source.onerror = function () { live.textContent = "reconnecting…"; };
})();
