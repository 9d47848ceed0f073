// The agent console: state bar, screen pop, call handling, history, web softphone.
//
// Truth comes from the server: on every (re)connect the console loads /api/realtime/snapshot and
// then follows /ws; events that arrive while the snapshot loads are applied after it, in order.
// A call shown as live that the snapshot no longer has is re-read from /api/calls/{id}, so a
// dropped socket never leaves a ghost call on screen. The same reload runs while the socket stays
// open when events were lost: a "resync" frame (the server's Redis came back), a frame whose
// per-channel "seq" skips a number, or another hub "epoch". Buttons only ask; the state shown
// changes when Asterisk reports it (agent.state / call.* events).
(function () {
  "use strict";
  var root = document.getElementById("console");
  if (!root) return;
  document.body.classList.add("console-page");

  var me = { extension: root.getAttribute("data-extension") || null, wrapup: Number(root.getAttribute("data-wrapup")) || 0,
             today: root.getAttribute("data-today") };
  // Labels and state sets from the server's vocabularies (agent_ui/vocabulary.py), worded for the
  // agent where the console says it from their side.
  var V = window.VOCABULARY;
  var STATE_LABELS = Object.assign({ unknown: "未知" }, V.agent_activities);
  var PAUSE_LABELS = V.pause_reasons;
  var CALL_LABELS = Object.assign({}, V.call_states, { offered: "来电振铃", wrapup: "通话已结束", ended: "通话已结束", transferred: "已转接" });
  var LIVE = {};
  V.with_agent.forEach(function (state) { LIVE[state] = true; });

  var st = { agent: null, current: null, pop: null, popElder: null, socket: null, retry: 0, loading: false,
             again: false, synced: false, buffered: [], historyTimer: null };

  function $(id) { return document.getElementById(id); }
  function text(id, value) { $(id).textContent = value == null ? "" : String(value); }
  function show(id, visible) { $(id).hidden = !visible; }
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      if (k === "text") node.textContent = attrs[k]; else if (k === "className") node.className = attrs[k];
      else if (k.slice(0, 2) === "on") node.addEventListener(k.slice(2), attrs[k]); else node.setAttribute(k, attrs[k]);
    });
    (children || []).forEach(function (c) { if (c) node.appendChild(typeof c === "string" ? document.createTextNode(c) : c); });
    return node;
  }
  function cookie(name) {
    var m = document.cookie.match(new RegExp("(?:^|; )" + name + "=([^;]*)"));
    return m ? decodeURIComponent(m[1]) : "";
  }
  function hhmm(iso) { return iso ? iso.slice(11, 16) : ""; }

  function say(message, ok) {
    var box = $("console-message");
    box.textContent = message || "";
    box.className = "console-message " + (ok ? "ok" : "error");
  }

  // --- HTTP ---------------------------------------------------------------------------------
  function api(method, url, body) {
    var headers = { "X-CSRF-Token": cookie("cc_csrf") };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    return fetch(url, { method: method, headers: headers, credentials: "same-origin",
                        body: body === undefined ? undefined : JSON.stringify(body) })
      .then(function (response) {
        if (response.status === 401) { window.location = "/login?next=/console"; throw new Error("未登录或登录已过期"); }
        return response.json().catch(function () { return {}; }).then(function (data) {
          if (!response.ok) {
            var detail = data.detail;
            if (Array.isArray(detail)) detail = detail.map(function (d) { return (d.loc || []).slice(-1)[0] + "：" + d.msg; }).join("；");
            throw new Error(data.message && !Array.isArray(data.detail) ? data.message : (detail || ("请求失败（" + response.status + "）")));
          }
          return data;
        });
      });
  }
  function act(method, url, body) {
    return api(method, url, body).then(function (data) { if (data && data.message) say(data.message, true); return data; },
                                       function (err) { say(err.message, false); throw err; });
  }

  // --- agent state ----------------------------------------------------------------------------
  function renderAgent() {
    var a = st.agent, badge = $("agent-state"), state = "unknown", label = "未登录队列";
    if (!me.extension) label = "未绑定分机";
    else if (a) {
      state = a.state;
      label = STATE_LABELS[a.state] || a.state;
      if (a.state === "paused" && a.pause_reason === "wrapup") { state = "wrapup"; label = STATE_LABELS.wrapup; }
      else if (a.state === "paused") label = "暂停 · " + (PAUSE_LABELS[a.pause_reason] || a.pause_reason || "");
      if (!a.queues || !a.queues.length) { state = "offline"; label = "已签出"; }
    }
    badge.textContent = label;
    badge.className = "state-badge state-" + state;
    tickWrapup();
  }
  function tickWrapup() {
    var a = st.agent, out = "";
    if (a && a.state === "paused" && a.pause_reason === "wrapup" && a.since && me.wrapup) {
      var left = Math.max(0, Math.ceil(me.wrapup - (Date.now() - Date.parse(a.since)) / 1000));
      out = "剩余 " + left + " 秒（点“就绪”提前结束）";
    }
    text("wrapup-left", out);
  }
  setInterval(tickWrapup, 1000);

  function setState(body) { return act("POST", "/api/agent/state", body).catch(function () {}); }
  $("btn-ready").addEventListener("click", function () { setState({ state: "ready" }); });
  $("btn-pause").addEventListener("click", function () { setState({ state: "paused", reason: $("pause-reason").value }); });
  $("btn-offline").addEventListener("click", function () { setState({ state: "offline" }); });

  // --- the current call -------------------------------------------------------------------------
  function isMine(call) { return me.extension && call.agent === me.extension; }

  function applyCall(ev) {
    // Passed on (转接, or the phone's transfer): the card stays for notes; the caller's next
    // agent's events are theirs, not this console's.
    if (ev.type === "call.transferred" && st.current && st.current.id === ev.id && isMine(ev)) {
      showCall(merge(st.current, merge(ev, { state: "transferred" })));
      return;
    }
    if (ev.type === "call.ring_no_answer" && ev.rang_agent === me.extension) {
      if (st.current && st.current.id === ev.id && st.current.state === "offered") clearCall("来电未接听，已转回队列");
      return;
    }
    if (!isMine(ev) || !ev.id) return;
    if (LIVE[ev.state]) {
      var takeOver = !st.current || st.current.id === ev.id || !LIVE[st.current.state];
      if (takeOver) showCall(merge(st.current && st.current.id === ev.id ? st.current : {}, ev));
    } else if (st.current && st.current.id === ev.id) {
      showCall(merge(st.current, ev));
      loadHistory();
    }
  }
  function merge(into, ev) {
    var out = {};
    Object.keys(into).forEach(function (k) { out[k] = into[k]; });
    Object.keys(ev).forEach(function (k) { if (k !== "type") out[k] = ev[k]; });
    return out;
  }

  function showCall(call) {
    var fresh = !st.current || st.current.id !== call.id;
    var moved = fresh || st.current.state !== call.state;
    st.current = call;
    show("no-call", false);
    show("call", true);
    text("call-caller", call.caller_display || call.caller || "未显示号码");
    var ended = !LIVE[call.state];
    var callState = $("call-state");
    callState.textContent = CALL_LABELS[call.state] || call.state;
    callState.className = "state-badge state-" + (ended ? "ended" : call.state);
    show("call-priority", call.priority > 0);
    var meta = [];
    if (call.queue) meta.push("队列 " + call.queue);
    if (call.wait_seconds != null) meta.push("等待 " + call.wait_seconds + " 秒");
    if (call.ivr_route_label) meta.push("按键：" + call.ivr_route_label);
    if (call.caller_name) meta.push(call.caller_name);
    text("call-meta", meta.join(" · "));
    $("btn-hangup").disabled = call.state !== "talking";
    $("btn-transfer").disabled = call.state !== "talking";
    show("btn-done", ended);
    if (ended) say("通话已结束，请完成小结后点“完成”。", true);
    else if (fresh) say("", true);
    if (fresh) { $("disposition").value = ""; $("notes").value = ""; $("order-form").hidden = true; }
    if (moved) loadHistory();
    if (fresh) hidePop();  // never the previous caller's card under this caller's number
    if (fresh || st.popElder !== (call.elder_id || null) || (moved && !st.pop)) loadPop(call.id);
    if (ended && st.phone) st.phone.callEnded();
  }
  function hidePop() {
    st.pop = null; st.popElder = null;
    ["elder-card", "candidates", "unknown", "btn-workorder"].forEach(function (id) { show(id, false); });
    $("recent-calls").replaceChildren(el("li", { className: "muted", text: "—" }));
    $("open-orders").replaceChildren(el("li", { className: "muted", text: "—" }));
  }

  function clearCall(message) {
    st.current = null;
    hidePop();
    show("call", false);
    show("no-call", true);
    if (message) say(message, true);
  }
  $("btn-done").addEventListener("click", function () { clearCall(""); say("", true); });

  // A pop that fails is tried again twice, a second apart, and at the call's next state.
  function loadPop(callId, attempt) {
    return api("GET", "/api/calls/" + callId + "/pop").then(function (pop) {
      if (!st.current || st.current.id !== callId) return;
      st.pop = pop;
      st.popElder = pop.elder ? pop.elder.id : null;
      renderPop(pop);
    }, function (err) {
      if (!st.current || st.current.id !== callId) return;
      hidePop();
      say("无法加载来电信息：" + err.message, false);
      if ((attempt || 0) < 2) setTimeout(function () { if (st.current && st.current.id === callId && !st.pop) loadPop(callId, (attempt || 0) + 1); }, 1000);
    });
  }

  function renderPop(pop) {
    var call = pop.call;
    if (!$("notes").value && call.notes) $("notes").value = call.notes;
    if (!$("disposition").value && call.disposition) $("disposition").value = call.disposition;
    show("elder-card", !!pop.elder);
    show("candidates", !pop.elder && !!(pop.candidates && pop.candidates.length));
    show("unknown", !pop.elder && !(pop.candidates && pop.candidates.length));
    show("btn-workorder", !!pop.elder);
    if (!pop.elder) show("order-form", false);
    if (pop.elder) renderElder(pop.elder);
    if (pop.candidates) renderCandidates(pop.candidates);
    renderList("recent-calls", pop.recent_calls, "暂无其他通话", function (c) {
      return [hhmmDate(c.started_at) + " " + (c.disposition_label || c.outcome_label || c.state_label), notesOf(c)];
    });
    loadOrders();
  }

  // --- work orders of the elder on the line ----------------------------------------------------------
  function loadOrders() {
    var elder = st.pop && st.pop.elder;
    if (!elder) { renderList("open-orders", [], "—", null); return Promise.resolve(); }
    return api("GET", "/api/workorders?open=true&elder_id=" + elder.id).then(function (data) {
      renderList("open-orders", data.items, "暂无未办结工单", function (o) {
        return [o.number + " " + o.service_name + " · " + o.status_label, o.description, o.status === "draft" ? draftActions(o) : null];
      });
    }).catch(function (err) { say("无法加载工单：" + err.message, false); });
  }
  // The IVR's emergency draft (待确认): confirm it (routed from now) or cancel it as a false alarm.
  function draftActions(order) {
    var confirm = el("button", { type: "button", className: "small", text: "确认派单", onclick: function () {
      act("POST", "/api/workorders/" + order.id + "/confirm", {}).then(function (o) { say("紧急工单 " + o.number + " 已确认，正在派单", true); loadOrders(); }).catch(function () {});
    } });
    var cancel = el("button", { type: "button", className: "secondary small", text: "误报取消", onclick: function () {
      act("POST", "/api/workorders/" + order.id + "/cancel", { note: "语音导航紧急求助误报" }).then(function () { say("已取消", true); loadOrders(); }).catch(function () {});
    } });
    return el("span", { className: "draft-actions" }, [" ", confirm, " ", cancel]);
  }
  var serviceTypes = null;
  $("btn-workorder").addEventListener("click", function () {
    var form = $("order-form");
    form.hidden = !form.hidden;
    if (serviceTypes) return;
    api("GET", "/api/service-types").then(function (types) {
      serviceTypes = types;
      form.service_type.replaceChildren.apply(form.service_type, types.map(function (t) { return el("option", { value: t.code, text: t.name }); }));
    }).catch(function (err) { say(err.message, false); });
  });
  $("order-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var form = event.target;
    if (!st.current) return;
    act("POST", "/api/workorders", { call_id: st.current.id, service_type: form.service_type.value, urgency: form.urgency.value,
                                     description: form.description.value.trim() })
      .then(function (order) { say("已建工单 " + order.number + "（" + order.service_name + "）", true); form.reset(); form.hidden = true; loadOrders(); })
      .catch(function () {});
  });
  function hhmmDate(iso) { return iso ? iso.slice(5, 10) + " " + iso.slice(11, 16) : ""; }
  function notesOf(c) { return c.notes_hidden ? "记录仅处理坐席可见" : (c.notes || ""); }
  function renderList(id, items, emptyText, line) {
    var list = $(id);
    if (!items || !items.length) { list.replaceChildren(el("li", { className: "muted", text: emptyText })); return; }
    list.replaceChildren.apply(list, items.map(function (item) {
      var parts = line(item);
      return el("li", {}, [parts[0], parts[2] || null, parts[1] ? el("span", { className: "notes", text: parts[1] }) : null]);
    }));
  }

  function renderElder(e) {
    text("elder-name", e.name);
    text("elder-basic", [e.gender_label, e.age != null ? e.age + " 岁" : "", e.id_number ? "身份证 " + e.id_number : ""].filter(Boolean).join(" · "));
    $("elder-risks").replaceChildren.apply($("elder-risks"), (e.risk_flag_labels || []).map(function (f) { return el("span", { className: "flag", text: f }); }));
    $("elder-link").href = "/elders/" + e.id;
    var place = [e.district, e.street, e.community].filter(Boolean).join(" ");
    var card = e.access && e.access.level === "card";  // no open call or task with the elder: the reduced card
    var facts = card ? [["社区", e.community || "—"], ["电话", (e.phones || []).map(function (p) { return p.masked; }).join("，")],
                        ["完整档案", e.access.message]] : [
      ["住址", (place ? place + " " : "") + (e.address || "")], ["失能等级", e.ability_level_label],
      ["居住状况", e.living_situation_label], ["经济状况", e.economic_status_label],
      ["慢性病", e.chronic_conditions || "无", !!e.chronic_conditions], ["过敏史", e.allergies || "无", !!e.allergies],
      ["养老管家", ((e.steward_name || "") + " " + (e.steward_phone_display || "")).trim() || "—"], ["补贴余额", "¥" + e.subsidy_balance],
    ];
    var dl = $("elder-facts");
    dl.replaceChildren();
    facts.forEach(function (f) {
      dl.appendChild(el("dt", { text: f[0] }));
      dl.appendChild(el("dd", { text: f[1] || "—", className: f[2] ? "alert" : "" }));
    });
    var contacts = (e.emergency_contacts || []).map(function (c) {
      return el("span", { className: "contact" }, [c.name + "（" + c.relation_label + "）" + c.display,
        el("button", { type: "button", className: "secondary", text: "呼叫", "data-number": c.phone,
                       onclick: function () { act("POST", "/api/agent/callback", { elder_id: e.id, number: c.phone }).catch(function () {}); } })]);
    });
    $("elder-contacts").replaceChildren.apply($("elder-contacts"), contacts.length ? contacts : [el("span", { className: "muted", text: "未登记" })]);
  }

  function renderCandidates(rows) {
    $("candidate-list").replaceChildren.apply($("candidate-list"), rows.map(function (r) {
      var who = r.name + "（" + [r.gender_label, r.age != null ? r.age + " 岁" : "", r.relation_label ? "号码属于" + r.relation_label : ""]
        .filter(Boolean).join("，") + "）";
      return el("button", { type: "button", className: "secondary", text: who, onclick: function () { chooseElder({ elder_id: r.id }); } });
    }));
  }

  function chooseElder(body) {
    var call = st.current;
    return act("POST", "/api/calls/" + call.id + "/elder", body).then(function (updated) {
      st.current = merge(st.current, { elder_id: updated.elder_id });
      say("已关联老人档案", true);
      return loadPop(call.id);
    });
  }

  // --- unknown caller: new profile, or link to an existing elder ------------------------------
  $("new-elder").addEventListener("submit", function (event) {
    event.preventDefault();
    var form = event.target, call = st.current;
    var body = { name: form.name.value.trim(), address: form.address.value.trim() || null,
                 phones: call.caller ? [{ number: call.caller, relation: "self", is_primary: true }] : [] };
    if (form.gender.value) body.gender = form.gender.value;
    act("POST", "/api/elders", body).then(function (elder) { form.reset(); return chooseElder({ elder_id: elder.id }); }).catch(function () {});
  });
  var searchTimer = null;
  $("link-elder").q.addEventListener("input", function (event) {
    clearTimeout(searchTimer);
    var q = event.target.value.trim();
    searchTimer = setTimeout(function () {
      if (!q) return;
      api("GET", "/api/elders?page_size=10&q=" + encodeURIComponent(q)).then(function (data) {
        var select = $("link-elder").elder_id;
        var options = data.items.map(function (e) {
          return el("option", { value: e.id, text: e.name + "（" + (e.age != null ? e.age + " 岁，" : "") + (e.community || "") + "）" });
        });
        select.replaceChildren.apply(select, options.length ? options : [el("option", { value: "", text: "未找到" })]);
      }).catch(function (err) { say(err.message, false); });
    }, 250);
  });
  $("link-elder").addEventListener("submit", function (event) {
    event.preventDefault();
    var form = event.target;
    if (!form.elder_id.value) { say("请先搜索并选择老人", false); return; }
    chooseElder({ elder_id: Number(form.elder_id.value), phone_relation: form.relation.value, owner_name: form.owner_name.value.trim() })
      .catch(function () {});
  });

  // --- call handling ---------------------------------------------------------------------------
  // 挂断: the web softphone hangs up as a phone does (a BYE: Asterisk's queue records the agent
  // ending the call); a desk phone's call is ended by Asterisk (AMI Hangup of the agent's leg).
  $("btn-hangup").addEventListener("click", function () {
    if (!st.current) return;
    if (st.phone && st.phone.hangUp()) { say("已挂断", true); return; }
    act("POST", "/api/calls/" + st.current.id + "/hangup").catch(function () {});
  });
  $("btn-transfer").addEventListener("click", function () {
    var target = $("transfer-target").value.trim();
    if (!target) { say("请输入转接目标（坐席分机号或队列名）", false); return; }
    if (st.current) act("POST", "/api/calls/" + st.current.id + "/transfer", { target: target }).catch(function () {});
  });
  $("btn-callback").addEventListener("click", function () {
    if (st.current) act("POST", "/api/agent/callback", { call_id: st.current.id }).catch(function () {});
  });
  $("summary").addEventListener("submit", function (event) {
    event.preventDefault();
    if (!st.current) return;
    var body = { notes: $("notes").value };
    if ($("disposition").value) body.disposition = $("disposition").value;
    act("PUT", "/api/calls/" + st.current.id + "/summary", body).then(function () { say("小结已保存", true); loadHistory(); }).catch(function () {});
  });

  // --- history ------------------------------------------------------------------------------------
  function loadHistory() {
    var q = $("history-q").value.trim();
    var url = "/api/calls?mine=true&page_size=100&from=" + me.today + "&to=" + me.today + (q ? "&q=" + encodeURIComponent(q) : "");
    return api("GET", url).then(function (data) {
      text("history-total", "共 " + data.total + " 通");
      renderList("history", data.items, q ? "没有符合条件的通话" : "今天还没有通话", function (c) {
        return [hhmm(c.started_at) + " " + (c.caller_display || c.caller || "未显示号码") + " " + (c.outcome_label || c.state_label) +
                (c.disposition_label ? " · " + c.disposition_label : ""), c.notes || ""];
      });
    }).catch(function (err) { say("无法加载通话记录：" + err.message, false); });
  }
  $("history-q").addEventListener("input", function () { clearTimeout(st.historyTimer); st.historyTimer = setTimeout(loadHistory, 300); });

  // --- callback requests (回电): callers who asked out of hours or when nobody answered --------------
  // Callers the system cut off (the PBX restarted, the bridge was down) who have not got through
  // since: shown only when there are any; a call from or to the number takes it off.
  function loadRecall() {
    return api("GET", "/api/calls/recall").then(function (data) {
      show("recall-block", data.items.length > 0);
      text("recall-total", data.items.length ? data.items.length + " 个" : "");
      var list = $("recall");
      list.replaceChildren.apply(list, data.items.map(function (c) {
        return el("li", { "data-call": c.id }, [(c.caller_name || "来电") + " · " + c.caller_display + " ",
          el("button", { type: "button", className: "secondary small", text: "回拨", onclick: function () {
            act("POST", "/api/agent/callback", { call_id: c.id }).catch(function () {}); } }),
          el("span", { className: "notes", text: c.outcome_label + (c.outcome === "answered" ? "（通话中被系统中断）" : "") + " " + hhmmDate(c.ended_at) })]);
      }));
    }).catch(function (err) { say("无法加载系统中断待回拨：" + err.message, false); });
  }
  setInterval(loadRecall, 30000);

  function loadCallbackRequests() {
    return api("GET", "/api/callback-requests").then(function (data) {
      text("callback-requests-total", data.waiting ? data.items.length + " / " + data.waiting + " 个" : "");
      var list = $("callback-requests");
      if (!data.items.length) { list.replaceChildren(el("li", { className: "muted", text: "暂无到期的回电请求" })); return; }
      list.replaceChildren.apply(list, data.items.map(function (r) {
        var finish = function (status) {
          act("POST", "/api/callback-requests/" + r.id + "/finish", { status: status, note: "" })
            .then(function (row) { say("回电请求：" + row.status_label, true); loadCallbackRequests(); }).catch(function () {});
        };
        return el("li", { "data-request": r.id }, [(r.elder_name || "未建档") + " · " + r.caller_number + " ",
          el("button", { type: "button", className: "secondary small", text: "回拨", onclick: function () {
            act("POST", "/api/callback-requests/" + r.id + "/dial", {}).catch(function () {}); } }), " ",
          el("button", { type: "button", className: "small", text: "已回电", onclick: function () { finish("done"); } }), " ",
          el("button", { type: "button", className: "secondary small", text: "未接通", onclick: function () { finish("unreached"); } }),
          el("span", { className: "notes", text: r.reason_label + " " + hhmmDate(r.requested_at) + (r.requests > 1 ? "，来电 " + r.requests + " 次" : "") })]);
      }));
    }).catch(function (err) { say("无法加载回电请求：" + err.message, false); });
  }
  setInterval(loadCallbackRequests, 60000);

  // --- callbacks (回访): completed orders; call the elder, record the satisfaction ----------------
  function loadCallbacks() {
    return api("GET", "/api/callbacks").then(function (data) {
      text("callbacks-total", data.items.length ? data.items.length + " 单" : "");
      var list = $("callbacks");
      if (!data.items.length) { list.replaceChildren(el("li", { className: "muted", text: "暂无待回访工单" })); return; }
      list.replaceChildren.apply(list, data.items.map(function (o) {
        var dial = o.phones.length ? el("button", { type: "button", className: "secondary small", text: "回拨",
          onclick: function () { act("POST", "/api/agent/callback", { elder_id: o.elder_id, number: o.phones[0] }).catch(function () {}); } }) : null;
        var record = el("button", { type: "button", className: "small", text: "记录",
          onclick: function () { openCallback(o); } });
        return el("li", { "data-order": o.number }, [o.elder_name + " · " + o.service_name + " · " + o.provider_name + " ", dial, " ", record,
          el("span", { className: "notes", text: o.number + " 完成于 " + hhmmDate(o.completed_at) + (o.service_notes ? "：" + o.service_notes : "") })]);
      }));
    }).catch(function (err) { say("无法加载回访列表：" + err.message, false); });
  }
  function openCallback(order) {
    var form = $("callback-form");
    form.reset();
    form.dataset.order = order.id;
    text("callback-order", order.number + " " + order.elder_name);
    form.hidden = false;
  }
  $("callback-cancel").addEventListener("click", function () { $("callback-form").hidden = true; });
  $("callback-form").addEventListener("submit", function (event) {
    event.preventDefault();
    var form = event.target;
    var body = { satisfaction: Number(form.satisfaction.value), comment: form.comment.value, complaint: form.complaint.checked };
    act("POST", "/api/workorders/" + form.dataset.order + "/callback", body).then(function (order) {
      say(order.status === "escalated" ? "已记录回访，不满意/投诉已转班长督办" : "已记录回访，工单 " + order.number + " 办结", true);
      form.hidden = true;
      loadCallbacks();
    }).catch(function () {});
  });
  setInterval(loadCallbacks, 60000);

  // --- snapshot, then the live stream --------------------------------------------------------------
  function handle(ev) {
    if (ev.type === "agent.state" || (ev.type && ev.type.indexOf("call.") === 0)) {
      document.dispatchEvent(new CustomEvent("console:event", { detail: ev }));  // care.js follows my calls and state
    }
    if (ev.type === "agent.state") { if (ev.agent === me.extension) { st.agent = ev; renderAgent(); } }
    else if (ev.type === "queue.waiting") text("queue-waiting", "排队：" + ev.waiting + " 人");
    else if (ev.type && ev.type.indexOf("call.") === 0) applyCall(ev);
  }

  function loadSnapshot() {
    return api("GET", "/api/realtime/snapshot").then(function (snap) {
      st.agent = (snap.agents || []).filter(function (a) { return a.agent === me.extension; })[0] || null;
      renderAgent();
      var waiting = 0;
      Object.keys(snap.waiting || {}).forEach(function (q) { waiting += snap.waiting[q]; });
      text("queue-waiting", "排队：" + waiting + " 人");
      var live = (snap.calls || []).filter(function (c) { return isMine(c) && LIVE[c.state]; });
      var shown = st.current;
      var stillLive = shown && live.some(function (c) { return c.id === shown.id; });
      var work = Promise.resolve();
      if (shown && LIVE[shown.state] && !stillLive) {  // missed its end while disconnected: re-read it
        work = api("GET", "/api/calls/" + shown.id).then(function (call) {
          if (st.current && st.current.id === call.id) showCall(merge(st.current, call));
        }, function () { clearCall(""); });
      }
      return work.then(function () {
        if (live.length && (!st.current || !LIVE[st.current.state])) showCall(live[live.length - 1]);
        else live.forEach(function (c) { if (st.current && c.id === st.current.id) showCall(merge(st.current, c)); });
        loadHistory();
        loadRecall();  // after a reconnect: calls cut off meanwhile
      });
    });
  }

  function linkState(up, message) {
    var node = $("link-state");
    node.textContent = message;
    node.className = "link-state" + (up ? "" : " down");
  }

  var sequence = window.LiveSequence();
  function inSequence(ev) { return sequence.check(ev); }

  // Load the snapshot (and the lists beside it) while buffering the stream; asked again meanwhile,
  // it loads once more when this one is done.
  function resnapshot(socket) {
    if (st.loading) { st.again = true; return; }
    st.loading = true;
    st.again = false;
    st.buffered = [];
    loadSnapshot().then(function () {
      if (st.socket !== socket) return;
      st.loading = false;
      if (st.again) { resnapshot(socket); return; }
      st.retry = 0;
      st.buffered.splice(0).forEach(handle);
      linkState(true, "实时连接正常");
      if (st.synced) { loadCallbackRequests(); loadCallbacks(); }  // the page loaded them at start
      st.synced = true;
    }, function (err) {
      if (st.socket !== socket) return;
      st.loading = false;
      say("无法加载当前状态：" + err.message, false);
      socket.close();
    });
  }

  function connect() {
    var socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    st.socket = socket;
    st.loading = false;
    st.buffered = [];
    sequence.reset();
    socket.onopen = function () { resnapshot(socket); };
    socket.onmessage = function (message) {
      var ev;
      try { ev = JSON.parse(message.data); } catch (e) { return; }
      if (!inSequence(ev)) {
        linkState(true, "实时数据有中断，正在重新同步…");
        resnapshot(socket);
        if (ev.type === "resync") return;
      }
      if (st.loading) st.buffered.push(ev); else handle(ev);
    };
    socket.onclose = function (event) {
      if (st.socket !== socket) return;
      if (event.code === 4401) { window.location = "/login?next=/console"; return; }
      var delay = Math.min(10000, 500 * Math.pow(2, st.retry++));
      linkState(false, "实时连接中断，" + Math.round(delay / 1000) + " 秒后重连…");
      setTimeout(connect, delay);
    };
  }

  // --- phone: desk phone, or the web softphone (JsSIP) ----------------------------------------------
  var SIP_CAUSES = { "Connection Error": "无法连接 SIP 服务器", "Request Timeout": "请求超时", "Authentication Error": "认证失败（分机号或密码错误）",
                     "Rejected": "被服务器拒绝", "Not Found": "分机不存在", "Unavailable": "服务不可用", "Busy": "忙", "Canceled": "已取消",
                     "SIP Failure Code": "SIP 错误", "Internal Error": "内部错误", "Bad Media Description": "媒体协商失败",
                     "User Denied Media Access": "未获得麦克风权限" };
  function cause(c) { return SIP_CAUSES[c] || c || "未知原因"; }

  var KEEPALIVE_MS = 15000, KEEPALIVE_TIMEOUT_MS = 5000;
  function startSoftphone(cfg) {
    var script = el("script", { src: "/static/vendor/jssip/jssip.min.js" });
    script.onload = function () {
      var ua, session = null, audio = el("audio", { autoplay: "" });
      document.body.appendChild(audio);
      try {
        ua = new JsSIP.UA({ sockets: [new JsSIP.WebSocketInterface(cfg.ws_url)], uri: cfg.uri, password: cfg.password,
                            display_name: cfg.display_name, register: true, connection_recovery_min_interval: 2, connection_recovery_max_interval: 8 });
      } catch (err) { text("phone-mode", "软电话配置错误：" + err.message); $("phone-mode").className = "error"; return; }
      text("phone-mode", "软电话：正在注册分机 " + cfg.extension + "…");
      var registered = "";
      function phoneText(message, cls) { text("phone-mode", message); $("phone-mode").className = cls || "ok"; }
      ua.on("registered", function () { registered = "软电话已注册（分机 " + cfg.extension + "）"; phoneText(registered); });
      ua.on("registrationFailed", function (e) { text("phone-mode", "软电话注册失败：" + cause(e.cause)); $("phone-mode").className = "error"; });
      ua.on("disconnected", function () {
        registered = "";
        text("phone-mode", "软电话注册失败：" + cause("Connection Error") + "（" + cfg.ws_url + "），正在重连…");
        $("phone-mode").className = "error";
        // A call cannot outlive its WebSocket here: Asterisk ends it (its BYE cannot reach us) and
        // a session kept "in call" would refuse every later call with 486.
        dropSession();
      });
      function dropSession() {
        if (!session) return;
        var old = session;
        session = null;
        show("softphone-controls", false);
        try { if (!old.isEnded()) old.terminate(); } catch (err) { /* no transport: nothing to tell */ }
      }
      ua.on("newRTCSession", function (e) {
        if (e.originator !== "remote") return;
        if (session && session.isEnded()) session = null;
        if (session) { e.session.terminate({ status_code: 486 }); return; }  // one call at a time
        session = e.session;
        show("softphone-controls", true);
        $("sp-answer").disabled = false;
        text("sp-mute", "静音");
        text("sp-hold", "保持");
        var from = e.request.from;
        phoneText("软电话来电：" + ((from && (from.display_name || from.uri.user)) || "未知号码"));
        session.on("peerconnection", function (p) {
          p.peerconnection.addEventListener("track", function (t) { audio.srcObject = t.streams[0]; });
        });
        session.on("accepted", function () { $("sp-answer").disabled = true; phoneText("软电话通话中"); });
        session.on("hold", function () { text("sp-hold", "取消保持"); });
        session.on("unhold", function () { text("sp-hold", "保持"); });
        session.on("muted", function () { text("sp-mute", "取消静音"); });
        session.on("unmuted", function () { text("sp-mute", "静音"); });
        ["ended", "failed"].forEach(function (name) {
          var mine = session;
          session.on(name, function (sipEvent) {
            if (name === "failed") say("软电话通话失败：" + cause(sipEvent.cause), false);
            if (session !== mine) return;  // already dropped
            session = null;
            show("softphone-controls", false);
            phoneText(registered || "软电话已挂机");
          });
        });
      });
      // No STUN/TURN: hotline centres run on closed networks; Asterisk is reached on the LAN.
      $("sp-answer").addEventListener("click", function () {
        if (session) session.answer({ mediaConstraints: { audio: true, video: false }, pcConfig: { iceServers: [] } });
      });
      $("sp-mute").addEventListener("click", function () {
        if (!session) return;
        if (session.isMuted().audio) session.unmute({ audio: true }); else session.mute({ audio: true });
      });
      $("sp-hold").addEventListener("click", function () {
        if (!session) return;
        if (session.isOnHold().local) session.unhold(); else session.hold();
      });
      $("sp-hangup").addEventListener("click", function () { if (session) session.terminate(); });
      st.phone = {
        hangUp: function () {
          if (!session || !session.isEstablished()) return false;
          session.terminate();
          return true;
        },
        // The call ended in Asterisk (the live event) while this phone still holds it: drop it.
        callEnded: function () { if (session && session.isEstablished()) dropSession(); },
      };
      // Leaving or reloading the page hangs up (BYE) rather than leaving the caller with silence;
      // Asterisk's rtp_timeout ends the call if the BYE is lost.
      window.addEventListener("pagehide", function () { dropSession(); try { ua.stop(); } catch (err) { /* closing */ } });
      // A half-open WebSocket (a NAT or proxy that dropped it silently) is only found by sending:
      // an OPTIONS every KEEPALIVE_MS; no answer within KEEPALIVE_TIMEOUT_MS → reconnect and
      // register again (JsSIP itself would wait 32 s for a lost request).
      function reconnect() {
        phoneText("软电话连接中断，正在重连…", "error");
        registered = "";
        dropSession();
        try { ua.stop(); } catch (err) { /* already closing */ }
        setTimeout(function () { ua.start(); }, 1000);
      }
      setInterval(function () {
        if (!ua.isConnected() || (session && !session.isEnded())) return;  // media flowing tells Asterisk enough
        var answered = false;
        var late = setTimeout(function () { if (!answered) reconnect(); }, KEEPALIVE_TIMEOUT_MS);
        function done() { answered = true; clearTimeout(late); }
        ua.sendOptions(cfg.uri.replace(/^sip:[^@]*@/, "sip:"), null, { eventHandlers: {
          succeeded: done,
          failed: function (sipEvent) {
            done();
            if (sipEvent.cause === "Request Timeout" || sipEvent.cause === "Connection Error") reconnect();
          },
        } });
      }, KEEPALIVE_MS);
      ua.start();
    };
    script.onerror = function () { text("phone-mode", "软电话组件加载失败"); $("phone-mode").className = "error"; };
    document.body.appendChild(script);
  }

  api("GET", "/api/agent/softphone").then(function (cfg) {
    if (cfg.mode === "webrtc") startSoftphone(cfg);
    else { text("phone-mode", cfg.message); $("phone-mode").className = cfg.mode === "none" ? "error" : "muted"; }
  }).catch(function (err) { text("phone-mode", "无法读取话机设置：" + err.message); });

  renderAgent();
  // What the console's other blocks (care.js) use: one HTTP helper, one way of saying things.
  window.ConsoleKit = { api: api, act: act, el: el, say: say, me: me, agent: function () { return st.agent; },
                        busy: function () { return !!(st.current && LIVE[st.current.state]); } };
  loadCallbacks();
  loadCallbackRequests();
  loadRecall();
  connect();
})();
