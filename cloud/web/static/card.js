// Register the service worker that keeps this card for offline use (no inline scripts: CSP).
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("/sw.js", { scope: "/" }).then(() => {
    const note = document.getElementById("offline-note");
    if (note) note.hidden = false;
  }).catch(() => {});
}

// Opened from a message's link (?m=<id>): the hub has counted the open; drop the id from the
// address so a bookmark, a reload or a shared link does not carry it.
if (window.location.search && window.history.replaceState) {
  window.history.replaceState(null, "", window.location.pathname + window.location.hash);
}
