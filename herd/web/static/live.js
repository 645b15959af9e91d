/* Herd web manager: job panels and job lists kept live by server-sent events.
 * A panel with data-events opens an EventSource on it: "log" events append lines (the first
 * one, reset, replaces what the page was rendered with), "status" sets the status, "end"
 * closes the stream and puts the ended job's panel in place (or reloads a page that asked for
 * it, to show the object's new state).
 * A job table with data-events gets "status" events {id, status}. No inline script: the
 * pages' Content-Security-Policy allows scripts from /ui/static/ only. */
"use strict";
(function () {
  var FINAL = ["success", "error", "canceled"];

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
      refreshPanel(panel);
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

  function refreshPanel(panel) {
    fetch(panel.dataset.panel, {credentials: "same-origin"}).then(function (answer) {
      return answer.ok ? answer.text() : null;
    }).then(function (html) {
      if (!html) { return; }
      var box = document.createElement("div");
      box.innerHTML = html;
      var fresh = box.querySelector("section.job");
      if (fresh) { fresh.dataset.live = "ended"; panel.replaceWith(fresh); }
    });
  }

  /* Many panels (a bulk action's jobs) share one stream of the job list: a browser opens
   * only six HTTP/1.1 connections to a server, and each EventSource holds one. */
  function watchPanels(panels) {
    var byId = {};
    panels.forEach(function (panel) {
      byId[panel.id.replace("job-", "")] = panel;
      panel.dataset.live = "open";
    });
    var source = new EventSource(panels[0].dataset.events.replace(/\/\d+\/events$/, "/events")
                                 + "?ids=" + Object.keys(byId).join(","));
    source.addEventListener("status", function (event) {
      var data = JSON.parse(event.data);
      var panel = byId[String(data.id)];
      if (!panel) { return; }
      panel.dataset.status = data.status;
      setStatus(panel.querySelector(".job-status"), data.status);
      if (FINAL.indexOf(data.status) >= 0) { refreshPanel(panel); }
    });
    source.addEventListener("end", function () { source.close(); });
  }

  function start() {
    var panels = Array.prototype.slice.call(
      document.querySelectorAll("section.job[data-events]"));
    if (panels.length > 2) {
      watchPanels(panels);
    } else {
      panels.forEach(watchPanel);
    }
    document.querySelectorAll("table.jobs[data-events]").forEach(watchList);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
}());
