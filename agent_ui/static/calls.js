// Keeps the "今日通话" table current by polling /api/calls (the live websocket console comes later).
(function () {
  "use strict";
  var table = document.getElementById("calls");
  if (!table) return;
  var day = table.getAttribute("data-day");
  var body = table.querySelector("tbody");
  var status = document.getElementById("calls-status");
  var total = document.getElementById("calls-total");

  function cell(text, className) {
    var td = document.createElement("td");
    if (className) td.className = className;
    td.textContent = text == null ? "" : String(text);
    return td;
  }

  function elderCell(call) {
    var td = document.createElement("td");
    if (call.elder_id) {
      var a = document.createElement("a");
      a.href = "/elders/" + call.elder_id;
      a.textContent = "查看档案";
      td.appendChild(a);
    } else if (call.elder_candidates && call.elder_candidates.length) {
      td.textContent = call.elder_candidates.length + " 位老人共用";
    } else {
      td.textContent = "未匹配";
    }
    return td;
  }

  function priorityCell(call) {
    var td = document.createElement("td");
    if (call.priority) {
      var span = document.createElement("span");
      span.className = "flag";
      span.textContent = "紧急 " + call.priority;
      td.appendChild(span);
    }
    return td;
  }

  function row(call) {
    var tr = document.createElement("tr");
    tr.setAttribute("data-id", call.id);
    var caller = (call.caller || "未知号码") + (call.caller_name ? "（" + call.caller_name + "）" : "");
    [cell((call.started_at || "").slice(11, 19)), cell(caller, "mono"), elderCell(call), cell(call.state_label),
     cell(call.outcome_label), cell(call.ivr_route_label), priorityCell(call), cell(call.agent),
     cell(call.wait_seconds), cell(call.talk_seconds)].forEach(function (td) { tr.appendChild(td); });
    return tr;
  }

  function refresh() {
    fetch("/api/calls?page_size=100&from=" + day + "&to=" + day, { credentials: "same-origin" })
      .then(function (response) {
        if (response.status === 401) { window.location = "/login?next=/calls"; return null; }
        if (!response.ok) throw new Error(response.status);
        return response.json();
      })
      .then(function (data) {
        if (!data) return;
        var fragment = document.createDocumentFragment();
        data.items.forEach(function (call) { fragment.appendChild(row(call)); });
        body.replaceChildren(fragment);
        total.textContent = "共 " + data.total + " 通";
        status.textContent = "每 3 秒自动刷新，最近更新 " + new Date().toLocaleTimeString("zh-CN");
      })
      .catch(function () { status.textContent = "刷新失败，正在重试…"; });
  }

  setInterval(refresh, 3000);
})();
