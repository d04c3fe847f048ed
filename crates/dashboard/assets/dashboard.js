// Shared helpers of the x402 dashboard views, as `window.x402`. Every value from the server
// goes into the page as text (never as HTML), so a payer's address or a service name cannot
// inject markup.
"use strict";
(() => {
  /** Builds an element: attributes (`on*` functions become listeners), then children. */
  function el(tag, attrs = {}, ...children) {
    const node = tag === "svg" || SVG_TAGS.has(tag)
      ? document.createElementNS("http://www.w3.org/2000/svg", tag)
      : document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name.startsWith("on") && typeof value === "function") {
        node.addEventListener(name.slice(2), value);
      } else if (name === "style") {
        // Through the CSSOM: the page's CSP refuses inline `style` attributes.
        node.style.cssText = String(value);
      } else {
        node.setAttribute(name, value === true ? "" : String(value));
      }
    }
    for (const child of children.flat()) {
      if (child === undefined || child === null || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }
  const SVG_TAGS = new Set(["g", "path", "line", "rect", "text", "title", "desc", "circle", "polyline"]);

  /** Fetches the view's API (`/dashboard/api/<path>`) as JSON; a 401 goes back to sign-in. */
  async function api(path, { method = "GET", body } = {}) {
    const response = await fetch(`/dashboard/api/${path}`, {
      method,
      credentials: "same-origin",
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 401) {
      window.location.reload();
      throw new Error("signed out");
    }
    const json = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(json.error || `${response.status} ${response.statusText}`);
    return json;
  }

  /** An atomic amount (a decimal string) in whole units, exactly (BigInt), trimmed. */
  function units(atomic, decimals) {
    const value = BigInt(atomic || "0");
    const negative = value < 0n;
    const abs = negative ? -value : value;
    const scale = 10n ** BigInt(decimals);
    const whole = abs / scale;
    let fraction = (abs % scale).toString().padStart(Number(decimals), "0").replace(/0+$/, "");
    if (fraction.length < 2 && decimals >= 2) fraction = fraction.padEnd(2, "0");
    return `${negative ? "-" : ""}${whole}${fraction ? `.${fraction}` : ""}`;
  }

  /** An amount with its asset's symbol: `0.0125 USDC`. */
  function money(atomic, decimals, symbol) {
    return `${units(atomic, decimals)} ${symbol || ""}`.trim();
  }

  /** `0x1234…abcd` for long hex strings, whole otherwise. */
  function short(hex) {
    const text = String(hex || "");
    return text.length > 14 ? `${text.slice(0, 6)}…${text.slice(-4)}` : text;
  }

  /** A time (unix milliseconds) in the reader's locale. */
  function time(ms) {
    return ms ? new Date(Number(ms)).toLocaleString() : "–";
  }

  /**
   * A line chart of `points` ([{t, v}], t in ms, v a number) as an accessible SVG: its label
   * and a summary are read out, and each point's value is in its title. The axis shows dates,
   * or times of day with `clock: true`.
   */
  function lineChart(points, { label, format = String, clock = false } = {}) {
    const tick = (t) => (clock ? new Date(t).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : new Date(t).toLocaleDateString());
    const width = 640, height = 200, pad = 32;
    const svg = el("svg", {
      viewBox: `0 0 ${width} ${height}`, role: "img", class: "chart",
      "aria-label": `${label}: ${points.length} points, last ${points.length ? format(points[points.length - 1].v) : "none"}`,
    }, el("title", {}, label));
    if (points.length === 0) {
      svg.append(el("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "axis" }, "no data yet"));
      return svg;
    }
    const ts = points.map((p) => p.t), vs = points.map((p) => p.v);
    const t0 = Math.min(...ts), t1 = Math.max(...ts), vmax = Math.max(...vs, 0) || 1;
    // Room on the left for the axis label (about 7 units per character at this size).
    const left = Math.max(pad, 8 + 7 * String(format(vmax)).length);
    const x = (t) => left + (t1 === t0 ? (width - left - pad) / 2 : ((t - t0) / (t1 - t0)) * (width - left - pad));
    const y = (v) => height - pad - (v / vmax) * (height - 2 * pad);
    svg.append(
      el("line", { x1: left, y1: height - pad, x2: width - pad, y2: height - pad, class: "axis-line" }),
      el("line", { x1: left, y1: pad, x2: left, y2: height - pad, class: "axis-line" }),
      el("text", { x: left - 4, y: pad + 4, "text-anchor": "end", class: "axis" }, format(vmax)),
      el("text", { x: left, y: height - 8, class: "axis" }, tick(t0)),
      el("text", { x: width - pad, y: height - 8, "text-anchor": "end", class: "axis" }, tick(t1)),
      el("polyline", { class: "series", points: points.map((p) => `${x(p.t)},${y(p.v)}`).join(" ") }),
      ...points.map((p) => el("circle", { cx: x(p.t), cy: y(p.v), r: 3, class: "dot" },
        el("title", {}, `${new Date(p.t).toLocaleString()}: ${format(p.v)}`))),
    );
    return svg;
  }

  /** Horizontal bars: `rows` = [{label, value (number), text}], as a list. */
  function bars(rows, { label, empty = "nothing yet" } = {}) {
    if (rows.length === 0) return el("p", { class: "muted" }, empty);
    const max = Math.max(...rows.map((r) => r.value), 0) || 1;
    return el("ol", { class: "bars", "aria-label": label },
      rows.map((r) => el("li", {},
        el("span", { class: "bar-label", title: r.title || r.label }, r.label),
        el("span", { class: "bar-track", "aria-hidden": "true" },
          el("span", { class: "bar", style: `width:${Math.max(1, (r.value / max) * 100)}%` })),
        el("span", { class: "bar-value" }, r.text ?? String(r.value)))));
  }

  /**
   * A table: `columns` = [{key, label, render?(row) → node|text, numeric?}]; rows get
   * `data-*` attributes from `rowData(row)` when given, for scripts and tests.
   */
  function table({ caption, columns, rows, empty = "nothing yet", rowData }) {
    const body = rows.length === 0
      ? [el("tr", {}, el("td", { colspan: columns.length, class: "muted" }, empty))]
      : rows.map((row) => {
        const data = rowData ? Object.fromEntries(Object.entries(rowData(row)).map(([k, v]) => [`data-${k}`, v])) : {};
        return el("tr", data, columns.map((c) => el("td", { class: c.numeric ? "num" : undefined, "data-label": c.label },
          c.render ? c.render(row) : row[c.key])));
      });
    return el("div", { class: "table-wrap" }, el("table", {},
      caption ? el("caption", {}, caption) : null,
      el("thead", {}, el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.numeric ? "num" : undefined }, c.label)))),
      el("tbody", {}, body)));
  }

  /** A labelled figure: `<section><h2>title</h2>…</section>`. */
  function card(title, ...children) {
    return el("section", { class: "card" }, el("h2", {}, title), ...children);
  }

  /** Key figures: [{label, value, id?}] as a definition list of tiles. */
  function tiles(items) {
    return el("dl", { class: "tiles" }, items.map((item) => el("div", { class: "tile", "data-testid": item.id },
      el("dt", {}, item.label), el("dd", {}, item.value))));
  }

  /** Shows an error where a section would be. */
  function failure(error) {
    return el("p", { class: "error", role: "alert" }, `Could not load: ${error.message}`);
  }

  /**
   * An action that asks first: a button that, clicked, shows `question` with Confirm and
   * Cancel; Confirm runs `action` and shows what it answered. The box's `data-state` says
   * where it stands (`idle`, `asking`, `working`), so that a view does not redraw it mid-way.
   */
  function confirmed(label, question, action) {
    const box = el("div", { class: "confirm", "data-state": "idle" });
    const start = el("button", { type: "button", class: "danger" }, label);
    const status = el("p", { role: "status", class: "muted" });
    const ask = () => {
      box.dataset.state = "asking";
      const confirm = el("button", { type: "button", class: "danger", onclick: run }, "Confirm");
      box.replaceChildren(
        el("p", {}, question),
        confirm,
        el("button", { type: "button", onclick: reset }, "Cancel"), status);
      confirm.focus();
    };
    const reset = () => {
      box.dataset.state = "idle";
      box.replaceChildren(start, status);
    };
    const run = async () => {
      box.dataset.state = "working";
      status.textContent = "working…";
      try {
        status.textContent = await action();
      } catch (error) {
        status.textContent = `Failed: ${error.message}`;
      }
      reset();
      start.focus();
    };
    start.addEventListener("click", ask);
    reset();
    return box;
  }

  /**
   * Live updates: server-sent events from `/dashboard/api/events` call `onChange(event)`;
   * when the stream fails, polls every `pollMs` instead. The header says which.
   */
  function live(onChange, { pollMs = 5000 } = {}) {
    const badge = document.getElementById("live");
    const say = (text) => { if (badge) badge.textContent = text; };
    let timer = null;
    const poll = () => {
      if (timer) return;
      say("updating every few seconds");
      timer = setInterval(() => onChange({ type: "poll" }), pollMs);
    };
    if (!("EventSource" in window)) return poll();
    const source = new EventSource("/dashboard/api/events");
    source.onopen = () => { say("live"); if (timer) { clearInterval(timer); timer = null; } };
    source.onmessage = (event) => {
      let data = {};
      try { data = JSON.parse(event.data); } catch { /* a keep-alive */ }
      onChange(data);
    };
    source.onerror = () => { say("reconnecting…"); poll(); };
  }

  /**
   * The page's sections: [{id, title, render(container, param) → Promise, update?(container,
   * param) → Promise}]. The nav shows one at a time: `#id` in the address, or `#id/param` (a
   * section's own route, such as one payment's details). `refresh()` brings the shown one up
   * to date: with its `update` when it has one (which changes the container in place, so that
   * what the reader is doing, such as typing in a search box, is kept), else by rendering it
   * again. Refreshes asked for while one runs are folded into one more.
   */
  function sections(list) {
    const nav = document.getElementById("nav");
    const app = document.getElementById("app");
    let current = null;
    let param = "";
    let shown = null;
    let running = null;
    let again = false;
    const links = list.map((s) => el("a", { href: `#${s.id}`, "data-section": s.id }, s.title));
    nav.replaceChildren(el("ul", {}, links.map((a) => el("li", {}, a))));
    const route = () => {
      const [id, ...rest] = (window.location.hash || `#${list[0].id}`).slice(1).split("/");
      return { id, param: rest.map((part) => decodeURIComponent(part)).join("/") };
    };
    const render = async () => {
      const section = current;
      const container = el("div", { id: `section-${section.id}`, class: "section" });
      try {
        await section.render(container, param);
      } catch (error) {
        container.replaceChildren(failure(error));
      }
      if (section === current) {
        app.replaceChildren(container);
        shown = container;
        app.dataset.loaded = param ? `${section.id}/${param}` : section.id;
      }
    };
    const show = async (event) => {
      const wanted = route();
      current = list.find((s) => s.id === wanted.id) || list[0];
      param = current.id === wanted.id ? wanted.param : "";
      for (const a of links) {
        if (a.dataset.section === current.id) a.setAttribute("aria-current", "page");
        else a.removeAttribute("aria-current");
      }
      shown = null;
      await render();
      // Moving between sections takes the reader's focus to the new content.
      if (event) app.focus({ preventScroll: true });
    };
    const once = async () => {
      const section = current;
      if (section.update && shown) {
        try {
          await section.update(shown, param);
        } catch (error) {
          // What is shown stays; the header says the update failed.
          const badge = document.getElementById("live");
          if (badge) badge.textContent = `update failed: ${error.message}`;
        }
        return;
      }
      await render();
    };
    const refresh = async () => {
      if (running) {
        again = true;
        return running;
      }
      running = (async () => {
        do {
          again = false;
          await once();
        } while (again);
      })();
      try {
        await running;
      } finally {
        running = null;
      }
    };
    window.addEventListener("hashchange", show);
    show();
    return { refresh, current: () => current };
  }

  window.x402 = { el, api, units, money, short, time, lineChart, bars, table, card, tiles, failure, confirmed, live, sections };
})();
