// The facilitator's dashboard view: what was settled (overview), every settlement (a
// searchable, paged table with each one's details), and settlement health (pending, failures
// by reason, signers' gas). Figures come from /dashboard/api/, which reads the settlement log;
// the page follows the log's writes live. Built with the helpers of dashboard.js (window.x402).
"use strict";
(() => {
  const { el, api, units, money, short, time, lineChart, bars, table, card } = window.x402;

  /** An amount of a row's token, exact; atomic units when the token is not one we accept. */
  const amountOf = (row, atomic = row.amount) =>
    row.decimals === null || row.decimals === undefined
      ? `${atomic} units of ${short(row.asset)}`
      : money(atomic, row.decimals, row.asset_name);
  /** A number of whole units, for charts and bars (display only; the text shows it exactly). */
  const figure = (row, atomic) => Number(row.decimals == null ? atomic : units(atomic, row.decimals));
  const at = (seconds) => time(Number(seconds) * 1000);
  const age = (seconds) => {
    if (seconds === null || seconds === undefined) return "–";
    const s = Number(seconds);
    if (s < 120) return `${s} s`;
    if (s < 7200) return `${Math.round(s / 60)} min`;
    if (s < 172800) return `${Math.round(s / 3600)} h`;
    return `${Math.round(s / 86400)} days`;
  };
  const plural = (n, one, many = `${one}s`) => `${n} ${Number(n) === 1 ? one : many}`;
  /** A hash or address, shortened on screen and whole for screen readers and copying. */
  const hex = (value) => value ? el("code", { title: value }, short(value)) : "–";
  const stateBadge = (state) => el("span", { class: `state state-${state} nowrap` }, state);
  /** Whole units for a chart's axis: up to 6 significant digits. */
  const axis = (v) => Number(v).toLocaleString(undefined, { maximumSignificantDigits: 6 });

  /** Key figures with their exact atomic amounts in `data-*` attributes (for scripts). */
  function figures(items) {
    return el("dl", { class: "tiles" }, items.map((item) => el("div", {
      class: "tile", "data-testid": item.id, "data-amount": item.amount, "data-count": item.count,
    }, el("dt", {}, item.label), el("dd", {}, item.value))));
  }

  // ---- Overview ----

  async function renderOverview(container) {
    const data = await api("overview");
    const assets = data.assets;
    const traded = assets.filter((a) => a.all_time.settlements > 0);
    const shown = traded.length ? traded : assets;
    const perMinute = (data.last_hour.settlements / 60).toFixed(2);
    container.append(
      card("Settled", el("p", { class: "muted" }, "Confirmed settlements from the log. Today starts at 00:00 UTC."),
        ...shown.map((a) => el("div", { class: "asset" },
          el("h3", {}, `${a.asset_name || short(a.asset)} on ${a.network}`),
          figures([
            { id: `today-${a.chain_id}-${a.asset}`, label: "Today", value: amountOf(a, a.today.amount), amount: a.today.amount, count: a.today.settlements },
            { id: `week-${a.chain_id}-${a.asset}`, label: "Last 7 days", value: amountOf(a, a.week.amount), amount: a.week.amount, count: a.week.settlements },
            { id: `all-${a.chain_id}-${a.asset}`, label: "All time", value: amountOf(a, a.all_time.amount), amount: a.all_time.amount, count: a.all_time.settlements },
            { id: `count-${a.chain_id}-${a.asset}`, label: "Settlements (all time)", value: String(a.all_time.settlements), count: a.all_time.settlements },
          ])))),
      card("Settles per minute",
        figures([{ id: "per-minute", label: "Average over the last hour", value: perMinute, count: data.last_hour.settlements }]),
        lineChart(data.last_hour.per_minute.map((p) => ({ t: p.t * 1000, v: p.settlements })),
          { label: "Settlements per minute, last hour" })),
    );
    for (const line of data.series.tokens) {
      const points = line.points.map((p) => ({ t: p.t * 1000, v: figure(line, p.amount), amount: p.amount, n: p.settlements }));
      const name = line.asset_name || short(line.asset);
      container.append(el("section", { class: "card wide" },
        el("h2", {}, `Settled per day in ${name} on ${line.network}, last 30 days`),
        lineChart(points, { label: `Settled per day in ${name}`, format: axis }),
        el("details", {}, el("summary", {}, "As a table"),
          table({
            caption: `Settled per day in ${name}`,
            columns: [
              { label: "Day (UTC)", render: (p) => new Date(p.t).toISOString().slice(0, 10) },
              { label: "Settlements", numeric: true, render: (p) => String(p.n) },
              { label: "Amount", numeric: true, render: (p) => amountOf(line, p.amount) },
            ],
            rows: points.filter((p) => p.n > 0),
          }))));
    }
    const top = (title, list) => card(title, bars(list.map((p) => ({
      label: short(p.address), title: p.address, value: figure(p, p.amount),
      text: `${amountOf(p, p.amount)} · ${plural(p.settlements, "settlement")}`,
    })), { label: title, empty: "no settlements yet" }));
    container.append(top("Top payers", data.top_payers), top("Top payees", data.top_payees));
  }

  // ---- Settlements ----

  const browse = { q: "", state: "", page: 1, perPage: 25, open: null };

  function query() {
    const params = new URLSearchParams({ page: String(browse.page), per_page: String(browse.perPage) });
    if (browse.q) params.set("q", browse.q);
    if (browse.state) params.set("state", browse.state);
    return params.toString();
  }

  async function renderSettlements(container) {
    const search = el("input", { id: "settlement-search", type: "search", name: "q", value: browse.q,
      placeholder: "0x… payer, payee or transaction", autocomplete: "off", spellcheck: "false" });
    const state = el("select", { id: "settlement-state", name: "state" },
      [["", "any state"], ["confirmed", "confirmed"], ["pending", "pending"], ["failed", "failed"], ["abandoned", "abandoned"]]
        .map(([value, label]) => el("option", { value, selected: value === browse.state }, label)));
    const form = el("form", { class: "toolbar", role: "search", onsubmit: (event) => {
      event.preventDefault();
      browse.q = search.value.trim();
      browse.state = state.value;
      browse.page = 1;
      browse.open = null;
      reloadTable();
    } },
      el("label", { for: "settlement-search" }, "Search"), search,
      el("label", { for: "settlement-state" }, "State"), state,
      el("button", { type: "submit" }, "Search"));
    const holder = el("div", { id: "settlement-table", "aria-live": "polite" });
    const details = el("div", { id: "settlement-details" });
    details.style.gridColumn = "1 / -1";
    container.append(el("section", { class: "card wide" }, el("h2", {}, "Settlements"), form, holder), details);
    tableHolder = { holder, details };
    await reloadTable();
  }

  let tableHolder = null;

  async function reloadTable() {
    if (!tableHolder) return;
    const { holder, details } = tableHolder;
    let data;
    try {
      data = await api(`settlements?${query()}`);
    } catch (error) {
      holder.replaceChildren(window.x402.failure(error));
      return;
    }
    const pages = Math.max(1, data.pages);
    const columns = [
      { label: "Recorded", render: (r) => at(r.created_at) },
      { label: "Payer", render: (r) => hex(r.payer) },
      { label: "Payee", render: (r) => hex(r.pay_to) },
      { label: "Amount", numeric: true, render: (r) => amountOf(r) },
      { label: "Network", render: (r) => el("span", { class: "nowrap" }, r.network) },
      { label: "State", render: (r) => [stateBadge(r.state), r.error_reason ? el("span", { class: "muted" }, ` ${r.error_reason}`) : null] },
      { label: "Transaction", render: (r) => r.tx_hash ? el("code", { class: "tx", title: r.tx_hash }, r.tx_hash) : "–" },
      { label: "Details", render: (r) => el("button", { type: "button", class: "link",
        "aria-expanded": browse.open === r.key ? "true" : "false",
        "aria-controls": "settlement-details",
        onclick: () => { browse.open = r.key; showDetails(details, r.key); reloadTable(); } }, "Details") },
    ];
    const previous = el("button", { type: "button", disabled: browse.page <= 1,
      onclick: () => { browse.page -= 1; reloadTable(); } }, "Previous");
    const next = el("button", { type: "button", disabled: browse.page >= pages,
      onclick: () => { browse.page += 1; reloadTable(); } }, "Next");
    holder.replaceChildren(
      table({
        caption: `${plural(data.total, "settlement")}${browse.q ? ` matching ${browse.q}` : ""}, newest first`,
        columns,
        rows: data.settlements,
        empty: browse.q || browse.state ? "no settlement matches" : "no settlements yet",
        rowData: (r) => ({ key: r.key, tx: r.tx_hash || "", state: r.state, amount: r.amount }),
      }),
      el("nav", { class: "toolbar pager", "aria-label": "Pages" }, previous,
        el("span", { "data-testid": "page-of" }, `Page ${data.page} of ${pages}`), next));
    holder.dataset.total = String(data.total);
    if (browse.open && !details.hasChildNodes()) showDetails(details, browse.open);
  }

  async function showDetails(holder, key) {
    let s;
    try {
      s = await api(`settlements/${encodeURIComponent(key)}`);
    } catch (error) {
      holder.replaceChildren(window.x402.failure(error));
      return;
    }
    const field = (label, value) => [el("dt", {}, label), el("dd", {}, value)];
    const close = el("button", { type: "button", onclick: () => { browse.open = null; holder.replaceChildren(); reloadTable(); } }, "Close");
    holder.replaceChildren(el("section", { class: "card wide", "aria-label": "Settlement details", "data-key": s.key },
      el("h2", {}, "Settlement"),
      el("dl", { class: "fields" },
        field("State", [stateBadge(s.state), s.error_reason ? ` ${s.error_reason}` : ""]),
        field("Amount", amountOf(s)),
        field("Payer", el("code", {}, s.payer)),
        field("Payee", el("code", {}, s.pay_to)),
        field("Network", `${s.network} (asked as ${s.wire_network})`),
        field("Token", el("code", {}, s.asset)),
        field("Recorded", at(s.created_at)),
        field("Last change", at(s.updated_at)),
        field("Authorization nonce", el("code", {}, s.nonce)),
        field("Valid before", at(s.valid_before)),
        field("Fingerprint", el("code", {}, s.fingerprint)),
        field("Key", el("code", {}, s.key))),
      table({
        caption: "Transactions sent, oldest first",
        columns: [
          { label: "Hash", render: (t) => el("code", {}, t.tx_hash) },
          { label: "Signer", render: (t) => el("code", {}, t.signer) },
          { label: "Signer nonce", numeric: true, render: (t) => String(t.signer_nonce) },
        ],
        rows: s.transactions,
        empty: "no transaction signed yet",
      }),
      el("details", {}, el("summary", {}, "Request"), el("pre", {}, JSON.stringify(s.request, null, 2))),
      el("details", { open: true }, el("summary", {}, "Answer"),
        el("pre", {}, s.response ? JSON.stringify(s.response, null, 2) : "none yet")),
      close));
    holder.querySelector("h2").setAttribute("tabindex", "-1");
  }

  // ---- Health ----

  async function renderHealth(container) {
    const data = await api("health");
    const pending = (label, b, id) => ({ id, label, value: `${b.count}${b.count ? ` · oldest ${age(b.oldest_age_seconds)}` : ""}`, count: b.count });
    container.append(
      card("Pending",
        figures([
          pending("Recorded, not yet sent", data.claimed, "claimed"),
          pending("Sent, awaiting outcome", data.submitted, "submitted"),
          pending("Batch sends awaiting answer", data.batch_sends, "batch-sends"),
          { id: "in-flight", label: "Worked on by this instance", value: String(data.in_flight), count: data.in_flight },
        ]),
        table({
          caption: "Oldest pending settlements",
          columns: [
            { label: "Recorded", render: (r) => `${at(r.created_at)} (${age(data.generated_at - r.created_at)} ago)` },
            { label: "State", render: (r) => stateBadge(r.state) },
            { label: "Payer", render: (r) => hex(r.payer) },
            { label: "Amount", numeric: true, render: (r) => amountOf(r) },
            { label: "Transaction", render: (r) => hex(r.tx_hash) },
          ],
          rows: data.pending,
          empty: "nothing pending",
          rowData: (r) => ({ key: r.key }),
        })),
      card("Failures by reason",
        table({
          caption: "Settlements that ended without moving money",
          columns: [
            { label: "Reason", render: (f) => el("code", {}, f.reason || "(none given)") },
            { label: "Outcome", render: (f) => stateBadge(f.state) },
            { label: "Count", numeric: true, render: (f) => String(f.count) },
            { label: "Last", render: (f) => at(f.last_at) },
          ],
          rows: data.failures,
          empty: "no failures",
          rowData: (f) => ({ reason: f.reason, count: f.count }),
        })),
      card("Signers' gas",
        el("p", { class: "muted" }, "Native balance of each address sending settlements, read from its chain now."),
        table({
          caption: "Signers",
          columns: [
            { label: "Network", render: (s) => s.network },
            { label: "Address", render: (s) => [el("code", {}, s.address), s.this_instance ? el("span", { class: "muted" }, " (this instance)") : null] },
            { label: "Balance", numeric: true, render: (s) => s.balance_wei === null
              ? el("span", { class: "error" }, `unreadable: ${s.error}`)
              : [`${units(s.balance_wei, 18)} ETH`, s.low ? el("strong", { class: "error" }, " below the floor") : null] },
            { label: "Floor", numeric: true, render: (s) => s.min_balance_wei === null ? "none" : `${units(s.min_balance_wei, 18)} ETH` },
          ],
          rows: data.signers,
          rowData: (s) => ({ address: s.address, balance: s.balance_wei ?? "" }),
        })),
      card("Settlement log",
        el("p", {}, data.database.reachable
          ? `${data.database.backend}, answering in ${data.database.latency_ms} ms`
          : el("span", { class: "error" }, `${data.database.backend} unreachable: ${data.database.error}`))),
    );
  }

  const page = window.x402.sections([
    { id: "overview", title: "Overview", render: renderOverview },
    { id: "settlements", title: "Settlements", render: renderSettlements },
    { id: "health", title: "Health", render: renderHealth },
  ]);

  // Live: each write to the log reads the shown section again (at most every half second).
  let pendingRefresh = null;
  window.x402.live(() => {
    if (pendingRefresh) return;
    pendingRefresh = setTimeout(() => {
      pendingRefresh = null;
      if (page.current().id === "settlements") reloadTable();
      else page.refresh();
    }, 500);
  });
})();
