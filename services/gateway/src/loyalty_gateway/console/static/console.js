// The console's only script of its own (no inline script anywhere: the CSP forbids it).
// htmx requests carry the session's CSRF token from <meta name="csrf-token">.
(function () {
  "use strict";
  function token() {
    var meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  }
  document.addEventListener("htmx:configRequest", function (event) {
    event.detail.headers["X-CSRF-Token"] = token();
  });
})();
