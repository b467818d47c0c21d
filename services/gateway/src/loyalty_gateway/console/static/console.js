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
  // A file chooser with data-fills="<id>" loads the chosen text file into that text box.
  document.addEventListener("change", function (event) {
    var input = event.target;
    if (!input || !input.getAttribute || !input.getAttribute("data-fills") || !input.files || !input.files[0]) {
      return;
    }
    var target = document.getElementById(input.getAttribute("data-fills"));
    if (!target) {
      return;
    }
    var reader = new FileReader();
    reader.onload = function () {
      target.value = String(reader.result);
      target.dispatchEvent(new Event("input", { bubbles: true }));
    };
    reader.readAsText(input.files[0]);
  });
})();
