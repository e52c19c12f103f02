// jobsched dashboard: the little the pages need beyond htmx. No inline code anywhere
// (the Content-Security-Policy forbids it), so everything is wired up here.
(function () {
  "use strict";
  var PAUSED_KEY = "jobsched.live.paused";

  function paused() {
    try { return window.localStorage.getItem(PAUSED_KEY) === "1"; } catch (e) { return false; }
  }

  function showLocalTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (element) {
      var moment = new Date(element.getAttribute("datetime"));
      if (!isNaN(moment.getTime())) { element.textContent = moment.toLocaleString(); }
    });
  }

  function showLiveState() {
    var button = document.getElementById("live-toggle");
    if (!button) { return; }
    var isPaused = paused();
    button.setAttribute("aria-pressed", isPaused ? "true" : "false");
    button.textContent = isPaused ? "Resume live updates" : "Pause live updates";
    document.body.classList.toggle("live-paused", isPaused);
  }

  document.addEventListener("DOMContentLoaded", function () {
    showLocalTimes(document);
    showLiveState();
    var button = document.getElementById("live-toggle");
    if (button) {
      button.addEventListener("click", function () {
        try { window.localStorage.setItem(PAUSED_KEY, paused() ? "0" : "1"); } catch (e) { /* private mode */ }
        showLiveState();
      });
    }
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
    document.querySelectorAll("button[data-confirm]").forEach(function (button) {
      button.addEventListener("click", function (event) {
        if (!window.confirm(button.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
    document.querySelectorAll("input[data-select-all]").forEach(function (box) {
      box.addEventListener("change", function () {
        var name = box.getAttribute("data-select-all");
        document.querySelectorAll("input[type=checkbox][name='" + name + "']").forEach(function (other) {
          other.checked = box.checked;
        });
      });
    });
  });

  // Live parts of a page poll with hx-trigger="every Ns"; the pause control stops them.
  document.addEventListener("htmx:beforeRequest", function (event) {
    var element = event.detail && event.detail.elt;
    if (paused() && element && element.hasAttribute("data-live")) { event.preventDefault(); }
  });
  document.addEventListener("htmx:afterSettle", function (event) {
    showLocalTimes(event.target || document);
  });
})();
