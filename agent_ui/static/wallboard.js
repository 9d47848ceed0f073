/* The supervisors' wallboard: loads /api/stats/wallboard, reloads it within a second of every
   live event on /ws (and every second while callers wait, so waits and alerts stay exact), and
   counts the seconds on screen in between. All figures come from the server. Lost events (a
   "resync" frame: the server's Redis came back; a per-channel "seq" that skips a number; another
   hub "epoch") reload it at once, as a reconnect does. */
(function () {
  "use strict";
  var REFRESH_AFTER_EVENT_MS = 250, IDLE_REFRESH_MS = 10000, WAITING_REFRESH_MS = 1000;
  var st = { snapshot: null, loadedAt: 0, timer: null, inflight: false, again: false, retry: 0, socket: null, charts: {} };

  function $(id) { return document.getElementById(id); }
  function text(id, value) { var el = $(id); if (el) el.textContent = value; }
  function pct(value) { return value === null || value === undefined ? "–" : (value * 100).toFixed(1) + "%"; }
  function num(value) { return value === null || value === undefined ? "–" : String(value); }
  function mean(value) { return value === null || value === undefined ? "–" : value.toFixed(1); }  // as the exports show it
  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "";
    var m = Math.floor(seconds / 60), s = seconds % 60;
    return m >= 60 ? Math.floor(m / 60) + "时" + (m % 60) + "分" : m ? m + "分" + (s < 10 ? "0" : "") + s + "秒" : s + "秒";
  }
  function cell(row, value, cls) {
    var td = document.createElement("td");
    td.textContent = value;
    if (cls) td.className = cls;
    row.appendChild(td);
    return td;
  }
  function elapsed() { return Math.floor((Date.now() - st.loadedAt) / 1000); }

  function load() {
    if (st.inflight) { st.again = true; return; }
    st.inflight = true;
    fetch("/api/stats/wallboard", { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (response) {
        if (response.status === 401) { window.location = "/login?next=/supervisor"; throw new Error("signed out"); }
        if (!response.ok) throw new Error("HTTP " + response.status);
        return response.json();
      })
      .then(function (snapshot) { st.snapshot = snapshot; st.loadedAt = Date.now(); render(); })
      .catch(function (err) { text("wb-link", "数据加载失败：" + err.message); })
      .then(function () {
        st.inflight = false;
        if (st.again) { st.again = false; load(); return; }
        schedule(st.snapshot && st.snapshot.waiting.length ? WAITING_REFRESH_MS : IDLE_REFRESH_MS);
      });
  }

  function schedule(ms) {
    if (st.timer !== null) clearTimeout(st.timer);
    st.timer = setTimeout(function () { st.timer = null; load(); }, ms);
  }

  function render() {
    var s = st.snapshot, t = s.today;
    text("wb-clock", s.day + " " + s.at.slice(11, 19) + " 更新");
    text("kpi-threshold", s.settings.threshold_seconds);
    text("kpi-waiting", s.waiting.length);
    text("kpi-longest-now", s.waiting.length ? "最长 " + duration(s.waiting.reduce(function (m, c) { return Math.max(m, c.wait_seconds); }, 0)) : "");
    ["offered", "answered", "longest_wait_seconds"].forEach(function (key) { text("kpi-" + key, num(t[key])); });
    ["asa_seconds", "aht_seconds"].forEach(function (key) { text("kpi-" + key, mean(t[key])); });
    ["answer_rate", "service_level", "timely_answer_rate", "abandon_rate"].forEach(function (key) { text("kpi-" + key, pct(t[key])); });
    text("kpi-last-hour", "近一小时 " + pct(s.last_hour.service_level));
    text("kpi-abandons", "放弃 " + t.abandoned + "，短时放弃 " + t.short_abandons);
    text("kpi-orders_open", s.orders.open);
    text("kpi-orders_escalated", s.orders.escalated);
    text("kpi-orders-today", "今日新建 " + s.orders.created_today + "，办结 " + s.orders.completed_today);
    var low = s.last_hour.service_level !== null && s.last_hour.service_level < s.settings.service_level_target;
    document.querySelector('[data-kpi="service_level"]').classList.toggle("bad", low);
    document.querySelector('[data-kpi="orders_escalated"]').classList.toggle("bad", s.orders.escalated > 0);
    renderAlerts(s.alerts);
    renderWaiting(s.waiting);
    renderAgents(s.agents, s.by_agent);
    renderOrders(s.orders);
    renderCharts(s);
  }

  function renderAlerts(alerts) {
    var box = $("wb-alerts");
    box.textContent = "";
    alerts.forEach(function (alert) {
      var p = document.createElement("p");
      p.className = "wb-alert alert-" + alert.kind;
      p.textContent = alert.message;
      box.appendChild(p);
    });
    box.hidden = !alerts.length;
  }

  function renderWaiting(waiting) {
    var body = $("wb-waiting").tBodies[0];
    body.textContent = "";
    if (!waiting.length) { var row = body.insertRow(); cell(row, "当前无人排队", "muted").colSpan = 5; return; }
    waiting.forEach(function (c) {
      var row = body.insertRow();
      row.dataset.callId = c.call_id;
      row.dataset.wait = c.wait_seconds;
      if (c.emergency) row.className = "emergency";
      else if (c.wait_seconds > st.snapshot.settings.long_wait_alert_seconds) row.className = "late";
      cell(row, (c.emergency ? "【紧急】" : "") + (c.caller_display || "未知号码"), "mono");
      cell(row, c.elder_name || "");
      cell(row, c.queue || "");
      cell(row, c.ivr_route_label || "");
      cell(row, duration(c.wait_seconds), "tick");
    });
  }

  function renderAgents(agents, byAgent) {
    var body = $("wb-agents").tBodies[0], counts = {}, today = {};
    (byAgent || []).forEach(function (a) { today[a.agent] = a; });
    body.textContent = "";
    agents.forEach(function (a) {
      counts[a.activity_label] = (counts[a.activity_label] || 0) + 1;
      var row = body.insertRow(), mine = today[a.agent] || {};
      row.dataset.agent = a.agent;
      row.dataset.since = a.seconds_in_state === null ? "" : a.seconds_in_state;
      cell(row, a.agent + (a.name ? " " + a.name : ""));
      var badge = document.createElement("span");
      badge.className = "state-badge state-" + a.activity;
      badge.textContent = a.activity_label + (a.pause_reason_label ? "（" + a.pause_reason_label + "）" : "");
      cell(row, "").appendChild(badge);
      cell(row, duration(a.seconds_in_state), "tick");
      cell(row, num(mine.answered === undefined ? 0 : mine.answered));
      cell(row, pct(mine.occupancy));
    });
    text("wb-agent-counts", Object.keys(counts).map(function (k) { return k + " " + counts[k]; }).join("，"));
  }

  function renderOrders(orders) {
    var body = $("wb-orders").tBodies[0];
    body.textContent = "";
    orders.by_status.forEach(function (item) {
      var row = body.insertRow();
      row.dataset.status = item.status;
      if (item.status === "escalated" && item.count) row.className = "late";
      cell(row, item.label);
      cell(row, String(item.count));
    });
  }

  function chart(id) {
    if (typeof echarts === "undefined") return null;
    if (!st.charts[id]) st.charts[id] = echarts.init($(id), null, { renderer: "canvas" });
    return st.charts[id];
  }

  function renderCharts(s) {
    var ink = { color: document.body.classList.contains("bigscreen") ? "#e6edf5" : "#1f2933" };
    var hours = chart("chart-hours");
    if (hours) hours.setOption({
      animation: false, textStyle: ink, legend: { top: 0, textStyle: ink, data: ["进线", "接通", "放弃"] }, tooltip: { trigger: "axis" },
      grid: { left: 40, right: 10, top: 36, bottom: 24 },
      xAxis: { type: "category", data: s.by_hour.map(function (h) { return h.hour + "时"; }) },
      yAxis: { type: "value", minInterval: 1 },
      series: [{ name: "进线", type: "bar", data: s.by_hour.map(function (h) { return h.offered; }) },
               { name: "接通", type: "bar", data: s.by_hour.map(function (h) { return h.answered; }) },
               { name: "放弃", type: "line", data: s.by_hour.map(function (h) { return h.abandoned; }) }]
    });
    var orders = chart("chart-orders");
    if (orders) orders.setOption({
      animation: false, textStyle: ink, tooltip: {}, grid: { left: 40, right: 10, top: 10, bottom: 24 },
      xAxis: { type: "category", data: s.orders.by_type_today.map(function (t) { return t.service_name; }) },
      yAxis: { type: "value", minInterval: 1 },
      series: [{ name: "今日新建工单", type: "bar", data: s.orders.by_type_today.map(function (t) { return t.created; }) }]
    });
  }

  function tick() {
    if (!st.snapshot) return;
    var extra = elapsed();
    document.querySelectorAll("#wb-waiting tr[data-wait]").forEach(function (row) {
      row.cells[4].textContent = duration(Number(row.dataset.wait) + extra);
    });
    document.querySelectorAll("#wb-agents tr[data-since]").forEach(function (row) {
      if (row.dataset.since !== "") row.cells[2].textContent = duration(Number(row.dataset.since) + extra);
    });
  }

  var sequence = window.LiveSequence();
  function inSequence(event) { return sequence.check(event); }

  function connect() {
    var socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    st.socket = socket;
    sequence.reset();
    socket.onopen = function () { st.retry = 0; text("wb-link", "实时连接正常"); $("wb-link").className = "link-state"; load(); };
    socket.onmessage = function (message) {
      var event = JSON.parse(message.data);
      if (!inSequence(event)) { schedule(0); return; }  // events were lost: reload everything now
      if (event.type === "ivr.emergency") { schedule(0); return; }  // the IVR's emergency alert: show it at once
      if (event.type && (event.type.indexOf("call.") === 0 || event.type === "agent.state")) schedule(REFRESH_AFTER_EVENT_MS);
    };
    socket.onclose = function (event) {
      if (st.socket !== socket) return;
      if (event.code === 4401) { window.location = "/login?next=/supervisor"; return; }
      text("wb-link", "实时连接中断，正在重连…");
      $("wb-link").className = "link-state down";
      setTimeout(connect, Math.min(10000, 500 * Math.pow(2, st.retry++)));
    };
  }

  function bigScreen() {
    document.body.classList.add("bigscreen");
    if (document.documentElement.requestFullscreen) document.documentElement.requestFullscreen().catch(function () {});
    Object.keys(st.charts).forEach(function (id) { st.charts[id].resize(); });
    if (st.snapshot) renderCharts(st.snapshot);
  }

  $("wb-big").addEventListener("click", bigScreen);
  window.addEventListener("resize", function () { Object.keys(st.charts).forEach(function (id) { st.charts[id].resize(); }); });
  setInterval(tick, 1000);
  load();
  connect();
})();
