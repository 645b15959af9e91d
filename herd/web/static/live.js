/* Herd web manager: job panels and job lists kept live by server-sent events.
 * A panel with data-events opens an EventSource on it: "log" events append lines (the first
 * one, reset, replaces what the page was rendered with), "status" sets the status, "end"
 * closes the stream and puts the ended job's panel in place (or reloads a page that asked for
 * it, to show the object's new state).
 * A job table with data-events gets "status" events {id, status}. No inline script: the
 * pages' Content-Security-Policy allows scripts from /ui/static/ only. */
"use strict";
(function () {
  function setStatus(el, status) {
    if (!el) { return; }
    el.textContent = status;
    el.className = el.className.replace(/\bj-\S+/g, "") + " j-" + status;
  }

  function watchPanel(panel) {
    var source = new EventSource(panel.dataset.events);
    var log = panel.querySelector("pre.log");
    var status = panel.querySelector(".job-status");
    panel.dataset.live = "open";
    source.addEventListener("log", function (event) {
      var data = JSON.parse(event.data);
      if (!log) { return; }
      if (data.reset) { log.textContent = ""; }
      data.lines.forEach(function (line) {
        log.appendChild(document.createTextNode(line + "\n"));
      });
    });
    source.addEventListener("status", function (event) {
      var data = JSON.parse(event.data);
      panel.dataset.status = data.status;
      setStatus(status, data.status);
      var cancel = panel.querySelector(".job-cancel");
      if (cancel && data.status !== "queued" && data.status !== "waiting") { cancel.remove(); }
    });
    source.addEventListener("end", function (event) {
      var data = JSON.parse(event.data);
      source.close();
      panel.dataset.live = "ended";
      panel.dataset.status = data.status;
      setStatus(status, data.status);
      var cancel = panel.querySelector(".job-cancel");
      if (cancel) { cancel.remove(); }
      var error = panel.querySelector(".job-error");
      if (error && data.error) { error.textContent = data.error; error.hidden = false; }
      if (panel.dataset.refresh === "1") { window.location.reload(); return; }
      // the ended job's panel as the server renders it (end time, each opcode's status):
      // our own escaped template, same origin
      fetch(panel.dataset.panel, {credentials: "same-origin"}).then(function (answer) {
        return answer.ok ? answer.text() : null;
      }).then(function (html) {
        if (!html) { return; }
        var box = document.createElement("div");
        box.innerHTML = html;
        var fresh = box.querySelector("section.job");
        if (fresh) { fresh.dataset.live = "ended"; panel.replaceWith(fresh); }
      });
    });
  }

  function watchList(table) {
    var source = new EventSource(table.dataset.events);
    table.dataset.live = "open";
    source.addEventListener("status", function (event) {
      var data = JSON.parse(event.data);
      setStatus(table.querySelector('[data-job-status="' + data.id + '"]'), data.status);
    });
    source.addEventListener("end", function () {
      source.close();
      table.dataset.live = "ended";
    });
  }

  function start() {
    document.querySelectorAll("section.job[data-events]").forEach(watchPanel);
    document.querySelectorAll("table.jobs[data-events]").forEach(watchList);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
