// Shared by the console, the wallboard and 今日通话: live frames on /ws are numbered per channel on
// each socket and carry the hub's epoch (README, "Live events").
// The server's labels and state sets (agent_ui/vocabulary.py), rendered into every page by base.html.
window.VOCABULARY = JSON.parse(document.getElementById("vocabulary").textContent);
window.LiveSequence = function () {
  var seq = {}, epoch = null;
  return {
    reset: function () { seq = {}; epoch = null; },
    // false when this frame shows that frames were lost (or the server says so with "resync")
    check: function (ev) {
      if (ev.type === "resync") return false;
      if (ev.seq == null) return true;
      var ok = (epoch === null || ev.epoch === epoch) && ev.seq === (seq[ev.channel] || 0) + 1;
      epoch = ev.epoch;
      seq[ev.channel] = ev.seq;
      return ok;
    }
  };
};
