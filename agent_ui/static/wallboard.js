/* The supervisors' wallboard. It loads /api/stats/wallboard once, then follows the live events on
   /ws: callers waiting and agents are kept from the events themselves (no request), and today's
   figures (KPIs, charts, orders) are reloaded from /api/stats/wallboard/figures a moment after
   calls end, and every 30 s: a copy all screens share, read from the database at most every 5 s.
   Alerts are worked out here from what is on screen, every second. Lost events (a "resync"
   frame: the server's Redis came back; a per-channel "seq" that skips a number; another hub
   "epoch"; a reconnect) reload everything. */
(function () {
  "use strict";
  var V = window.VOCABULARY;
  // Today's figures: 2 s after the first call event since the last reading (however many follow),
  // 5 s later again while the shared copy predates the newest event seen, else every 30 s.
  var FIGURES_AFTER_EVENT_MS = 2000, FIGURES_RENEWED_MS = 5000, FIGURES_IDLE_MS = 30000;
  var FIGURE_EVENTS = { "call.answered": true, "call.abandoned": true, "call.agent_done": true, "call.ended": true, "call.queued": true };
  var st = { figures: null, waiting: {}, agents: {}, drafts: {}, offset: 0, eventAt: 0, loading: false, again: false, figuresTimer: null, figuresAt: 0,
             retry: 0, socket: null, charts: {} };

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
  function serverNow() { return Date.now() + st.offset; }
  function secondsSince(ms) { return ms === null ? null : Math.max(0, Math.round((serverNow() - ms) / 1000)); }
  function isWaiting(state) { return V.waiting_states.indexOf(state) >= 0; }

  function getJSON(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } }).then(function (response) {
      if (response.status === 401) { window.location = "/login?next=/supervisor"; throw new Error("signed out"); }
      if (!response.ok) throw new Error("HTTP " + response.status);
      return response.json();
    });
  }

  // --- everything: on opening, and whenever events may have been lost -------------------------
  function load() {
    if (st.loading) { st.again = true; return; }
    st.loading = true;
    getJSON("/api/stats/wallboard")
      .then(function (s) {
        st.offset = Date.parse(s.at) - Date.now();
        st.waiting = {};
        s.waiting.forEach(function (c) { st.waiting[c.call_id] = Object.assign({}, c, { queuedMs: Date.parse(c.queued_at) }); });
        st.agents = {};
        s.agents.forEach(function (a) {
          st.agents[a.agent] = Object.assign({}, a, { sinceMs: a.seconds_in_state === null ? null : serverNow() - a.seconds_in_state * 1000 });
        });
        st.drafts = {};
        takeFigures(s);
        renderLive();
      })
      .catch(function (err) { text("wb-link", "数据加载失败：" + err.message); })
      .then(function () {
        st.loading = false;
        if (st.again) { st.again = false; load(); }
      });
  }

  // --- today's figures: shared by every screen, reloaded after calls end --------------------------
  function loadFigures() {
    getJSON("/api/stats/wallboard/figures").then(takeFigures).catch(function (err) {
      text("wb-link", "数据加载失败：" + err.message);
      scheduleFigures(FIGURES_RENEWED_MS);
    });
  }
  function scheduleFigures(ms) {  // at the earlier of what is planned and `ms` from now
    var at = Date.now() + ms;
    if (st.figuresTimer !== null && st.figuresAt <= at) return;
    if (st.figuresTimer !== null) clearTimeout(st.figuresTimer);
    st.figuresAt = at;
    st.figuresTimer = setTimeout(function () { st.figuresTimer = null; loadFigures(); }, ms);
  }
  function takeFigures(f) {
    st.figures = f;
    var drafts = {}, readAt = Date.parse(f.at);
    f.drafts.forEach(function (d) { drafts[d.order_id] = Object.assign({}, d, { createdMs: readAt - d.minutes * 60000 }); });
    Object.keys(st.drafts).forEach(function (id) {  // announced after these figures were read: kept until the next
      if (!drafts[id] && st.drafts[id].createdMs > readAt) drafts[id] = st.drafts[id];
    });
    st.drafts = drafts;
    renderFigures();
    renderAlerts();
    scheduleFigures(f.read_at * 1000 < st.eventAt ? FIGURES_RENEWED_MS : FIGURES_IDLE_MS);
  }

  // --- the live events ------------------------------------------------------------------------
  function applyCall(ev) {
    if (isWaiting(ev.state) && ev.queued_at) {
      st.waiting[ev.call_id] = {
        id: ev.id, call_id: ev.call_id, queue: ev.queue, priority: ev.priority, caller_display: ev.caller_display,
        elder_name: (st.waiting[ev.call_id] || {}).elder_name || ev.caller_name || "", ivr_route_label: V.ivr_routes[ev.ivr_route] || "",
        emergency: ev.ivr_route === "emergency" || ev.priority > 0 || ev.queue === "emergency", state: ev.state, agent: ev.agent,
        queuedMs: Date.parse(ev.queued_at)
      };
    } else {
      delete st.waiting[ev.call_id];
    }
  }
  function applyAgent(ev) {
    var key = ev.agent || ev.interface, wrapup = ev.state === "paused" && ev.pause_reason === "wrapup";
    var activity = wrapup ? "wrapup" : ev.state;
    st.agents[key] = {
      agent: key, name: ev.name, activity: activity, activity_label: V.agent_activities[activity] || activity,
      pause_reason_label: activity === "paused" ? (V.pause_reasons[ev.pause_reason] || ev.pause_reason || "") : "",
      sinceMs: ev.since ? Date.parse(ev.since) : null
    };
  }
  function applyEmergency(ev) {
    if (ev.order_id === null || ev.order_id === undefined) return;
    st.drafts[ev.order_id] = { order_id: ev.order_id, number: ev.order_number, elder_name: ev.elder_name || ev.caller || "未知来电",
                               createdMs: Date.parse(ev.at) };
  }

  // --- drawing --------------------------------------------------------------------------------
  function waitingNow() {
    return Object.keys(st.waiting).map(function (id) {
      var c = st.waiting[id];
      return Object.assign({}, c, { wait_seconds: secondsSince(c.queuedMs) });
    }).sort(function (a, b) { return (b.emergency - a.emergency) || (b.wait_seconds - a.wait_seconds); });
  }

  function longestNow(waiting) {
    return waiting.length ? "最长 " + duration(Math.max.apply(null, waiting.map(function (c) { return c.wait_seconds; }))) : "";
  }

  function renderLive() {
    var waiting = waitingNow();
    text("kpi-waiting", waiting.length);
    text("kpi-longest-now", longestNow(waiting));
    renderWaiting(waiting);
    renderAgents();
    renderAlerts();
  }

  function renderFigures() {
    var f = st.figures, t = f.today;
    text("wb-clock", f.day + " " + f.at.slice(11, 19) + " 更新");
    text("kpi-threshold", f.settings.threshold_seconds);
    ["offered", "answered", "longest_wait_seconds"].forEach(function (key) { text("kpi-" + key, num(t[key])); });
    ["asa_seconds", "aht_seconds"].forEach(function (key) { text("kpi-" + key, mean(t[key])); });
    ["answer_rate", "service_level", "timely_answer_rate", "abandon_rate"].forEach(function (key) { text("kpi-" + key, pct(t[key])); });
    text("kpi-last-hour", "近一小时 " + pct(f.last_hour.service_level));
    text("kpi-abandons", "放弃 " + t.abandoned + "，短时放弃 " + t.short_abandons);
    text("kpi-orders_open", f.orders.open);
    text("kpi-orders_escalated", f.orders.escalated);
    text("kpi-orders-today", "今日新建 " + f.orders.created_today + "，办结 " + f.orders.completed_today);
    var low = f.last_hour.service_level !== null && f.last_hour.service_level < f.settings.service_level_target;
    document.querySelector('[data-kpi="service_level"]').classList.toggle("bad", low);
    document.querySelector('[data-kpi="orders_escalated"]').classList.toggle("bad", f.orders.escalated > 0);
    if (f.care) {  // proactive care: today's care calls done of those due, escalated misses still to visit (red)
      text("kpi-care_calls_done", f.care.calls_done);
      text("kpi-care-calls", "应拨 " + f.care.calls_due + "，完成 " + pct(f.care.calls_due ? f.care.calls_done / f.care.calls_due : null));
      text("kpi-care_escalations_open", f.care.escalations_open);
      document.querySelector('[data-kpi="care_escalations"]').classList.toggle("bad", f.care.escalations_open > 0);
    }
    renderAgents();
    renderOrders(f.orders);
    renderCharts(f);
  }

  // What a supervisor must act on now, the most urgent first.
  function alerts() {
    if (!st.figures) return [];
    var settings = st.figures.settings, waiting = waitingNow(), found = [];
    waiting.forEach(function (c) {
      if (c.emergency) found.push({ kind: "emergency_waiting", message: "紧急呼叫等待中：" + (c.elder_name || c.caller_display || "未知来电") + "，已等待 " + c.wait_seconds + " 秒" });
    });
    Object.keys(st.drafts).forEach(function (id) {
      var d = st.drafts[id], minutes = Math.floor(secondsSince(d.createdMs) / 60);
      found.push({ kind: "emergency_draft", message: "语音导航紧急求助待确认：" + d.elder_name + "（工单 " + d.number + "，" + minutes + " 分钟前）" });
    });
    waiting.forEach(function (c) {
      if (c.wait_seconds > settings.long_wait_alert_seconds) {
        found.push({ kind: "long_wait", message: "来电 " + (c.caller_display || "未知号码") + " 已等待 " + c.wait_seconds + " 秒（超过 " + settings.long_wait_alert_seconds + " 秒）" });
      }
    });
    var level = st.figures.last_hour.service_level;
    if (level !== null && level < settings.service_level_target) {
      found.push({ kind: "service_level", message: "近一小时服务水平 " + (level * 100).toFixed(1) + "%，低于目标 " + Math.round(settings.service_level_target * 100) + "%" });
    }
    return found;
  }

  function renderAlerts() {
    var box = $("wb-alerts"), found = alerts();
    box.textContent = "";
    found.forEach(function (alert) {
      var p = document.createElement("p");
      p.className = "wb-alert alert-" + alert.kind;
      p.textContent = alert.message;
      box.appendChild(p);
    });
    box.hidden = !found.length;
  }

  function renderWaiting(waiting) {
    var body = $("wb-waiting").tBodies[0], late = st.figures ? st.figures.settings.long_wait_alert_seconds : Infinity;
    body.textContent = "";
    if (!waiting.length) { var row = body.insertRow(); cell(row, "当前无人排队", "muted").colSpan = 5; return; }
    waiting.forEach(function (c) {
      var row = body.insertRow();
      row.dataset.callId = c.call_id;
      if (c.emergency) row.className = "emergency";
      else if (c.wait_seconds > late) row.className = "late";
      cell(row, (c.emergency ? "【紧急】" : "") + (c.caller_display || "未知号码"), "mono");
      cell(row, c.elder_name || "");
      cell(row, c.queue || "");
      cell(row, c.ivr_route_label || "");
      cell(row, duration(c.wait_seconds), "tick");
    });
  }

  function renderAgents() {
    var body = $("wb-agents").tBodies[0], counts = {}, today = {};
    ((st.figures && st.figures.by_agent) || []).forEach(function (a) { today[a.agent] = a; });
    body.textContent = "";
    Object.keys(st.agents).sort().forEach(function (key) {
      var a = st.agents[key], since = secondsSince(a.sinceMs);
      counts[a.activity_label] = (counts[a.activity_label] || 0) + 1;
      var row = body.insertRow(), mine = today[a.agent] || {};
      row.dataset.agent = a.agent;
      cell(row, a.agent + (a.name ? " " + a.name : ""));
      var badge = document.createElement("span");
      badge.className = "state-badge state-" + a.activity;
      badge.textContent = a.activity_label + (a.pause_reason_label ? "（" + a.pause_reason_label + "）" : "");
      cell(row, "").appendChild(badge);
      cell(row, duration(since), "tick");
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

  function tick() {  // waits and times in state go on between events; alerts follow them
    if (!st.figures) return;
    var waiting = waitingNow(), cells = {};
    waiting.forEach(function (c) { cells[c.call_id] = duration(c.wait_seconds); });
    document.querySelectorAll("#wb-waiting tr[data-call-id]").forEach(function (row) { row.cells[4].textContent = cells[row.dataset.callId] || ""; });
    document.querySelectorAll("#wb-agents tr[data-agent]").forEach(function (row) {
      var a = st.agents[row.dataset.agent];
      if (a) row.cells[2].textContent = duration(secondsSince(a.sinceMs));
    });
    text("kpi-longest-now", longestNow(waiting));
    renderAlerts();
  }

  var sequence = window.LiveSequence();

  function connect() {
    var socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    st.socket = socket;
    sequence.reset();
    socket.onopen = function () { st.retry = 0; text("wb-link", "实时连接正常"); $("wb-link").className = "link-state"; load(); };
    socket.onmessage = function (message) {
      var event = JSON.parse(message.data);
      if (!sequence.check(event)) { load(); return; }  // events were lost: reload everything now
      if (!event.type) return;
      if (event.type.indexOf("call.") === 0) {
        applyCall(event);
        renderLive();
        if (FIGURE_EVENTS[event.type]) {
          st.eventAt = Math.max(st.eventAt, Date.parse(event.at) || 0);
          scheduleFigures(FIGURES_AFTER_EVENT_MS);
        }
      } else if (event.type === "agent.state") {
        applyAgent(event);
        renderAgents();
      } else if (event.type === "ivr.emergency") {  // the IVR's emergency alert: shown at once
        applyEmergency(event);
        renderAlerts();
        st.eventAt = Math.max(st.eventAt, Date.parse(event.at) || 0);
        scheduleFigures(FIGURES_AFTER_EVENT_MS);  // its draft order among the open ones
      }
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
    if (st.figures) renderCharts(st.figures);
  }

  $("wb-big").addEventListener("click", bigScreen);
  window.addEventListener("resize", function () { Object.keys(st.charts).forEach(function (id) { st.charts[id].resize(); }); });
  setInterval(tick, 1000);
  load();
  connect();
})();
