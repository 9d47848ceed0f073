/* Charts of the reports page, drawn from the same figures as its tables (embedded JSON). */
(function () {
  "use strict";
  var data = JSON.parse(document.getElementById("report-data").textContent);
  function draw(id, option) {
    var chart = echarts.init(document.getElementById(id));
    chart.setOption(Object.assign({ animation: false, tooltip: { trigger: "axis" }, grid: { left: 44, right: 12, top: 30, bottom: 28 } }, option));
    window.addEventListener("resize", function () { chart.resize(); });
  }
  draw("chart-hours", {
    legend: { top: 0, data: ["进线", "接通"] }, grid: { left: 44, right: 12, top: 36, bottom: 28 },
    xAxis: { type: "category", data: data.by_hour.map(function (h) { return h.hour + "时"; }) },
    yAxis: { type: "value", minInterval: 1 },
    series: [{ name: "进线", type: "bar", data: data.by_hour.map(function (h) { return h.offered; }) },
             { name: "接通", type: "bar", data: data.by_hour.map(function (h) { return h.answered; }) }]
  });
  draw("chart-days", {
    xAxis: { type: "category", data: data.by_day.map(function (d) { return d.day.slice(5); }) },
    yAxis: { type: "value", min: 0, max: 100, axisLabel: { formatter: "{value}%" } },
    series: [{ name: "服务水平", type: "line", data: data.by_day.map(function (d) {
      return d.service_level === null ? null : +(d.service_level * 100).toFixed(1); }) }]
  });
  draw("chart-types", {
    xAxis: { type: "category", data: data.by_type.map(function (t) { return t.service_name; }) },
    yAxis: { type: "value", minInterval: 1 },
    series: [{ name: "建单量", type: "bar", data: data.by_type.map(function (t) { return t.created; }) },
             { name: "办结量", type: "bar", data: data.by_type.map(function (t) { return t.completed; }) }]
  });
})();
