// Keeps the "今日通话" table current: reloads /api/calls shortly after each call event on /ws, at
// once when events were lost (a "resync" frame: the server's Redis came back; a per-channel "seq"
// that skips a number; another hub "epoch") or the socket reconnects, and every 3 seconds all the
// same (an agent's socket carries only that agent's calls).
(function () {
  "use strict";
  var table = document.getElementById("calls");
  if (!table) return;
  var day = table.getAttribute("data-day");
  var body = table.querySelector("tbody");
  var status = document.getElementById("calls-status");
  var total = document.getElementById("calls-total");
  var POLL_MS = 3000, AFTER_EVENT_MS = 300;
  var st = { socket: null, live: false, retry: 0, soon: null };

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
        status.textContent = (st.live ? "实时更新" : "每 3 秒自动刷新") + "，最近更新 " + new Date().toLocaleTimeString("zh-CN");
      })
      .catch(function () { status.textContent = "刷新失败，正在重试…"; });
  }

  function refreshIn(ms) {
    if (st.soon !== null) return;
    st.soon = setTimeout(function () { st.soon = null; refresh(); }, ms);
  }

  var sequence = window.LiveSequence();
  function inSequence(ev) { return sequence.check(ev); }

  function connect() {
    var socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    st.socket = socket;
    sequence.reset();
    socket.onopen = function () { st.live = true; st.retry = 0; refresh(); };
    socket.onmessage = function (message) {
      var ev;
      try { ev = JSON.parse(message.data); } catch (e) { return; }
      if (!inSequence(ev)) refresh();
      else if (ev.type && ev.type.indexOf("call.") === 0) refreshIn(AFTER_EVENT_MS);
    };
    socket.onclose = function (event) {
      if (st.socket !== socket) return;
      st.live = false;
      if (event.code === 4401) { window.location = "/login?next=/calls"; return; }
      setTimeout(connect, Math.min(10000, 500 * Math.pow(2, st.retry++)));
    };
  }

  setInterval(refresh, POLL_MS);
  connect();
})();
