// The dashboards' charts (pages/dashboards.py): each element with data-chart="<id>" is drawn
// by Apache ECharts from the option in <script type="application/json" id="<id>">. The option
// is data only, so nothing here evaluates text from the page.
(function () {
  "use strict";
  var drawn = [];
  function draw() {
    if (typeof window.echarts !== "object") {
      return;
    }
    var elements = document.querySelectorAll("[data-chart]");
    for (var i = 0; i < elements.length; i++) {
      var element = elements[i];
      var source = document.getElementById(element.getAttribute("data-chart"));
      if (!source) {
        continue;
      }
      var option = JSON.parse(source.textContent || "{}");
      var chart = window.echarts.init(element, null, { renderer: "canvas" });
      chart.setOption(option);
      element.setAttribute("data-drawn", "true");
      drawn.push(chart);
    }
  }
  window.addEventListener("resize", function () {
    for (var i = 0; i < drawn.length; i++) {
      drawn[i].resize();
    }
  });
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", draw);
  } else {
    draw();
  }
})();
