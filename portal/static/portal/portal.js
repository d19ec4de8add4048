// The portal's own script (no inline script anywhere: the Content-Security-Policy forbids it).
// Progressive: every page works without it; it only adds comfort.
(function () {
  "use strict";

  // Times are rendered in UTC by the server; show them in the reader's own time zone too.
  function localiseTimes(root) {
    root.querySelectorAll("time[datetime][data-local]").forEach(function (el) {
      var when = new Date(el.getAttribute("datetime"));
      if (isNaN(when)) return;
      el.title = el.textContent.trim();  // the server's own text, in UTC
      el.textContent = when.toLocaleString(undefined, {
        year: "numeric", month: "short", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "short",
      });
      el.removeAttribute("data-local");
    });
  }

  // A followed log stays scrolled to its end while new lines arrive, unless the reader
  // scrolled up to read something.
  function keepLogsAtEnd(root) {
    root.querySelectorAll("pre.log[data-follow]").forEach(function (pre) {
      if (pre.dataset.pinned !== "no") pre.scrollTop = pre.scrollHeight;
    });
  }

  document.addEventListener("scroll", function (event) {
    var pre = event.target;
    if (pre instanceof Element && pre.matches("pre.log[data-follow]")) {
      var atEnd = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
      pre.dataset.pinned = atEnd ? "yes" : "no";
    }
  }, true);

  // Close an open menu when the reader clicks elsewhere or presses Escape.
  document.addEventListener("click", function (event) {
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      if (!menu.contains(event.target)) menu.removeAttribute("open");
    });
  });
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    document.querySelectorAll("details.menu[open]").forEach(function (menu) {
      menu.removeAttribute("open");
      menu.querySelector("summary").focus();
    });
  });

  function refresh(root) {
    localiseTimes(root);
    keepLogsAtEnd(root);
  }
  // A mapped task's list of instances stays open across the live part's refreshes.
  var openInstances = [];
  document.addEventListener("htmx:beforeSwap", function () {
    openInstances = Array.from(
      document.querySelectorAll("details[id^='instances-'][open]")
    ).map(function (d) { return d.id; });
  });
  document.addEventListener("htmx:afterSwap", function () {
    openInstances.forEach(function (id) {
      var d = document.getElementById(id);
      if (d) d.open = true;
    });
  });
  document.addEventListener("DOMContentLoaded", function () { refresh(document); });
  document.addEventListener("htmx:afterSettle", function (event) { refresh(document); });
})();
