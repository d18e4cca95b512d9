// Live updates: when this session changes (on either server), refresh the parts of the page
// that show it. Without JavaScript the page works the same, just without this.
(function () {
  "use strict";
  if (!("EventSource" in window) || !("fetch" in window) || !("DOMParser" in window)) return;
  var PARTS = ["cart", "box", "recent", "session"];
  var busy = false;
  var again = false;
  window.liveRefreshes = 0;

  function refresh() {
    if (busy) { again = true; return; }
    busy = true;
    // The header marks a read-only look: it neither writes nor counts as a hop.
    fetch("/Cart", { headers: { "X-Live-Refresh": "1" }, credentials: "same-origin", cache: "no-store" })
      .then(function (r) { return r.ok ? r.text() : Promise.reject(r.status); })
      .then(function (html) {
        var fresh = new DOMParser().parseFromString(html, "text/html");
        PARTS.forEach(function (id) {
          var mine = document.getElementById(id);
          var theirs = fresh.getElementById(id);
          if (mine && theirs) mine.replaceWith(document.importNode(theirs, true));
        });
        window.liveRefreshes += 1;
      })
      .catch(function () { /* the session server is away: the next event retries */ })
      .then(function () {
        busy = false;
        if (again) { again = false; refresh(); }
      });
  }

  new EventSource("/Cart/events").addEventListener("session", refresh);
})();
