// 今日关怀 in the agent console: my care calls for today (highest risk and most overdue first),
// a preview of the elder and the script before dialling (拨打: my phone rings, then the elder),
// the attempts' outcomes as the calls end, and the check after an answered call, from which a
// work order (or an emergency one) is opened. Optional progressive mode: when I go ready with no
// call, the next task is dialled (one dial every 20 s at most; a refused dial turns it off).
(function () {
  "use strict";
  var K = window.ConsoleKit;
  if (!K || !document.getElementById("care-block")) return;
  var api = K.api, act = K.act, el = K.el;
  var state = { tasks: [], open: null, detail: null, lastAuto: 0, timer: null };

  function $(id) { return document.getElementById(id); }
  function text(id, value) { $(id).textContent = value == null ? "" : String(value); }

  function load() {
    return api("GET", "/api/care/tasks/mine").then(function (data) {
      state.tasks = data.tasks;
      text("care-total", data.tasks.length ? data.tasks.length + " 位" : "");
      var list = $("care-tasks");
      if (!data.tasks.length) { list.replaceChildren(el("li", { className: "muted", text: "今日关怀任务已完成" })); }
      else list.replaceChildren.apply(list, data.tasks.map(function (t) {
        var late = t.overdue_days > 0 ? "逾期 " + t.overdue_days + " 天" : "今日到期";
        var tries = t.attempts ? "，已拨 " + t.attempts + " 次" : "";
        return el("li", { "data-task": t.id, className: state.open === t.id ? "selected" : "" }, [
          el("span", { className: "flag risk-" + t.risk_level, text: t.risk_label }), " ",
          el("a", { href: "#", text: t.elder.name + (t.elder.age ? "（" + t.elder.age + "岁）" : ""),
                    onclick: function (e) { e.preventDefault(); openTask(t.id); } }),
          el("span", { className: "notes", text: t.kind_label + " · " + late + tries + (t.note ? " · " + t.note : "") })]);
      }));
      if (state.open) refreshDetail();
    }).catch(function (err) { K.say("无法加载今日关怀：" + err.message, false); });
  }

  function openTask(id) {
    state.open = id;
    $("care-check").hidden = true;
    refreshDetail().then(function () { $("care-preview").hidden = false; load(); });
  }

  function refreshDetail() {
    return api("GET", "/api/care/tasks/" + state.open).then(function (d) {
      state.detail = d;
      var t = d.task, e = t.elder;
      text("care-elder", e.name);
      text("care-risk", "风险" + t.risk_label);
      text("care-facts", [e.gender, e.age ? e.age + "岁" : "", e.living, e.ability].concat(e.risks).filter(Boolean).join(" · "));
      text("care-address", e.address);
      text("care-script", d.script);
      var numbers = $("care-number");
      var choices = t.phone ? [{ number: t.phone, owner_name: "紧急联系人" }] : d.phones;
      numbers.replaceChildren.apply(numbers, choices.map(function (p) {
        return el("option", { value: p.number, text: p.number + (p.owner_name ? " " + p.owner_name : "") });
      }));
      $("care-dial").disabled = !choices.length;
      var attempts = $("care-attempts");
      attempts.replaceChildren.apply(attempts, d.attempts.map(function (a) {
        return el("li", { text: (a.at || "").slice(11, 16) + " " + a.outcome_label + (a.talk_seconds ? "，通话 " + a.talk_seconds + " 秒" : "") });
      }));
      var answered = d.attempts.some(function (a) { return a.outcome === "answered"; });
      if (answered && $("care-check").hidden && t.status === "open") showCheck(d);
      if (t.status !== "open") { $("care-check").hidden = true; $("care-dial").disabled = true; }
    });
  }

  function showCheck(d) {
    var topics = $("care-topics"), findings = $("care-findings");
    topics.replaceChildren.apply(topics, Object.keys(d.topics).map(function (key) {
      var topic = d.topics[key];
      var select = el("select", { name: key, "aria-label": topic.label, required: "required" },
        [el("option", { value: "", text: "请选择" })].concat(Object.keys(topic.choices).map(function (c) {
          return el("option", { value: c, text: topic.choices[c] }); })));
      return el("label", { className: "care-topic" }, [topic.label + " ", select]);
    }));
    findings.replaceChildren.apply(findings, Object.keys(d.findings).map(function (key) {
      return el("label", { className: "inline-label" }, [el("input", { type: "checkbox", name: "finding", value: key }), " " + d.findings[key]]);
    }));
    var services = $("care-check").service_type;
    if (services.options.length <= 1) {
      api("GET", "/api/service-types").then(function (types) {
        types.forEach(function (s) { services.appendChild(el("option", { value: s.code, text: "派单：" + s.name })); });
      }).catch(function () {});
    }
    $("care-check").hidden = false;
  }

  function dial(taskId, number) {
    return act("POST", "/api/care/tasks/" + taskId + "/dial", { number: number });
  }
  $("care-dial").addEventListener("click", function () {
    if (state.open) dial(state.open, $("care-number").value).then(function () { setTimeout(refreshDetail, 1000); }).catch(function () {});
  });
  $("care-close").addEventListener("click", function () { state.open = null; $("care-preview").hidden = true; load(); });

  $("care-check").addEventListener("submit", function (event) {
    event.preventDefault();
    var form = event.target, d = state.detail, answers = {};
    Object.keys(d.topics).forEach(function (key) { answers[key] = form[key].value; });
    var findings = Array.prototype.slice.call(form.querySelectorAll("input[name=finding]:checked")).map(function (i) { return i.value; });
    var order = form.service_type.value ? api("POST", "/api/workorders", {
      elder_id: d.task.elder_id, service_type: form.service_type.value, urgency: form.emergency.checked ? "emergency" : "normal",
      description: "关怀电话发现：" + (form.note.value || findings.map(function (f) { return d.findings[f]; }).join("、")),
      self_paid: form.self_paid.checked }) : Promise.resolve(null);
    order.then(function (made) {
      return act("POST", "/api/care/tasks/" + d.task.id + "/check", { answers: answers, findings: findings, note: form.note.value,
                                                                       work_order_id: made ? made.id : null }).then(function () {
        K.say("已保存关怀记录" + (made ? "，已派单 " + made.number : ""), true);
        form.reset();
        form.hidden = true;
        state.open = null;
        $("care-preview").hidden = true;
        load();
      });
    }).catch(function (err) { K.say(err.message, false); });
  });

  // Progressive mode: going ready with no call dials the next task (at most every 20 s).
  function maybeAutoDial() {
    if (!$("care-progressive").checked || K.busy() || Date.now() - state.lastAuto < 20000) return;
    var agent = K.agent();
    if (!agent || agent.state !== "ready") return;
    var next = state.tasks[0];
    if (!next) return;
    state.lastAuto = Date.now();
    openTask(next.id);
    dial(next.id, next.phone || undefined).catch(function () { $("care-progressive").checked = false; });
  }

  document.addEventListener("console:event", function (event) {
    var ev = event.detail;
    if (ev.type === "call.ended" || ev.type === "call.agent_done") setTimeout(load, 500);
    if (ev.type === "agent.state" && ev.agent === K.me.extension) setTimeout(maybeAutoDial, 300);
  });
  setInterval(load, 60000);
  load();
})();
