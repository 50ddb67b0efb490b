// Stempel card: keep the last copy of each card page so the pass QR shows offline.
// Network first (balances change), the cached copy when there is no connection.
// One copy per card, whatever query its URL had: a message's link opens /P/<token>?m=<id>
// (counted as opened by the hub), the home screen opens /P/<token>; both show the same card.
const CACHE = "stempel-cards-v1";

self.addEventListener("install", (event) => { self.skipWaiting(); });
self.addEventListener("activate", (event) => { event.waitUntil(self.clients.claim()); });

self.addEventListener("fetch", (event) => {
  const url = new URL(event.request.url);
  if (event.request.method !== "GET" || url.origin !== self.location.origin) return;
  const cardPage = /^\/P\/[0-9A-Za-z.-]+$/.test(url.pathname);
  const asset = url.pathname.startsWith("/static/");
  if (!cardPage && !asset) return;
  const key = cardPage ? url.origin + url.pathname : event.request;
  event.respondWith(
    fetch(event.request).then((response) => {
      if (response.ok) {
        const copy = response.clone();
        caches.open(CACHE).then((cache) => cache.put(key, copy));
      }
      return response;
    }).catch(() => caches.match(key, { ignoreSearch: cardPage }).then((hit) => hit || Response.error()))
  );
});
