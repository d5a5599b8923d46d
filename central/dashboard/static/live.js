// Live updates for the dashboard: every 2 s, fetch live.json (same origin, the session's
// cookie) and write the new numbers and states into the elements that name them. Without
// this script every page is complete as the server rendered it; a reload shows the same.
"use strict";
(function () {
  const url = document.body.dataset.liveUrl;
  if (!url) {
    return;
  }
  function valueOf(data, name) {
    const [group, key] = name.split(":");
    if (group === "trains" || group === "hops") {
      return data[group][key];
    }
    if (group === "train") {
      return data.train_status[key];
    }
    if (group === "route" && data.route) {
      return key === "status" ? data.route.status : data.route.hops[key];
    }
    return undefined;
  }
  function apply(data) {
    for (const el of document.querySelectorAll("[data-live]")) {
      const value = valueOf(data, el.dataset.live);
      if (value !== undefined && el.textContent !== String(value)) {
        el.textContent = String(value);
      }
    }
    for (const el of document.querySelectorAll("[data-live-state]")) {
      const value = valueOf(data, el.dataset.liveState);
      if (value !== undefined) {
        // setAttribute: an SVG element's className is not a plain string
        el.setAttribute("class", el.dataset.base + " state-" + value);
      }
    }
    document.body.dataset.liveUpdated = String(Date.now());
  }
  async function tick() {
    try {
      const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        return; // the session ended: stop, the next click goes to the login page
      }
      if (response.ok) {
        apply(await response.json());
      }
    } catch (error) {
      // central restarting or the network gone: try again at the next tick
    }
    window.setTimeout(tick, 2000);
  }
  window.setTimeout(tick, 2000);
})();
