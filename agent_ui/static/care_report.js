/* The monthly care report page: its print button (the page's own CSS lays it out on A4). */
(function () {
  "use strict";
  var button = document.getElementById("print-report");
  if (button) {
    button.addEventListener("click", function () { window.print(); });
  }
})();
