// Register the service worker that keeps this card for offline use (no inline scripts: CSP).
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js", { scope: "/" }).then(() => {
    const note = document.getElementById("offline-note");
    if (note) note.hidden = false;
  }).catch(() => {});
}
