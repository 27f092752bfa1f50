// Live status on the review list: rows still queued or running are re-read every 5 s
// (/review/status.json answers {id: {text, live}}).
(function () {
  "use strict";
  var cells = document.querySelectorAll("[data-live-status]");
  if (!cells.length) return;
  function poll() {
    var ids = Array.prototype.map.call(cells, function (c) { return c.getAttribute("data-live-status"); });
    fetch("/review/status.json?ids=" + encodeURIComponent(ids.join(",")), { credentials: "same-origin" })
      .then(function (r) { return r.ok ? r.json() : {}; })
      .then(function (statuses) {
        var pending = false;
        Array.prototype.forEach.call(cells, function (cell) {
          var status = statuses[cell.getAttribute("data-live-status")];
          if (status) { cell.textContent = status.text; }
          if (!status || status.live) { pending = true; }
        });
        if (pending) { setTimeout(poll, 5000); }
      })
      .catch(function () { setTimeout(poll, 15000); });
  }
  setTimeout(poll, 5000);
})();
