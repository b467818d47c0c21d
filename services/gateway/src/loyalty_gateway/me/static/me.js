// The member page's only script of its own (no inline script: the CSP forbids it).
// htmx requests carry the page's CSRF token from <meta name="csrf-token">.
(function () {
  "use strict";
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    event.detail.headers["X-CSRF-Token"] = meta ? meta.getAttribute("content") : "";
  });
})();
