// The gateway's operator dashboard: overview, payments (search, pages, details), settlement
// health (with "claim and settle now") and jobs, kept up to date by the gateway's events.
// Every figure comes from `/dashboard/api/…` as atomic units with the asset's decimals and
// symbol, and is shown exactly (`x402.money`, BigInt arithmetic); text from the server goes in
// as text, never as markup.
"use strict";
(() => {
  const { el, api, units, money, short, time, lineChart, bars, table, card, tiles, confirmed, live, sections } = window.x402;

  /** Minutes east of UTC, so that "today" is the reader's day. */
  const tzOffset = -new Date().getTimezoneOffset();

  /** `atomic` of the asset `of` names ({decimals, symbol}). */
  const amount = (atomic, of) => money(atomic, of.decimals, of.symbol);

  /** A figure that is an exact amount: BigInt sums of decimal strings. */
  const sum = (...atomics) => atomics.reduce((total, a) => total + BigInt(a || "0"), 0n).toString();

  /** An amount as a number, for charts only (never for figures shown as text). */
  const approx = (atomic, decimals) => Number(units(atomic, decimals));

  const stateLabels = {
    settled: "settled on chain",
    charged: "charged to channel",
    pending: "settlement pending",
    failed: "failed",
  };
  const stateBadge = (state) => el("span", { class: `badge state-${state}` }, stateLabels[state] || state);

  /**
   * A transaction hash: short, the whole hash in its title. A channel's charge has none (the
   * money is held in the channel), or names the deposit that opened the channel.
   */
  const txCell = (tx, state) => {
    if (!tx) return el("span", { class: "muted" }, state === "charged" ? "held in channel" : "–");
    const hash = el("code", { title: tx, "data-tx": tx }, short(tx));
    return state === "charged" ? el("span", {}, el("span", { class: "muted" }, "deposit "), hash) : hash;
  };

  // -------------------------------------------------------------------------------------
  // Overview

  /** The revenue tiles of one window for every asset: earned, then how it was paid. */
  function revenueTiles(label, id, earned) {
    if (earned.length === 0) {
      return [{ label, value: el("span", { "data-testid": `revenue-${id}-total` }, "0"), id: `revenue-${id}` }];
    }
    return earned.map((e, i) => {
      const suffix = i === 0 ? "" : `-${i}`;
      return {
        label: `${label} · ${e.symbol} on ${e.network}`,
        id: `revenue-${id}${suffix}`,
        value: el("span", {},
          el("span", { "data-testid": `revenue-${id}-total${suffix}` }, amount(sum(e.settled, e.charged), e)),
          el("small", { class: "muted breakdown" },
            el("span", {}, "settled on chain "),
            el("span", { "data-testid": `revenue-${id}-settled${suffix}` }, amount(e.settled, e)),
            el("span", {}, " · in channels "),
            el("span", { "data-testid": `revenue-${id}-charged${suffix}` }, amount(e.charged, e)),
            el("span", {}, ` · ${e.calls} paid calls`))),
      };
    });
  }

  async function overview(root) {
    const data = await api(`overview?tz_offset=${tzOffset}`);
    const revenue = data.revenue;
    const calls = data.calls_per_minute.counts;
    const callsTotal = calls.reduce((a, b) => a + b, 0);
    const perMinute = calls.map((v, i) => ({ t: data.calls_per_minute.start_ms + i * 60000, v }));
    const primary = revenue.all_time[0] || data.assets[0] || { decimals: 6, symbol: "" };
    const days = data.revenue_by_day
      .filter((d) => d.asset === primary.asset && d.network === primary.network)
      .map((d) => ({ t: d.day_ms, v: approx(d.amount, d.decimals) }));
    const rank = (rows) => rows.map((r) => ({
      label: r.name.startsWith("0x") ? short(r.name) : r.name,
      title: r.name,
      value: approx(r.amount, r.decimals),
      text: `${amount(r.amount, r)} · ${r.calls} calls`,
    }));
    root.append(
      card("Revenue",
        tiles([
          ...revenueTiles("Today", "today", revenue.today),
          ...revenueTiles("Last 7 days", "week", revenue.week),
          ...revenueTiles("All time", "all", revenue.all_time),
        ]),
        el("p", { class: "muted" },
          "Earned: settled on chain, plus what batch-settlement channels were charged (held in escrow until claimed; see Settlement). Exact sums of the gateway's payment journal.")),
      card("Paid calls per minute, last hour",
        el("p", { "data-testid": "calls-last-hour" }, `${callsTotal} paid calls in the last hour`),
        lineChart(perMinute, { label: "Paid calls per minute over the last hour", format: (v) => `${v} calls`, clock: true })),
      card(`Revenue per day, 30 days (${primary.symbol || "no payments yet"})`,
        lineChart(days, { label: `Revenue per day in ${primary.symbol || "the first asset"}`, format: (v) => `${v} ${primary.symbol || ""}` })),
      card("Top services", bars(rank(data.top_services), { label: "Top services by revenue, all time" })),
      card("Top payers", bars(rank(data.top_payers), { label: "Top payers by revenue, all time" })),
    );
  }

  // -------------------------------------------------------------------------------------
  // Payments

  const paymentColumns = [
    { key: "at_ms", label: "Time", render: (p) => time(p.at_ms) },
    { key: "service", label: "Service" },
    { key: "payer", label: "Payer", render: (p) => el("code", { title: p.payer }, short(p.payer)) },
    { key: "amount", label: "Amount", numeric: true, render: (p) => amount(p.amount, p) },
    { key: "scheme", label: "Scheme" },
    { key: "network", label: "Network" },
    { key: "state", label: "State", render: (p) => stateBadge(p.state) },
    { key: "tx", label: "Transaction", render: (p) => txCell(p.tx, p.state) },
    { key: "id", label: "Details", render: (p) => el("a", { href: `#payments/${p.id}`, "aria-label": `Details of payment ${p.id}` }, `#${p.id}`) },
  ];

  /** The payments list: its controls are built once, its results updated in place. */
  function paymentsList(root) {
    const state = { q: "", status: "", page: 1, perPage: 25, pages: 1 };
    const results = el("div", { class: "results" });
    const summary = el("p", { role: "status", "aria-live": "polite", "data-testid": "payments-summary" });
    const search = el("input", {
      id: "payment-search", type: "search", name: "q", autocomplete: "off",
      placeholder: "payer, service, transaction or id",
    });
    const filter = el("select", { id: "payment-state", name: "state" },
      el("option", { value: "" }, "any state"),
      Object.entries(stateLabels).map(([value, label]) => el("option", { value }, label)));
    const previous = el("button", { type: "button", "data-testid": "previous-page" }, "Previous page");
    const next = el("button", { type: "button", "data-testid": "next-page" }, "Next page");
    const pageOf = el("span", { "data-testid": "page-of" });
    let timer = null;
    search.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { state.q = search.value.trim(); state.page = 1; load(); }, 250);
    });
    filter.addEventListener("change", () => { state.status = filter.value; state.page = 1; load(); });
    previous.addEventListener("click", () => { if (state.page > 1) { state.page -= 1; load(); } });
    next.addEventListener("click", () => { if (state.page < state.pages) { state.page += 1; load(); } });

    async function load() {
      const query = new URLSearchParams({ page: state.page, per_page: state.perPage });
      if (state.q) query.set("q", state.q);
      if (state.status) query.set("state", state.status);
      const data = await api(`payments?${query}`);
      state.pages = data.pages;
      if (state.page > data.pages) state.page = data.pages;
      summary.textContent = `${data.total} payment${data.total === 1 ? "" : "s"}${state.q ? ` matching “${state.q}”` : ""}`;
      pageOf.textContent = `page ${data.page} of ${data.pages}`;
      previous.disabled = data.page <= 1;
      next.disabled = data.page >= data.pages;
      results.replaceChildren(table({
        caption: "Payments, newest first",
        columns: paymentColumns,
        rows: data.payments,
        empty: state.q ? "no payment matches" : "no payments yet",
        rowData: (p) => ({ id: p.id, tx: p.tx || "", state: p.state, amount: p.amount }),
      }));
    }

    root.append(el("section", { class: "card wide" },
      el("h2", {}, "Payments"),
      el("div", { class: "toolbar", role: "search" },
        el("label", { for: "payment-search" }, "Search"), search,
        el("label", { for: "payment-state" }, "State"), filter),
      summary, results,
      el("nav", { class: "toolbar pager", "aria-label": "Pages of payments" }, previous, pageOf, next)));
    return load;
  }

  /** One payment's details. */
  async function paymentDetails(root, id) {
    const p = await api(`payments/${encodeURIComponent(id)}`);
    const rows = [
      ["Time", time(p.at_ms)],
      ["Service", p.service],
      ["Request", p.resource],
      ["Payer", el("code", {}, p.payer)],
      ["Amount", `${amount(p.amount, p)} (${p.amount} atomic units)`],
      ["Asset", el("code", {}, p.asset)],
      ["Network", p.network],
      ["Scheme", p.scheme],
      ["State", stateBadge(p.state)],
      ["Reason", p.reason || "–"],
      ["Transaction", p.tx ? el("code", { "data-tx": p.tx }, p.tx) : txCell(null, p.state)],
      ["Payment id", el("code", {}, p.payment)],
      ["Request fingerprint", el("code", { "data-testid": "fingerprint" }, p.fingerprint)],
      ["Job", p.job || "–"],
    ];
    const job = p.job_record;
    root.append(
      el("section", { class: "card wide", "data-testid": "payment-details" },
        el("h2", {}, `Payment #${p.id}`),
        el("p", {}, el("a", { href: "#payments" }, "← All payments")),
        el("dl", { class: "details" }, rows.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]))),
      card("Receipt", el("pre", { tabindex: "0", "aria-label": "Receipt as JSON" }, JSON.stringify(p.receipt, null, 2))),
      job ? card(`Job ${job.id}`, el("dl", { class: "details" },
        [["State", job.state], ["Attempts", job.attempts], ["Charged", job.charged ? "yes" : "no"],
          ["Refunded", job.refunded ? `yes (${job.refund_amount_usd} USD)` : "no"], ["Error", job.error || "–"]]
          .flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, String(v))])))
        : p.job ? card("Job", el("p", { class: "muted" }, `${p.job} is no longer kept (finished jobs are kept for a while).`)) : null,
    );
  }

  const payments = {
    id: "payments",
    title: "Payments",
    render: async (root, param) => {
      if (param) return paymentDetails(root, param);
      root.load = paymentsList(root);
      await root.load();
    },
    update: async (root, param) => {
      if (param) return;
      await root.load();
    },
  };

  // -------------------------------------------------------------------------------------
  // Settlement health

  /** What the last claim from this page answered, kept across redraws. */
  let lastClaim = "";

  async function settlement(root) {
    const data = await api("settlement");
    const batch = data.batch;
    const parts = [];
    if (batch) {
      const total = batch.total.length
        ? batch.total.map((t, i) => ({
          label: `Charged, not yet claimed · ${t.symbol} on ${t.network}`,
          id: `unclaimed-total${i === 0 ? "" : `-${i}`}`,
          value: amount(t.unclaimed, t),
        }))
        : [{ label: "Charged, not yet claimed", id: "unclaimed-total", value: "0" }];
      const lastClaimMs = batch.claimers
        .map((c) => c.last_claim_ms)
        .filter(Boolean)
        .sort((a, b) => b - a)[0];
      parts.push(el("section", { class: "card wide" },
        el("h2", {}, "Batch settlement channels"),
        tiles([
          ...total,
          { label: "Channels kept", id: "channels", value: String(batch.channels) },
          { label: "Last claim", id: "last-claim", value: lastClaimMs ? time(lastClaimMs) : "never (since this gateway started)" },
        ]),
        el("p", { class: "muted" },
          "Money charged to payers' channels is held in escrow until the gateway claims it on chain; a payer who withdraws first takes what is unclaimed. Claims also run on their own schedule."),
        confirmed("Claim and settle now",
          "Send the claim and settle transactions for every channel now? This pays the unclaimed money to the payee and costs gas.",
          async () => {
            const answer = await api("claim", { method: "POST", body: { confirm: true } });
            const sent = answer.transactions.length;
            const failed = answer.runs.flatMap((r) => (r.run ? r.run.failures : [r.error]));
            const of = batch.total[0] || { decimals: 6, symbol: "" };
            lastClaim = `Claimed ${amount(answer.claimed, of)} in ${sent} transaction${sent === 1 ? "" : "s"}${sent ? `: ${answer.transactions.join(", ")}` : ""}${failed.length ? `; ${failed.length} failed` : ""}.`;
            setTimeout(() => handle.refresh(), 0);
            return lastClaim;
          }),
        lastClaim ? el("p", { role: "status", "data-testid": "claim-result" }, lastClaim) : null,
        table({
          caption: "Unclaimed per payer",
          columns: [
            { key: "payer", label: "Payer", render: (p) => el("code", { title: p.payer }, short(p.payer)) },
            { key: "unclaimed", label: "Unclaimed", numeric: true, render: (p) => amount(p.unclaimed, p) },
            { key: "channels", label: "Channels", numeric: true },
            { key: "network", label: "Network" },
          ],
          rows: batch.payers,
          empty: "no channels",
          rowData: (p) => ({ payer: p.payer, unclaimed: p.unclaimed }),
        })));
    } else {
      parts.push(card("Batch settlement channels", el("p", { class: "muted" }, "Batch settlement is not configured on this gateway ([batch_settlement]).")));
    }
    parts.push(
      card("Pending settlements",
        el("p", { "data-testid": "pending-total" }, `${data.pending.total} pending`),
        table({
          caption: "Sent, with no receipt within the gateway's patience",
          columns: paymentColumns.filter((c) => c.key !== "scheme" && c.key !== "network"),
          rows: data.pending.payments,
          empty: "none",
        })),
      card("Failures by reason",
        table({
          caption: "Settlements refused, by reason code",
          columns: [
            { key: "reason", label: "Reason", render: (f) => el("code", {}, f.reason) },
            { key: "count", label: "Payments", numeric: true },
            { key: "last_ms", label: "Latest", render: (f) => time(f.last_ms) },
          ],
          rows: data.failures,
          empty: "no failures",
        })),
      card("Signer gas",
        el("p", {}, data.signer.note),
        data.signer.facilitator_dashboard
          ? el("p", {}, el("a", { href: data.signer.facilitator_dashboard }, "The facilitator's dashboard"))
          : null,
        el("ul", {}, Object.entries(data.signer.signers || {}).flatMap(([family, list]) =>
          Array.isArray(list) ? list.map((a) => el("li", {}, `${family}: `, el("code", {}, a))) : [el("li", {}, String(list))]))),
    );
    root.append(...parts);
  }

  // -------------------------------------------------------------------------------------
  // Jobs

  async function jobs(root) {
    const data = await api("jobs");
    const columns = [
      { key: "id", label: "Job", render: (j) => el("code", {}, j.id) },
      { key: "service", label: "Service" },
      { key: "state", label: "State" },
      { key: "attempts", label: "Attempts", numeric: true },
      { key: "payer", label: "Payer", render: (j) => el("code", { title: j.payer }, short(j.payer)) },
      { key: "cost_usd", label: "Paid (USD)", numeric: true },
      { key: "created_at_ms", label: "Accepted", render: (j) => time(j.created_at_ms) },
    ];
    root.append(
      card("Running and queued", table({ caption: "Jobs not finished", columns, rows: data.running, empty: "none running" })),
      card("Failed", table({
        caption: "Jobs that failed for good",
        columns: [...columns,
          { key: "charged", label: "Charged", render: (j) => (j.charged ? "yes" : "no") },
          { key: "refunded", label: "Refunded", render: (j) => (j.refunded ? `yes (${j.refund_amount_usd} USD)` : "no") },
          { key: "error", label: "Error" }],
        rows: data.failed,
        empty: "no failed jobs",
      })),
    );
  }

  const handle = sections([
    { id: "overview", title: "Overview", render: overview },
    payments,
    {
      id: "settlement",
      title: "Settlement",
      render: settlement,
      // Redrawn in place, but never while a claim is being confirmed or sent.
      update: async (root) => {
        if (root.querySelector('.confirm:not([data-state="idle"])')) return;
        const fresh = el("div");
        await settlement(fresh);
        if (root.querySelector('.confirm:not([data-state="idle"])')) return;
        root.replaceChildren(...fresh.childNodes);
      },
    },
    { id: "jobs", title: "Jobs", render: jobs },
  ]);

  // New payments appear without a reload; refresh every 30 s too (other replicas' payments,
  // claims on the claimers' schedule).
  const badge = document.getElementById("live");
  let heard = 0;
  live((event) => {
    if (event.type === "payment" && event.service && badge) {
      heard += 1;
      badge.textContent = `live · ${heard} new payment${heard === 1 ? "" : "s"} · last ${new Date(event.at_ms).toLocaleTimeString()} (${event.service}, ${event.state})`;
    }
    if (event.type !== "hello") handle.refresh();
  });
  setInterval(() => handle.refresh(), 30000);
})();
