// Stempel staff screen: the keypad types into the amount field; the live part of the page and
// the mirror of the kiosk's screen are polled. Plain script, no libraries (CSP: 'self' only).
(function () {
  "use strict";
  var amount = document.getElementById("amount");
  document.querySelectorAll(".keypad [data-key]").forEach(function (button) {
    button.addEventListener("click", function () {
      var key = button.dataset.key, value = amount.value;
      if (key === "back") {
        amount.value = value.slice(0, -1);
      } else if (key === ".") {
        if (value.indexOf(".") < 0) amount.value = (value || "0") + ".";
      } else if (!/\.\d\d$/.test(value) && value.replace(".", "").length < 12) {
        amount.value = value === "0" ? key : value + key;
      }
    });
  });

  var live = document.getElementById("live"), oled = document.getElementById("oled");
  if (!live || !oled) return;
  var last = "";
  function poll() {
    fetch(live.dataset.src, { credentials: "same-origin", cache: "no-store" }).then(function (response) {
      if (response.redirected || response.status === 401) { window.location.reload(); return null; }
      return response.ok ? response.text() : null;
    }).then(function (html) {
      if (html === null || html === undefined) return;
      if (html !== last) { live.innerHTML = html; last = html; }
      var marker = live.querySelector("[data-display]");
      var tag = marker ? marker.dataset.display : null;
      if (tag && tag !== oled.dataset.tag) {
        oled.dataset.tag = tag;
        oled.src = oled.dataset.base + "?v=" + encodeURIComponent(tag);
      }
    }).catch(function () { /* the kiosk restarts or the Wi-Fi drops: try again */ })
      .then(function () { window.setTimeout(poll, 700); });
  }
  window.setTimeout(poll, 700);
})();
