// The visitors' visit page (/v/tasks/…): the check-in asks the browser for the position first
// (sent when given within a few seconds; the check-in goes ahead without it otherwise), and the
// record form hides what an absent elder cannot answer and suggests the work order's service.
(function () {
  "use strict";
  var checkin = document.getElementById("checkin-form");
  if (checkin) {
    checkin.addEventListener("submit", function (event) {
      if (checkin.dataset.located || !navigator.geolocation) return;
      event.preventDefault();
      var button = document.getElementById("checkin"), sent = false;
      button.disabled = true;
      button.textContent = "正在定位…";
      function send() {
        if (sent) return;
        sent = true;
        checkin.dataset.located = "1";
        checkin.submit();
      }
      var fallback = setTimeout(send, 8000);
      navigator.geolocation.getCurrentPosition(function (position) {
        clearTimeout(fallback);
        checkin.elements.latitude.value = position.coords.latitude.toFixed(6);
        checkin.elements.longitude.value = position.coords.longitude.toFixed(6);
        checkin.elements.accuracy.value = Math.round(position.coords.accuracy || 0);
        send();
      }, function () { clearTimeout(fallback); send(); }, { enableHighAccuracy: true, timeout: 7000, maximumAge: 60000 });
    });
  }

  var record = document.getElementById("record-form");
  if (!record) return;
  var services = JSON.parse(record.dataset.services || "{}"), chosen = false;
  var select = record.elements.service_type;
  select.addEventListener("change", function () { chosen = true; });
  function absent() {
    var met = record.querySelector('input[name="answers.met"]:checked');
    return met !== null && met.value === "absent";
  }
  function update() {
    Array.prototype.forEach.call(record.querySelectorAll("fieldset.topic"), function (set) {
      if (set.dataset.topic !== "met") set.hidden = absent();
    });
    var needs = record.querySelector('input[name="answers.needs"]:checked');
    if (!chosen && needs && services[needs.value]) select.value = services[needs.value];
  }
  record.addEventListener("change", update);
  update();
})();
