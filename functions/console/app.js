// callme console: plain JavaScript, no build step, no library. It reads and writes through the same JSON
// API as curl does, from the origin that served it (the Content-Security-Policy allows nothing else).
// Every value from the API is put on the page as text (textContent), never as HTML.
"use strict";

(() => {
  // The API's base: "" locally, "/<stage>" in AWS (the page is <base>/console).
  const BASE = location.pathname.replace(/\/console\/?$/, "");
  const KEY_STORE = "callme.apiKey";
  const FIELDS = [
    "task_name", "trigger_at", "callback", "callback_method", "payload", "expected_http_status", "retry", "max_delay",
  ];
  const NUMERIC = new Set(["expected_http_status", "retry", "max_delay"]);
  const PAGE_SIZE = 50;
  const OUTCOMES = ["succeeded", "retried", "failed", "skipped"];

  const app = {
    auth: "none",
    features: { stats: false, schedules: false },
    key: sessionStorage.getItem(KEY_STORE) || "",
    keyWaiters: [],
    entries: { query: "", rows: [], next: null, looked: 0, busy: false },
    schedules: { rows: [], next: null },
    lastRetry: null,
    statsTimer: null,
    notice: "",
    entryKey: "",
  };

  // -- small DOM helpers --------------------------------------------------------------------------

  const $ = (id) => document.getElementById(id);

  function h(tag, props = {}, ...children) {
    const el = document.createElement(tag);
    setProps(el, props);
    append(el, children);
    return el;
  }

  function s(tag, props = {}, ...children) {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    setProps(el, props);
    append(el, children);
    return el;
  }

  function setProps(el, props) {
    for (const [name, value] of Object.entries(props)) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "text") el.textContent = value;
      else if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
      else el.setAttribute(name, value === true ? "" : String(value));
    }
  }

  function append(el, children) {
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      el.append(child instanceof Node ? child : String(child));
    }
  }

  // -- time ---------------------------------------------------------------------------------------

  const localMinute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
  const localSecond = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
  const clockMinute = new Intl.DateTimeFormat(undefined, { hour: "2-digit", minute: "2-digit" });

  function utcText(seconds, withSeconds) {
    const iso = new Date(seconds * 1000).toISOString();
    return `${iso.slice(0, 10)} ${iso.slice(11, withSeconds ? 19 : 16)} UTC`;
  }

  /** A <time> in the browser's time zone, with UTC on hover. */
  function when(seconds, withSeconds = false) {
    if (seconds === null || seconds === undefined) return "—";
    const date = new Date(seconds * 1000);
    return h("time", {
      datetime: date.toISOString(),
      title: utcText(seconds, withSeconds),
      text: (withSeconds ? localSecond : localMinute).format(date),
    });
  }

  function span(seconds) {
    const abs = Math.abs(seconds);
    if (abs < 1) return `${Math.round(abs * 1000)} ms`;
    if (abs < 60) return `${abs.toFixed(1)} s`;
    const split = (count, part) => [Math.floor(count / part), count % part];
    if (abs < 3600) {
      const [m, sec] = split(Math.round(abs), 60);
      return `${m} min ${sec} s`;
    }
    if (abs < 86400) {
      const [hours, m] = split(Math.round(abs / 60), 60);
      return `${hours} h ${m} min`;
    }
    const [days, hours] = split(Math.round(abs / 3600), 24);
    return `${days} d ${hours} h`;
  }

  function relative(seconds) {
    const delta = seconds - Date.now() / 1000;
    if (Math.abs(delta) < 60) return delta >= 0 ? "within a minute" : "just now";
    const text = span(delta).replace(/ \d+ s$/, "").replace(/ 0 (min|h)$/, "");
    return delta > 0 ? `in ${text}` : `${text} ago`;
  }

  function lateness(task) {
    return task.executed_at === null || task.executed_at === undefined ? null : task.executed_at - task.trigger_at;
  }

  // -- the API ------------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  async function api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (app.auth === "api_key") headers["x-api-key"] = await apiKey();
    let response;
    try {
      response = await fetch(BASE + path, {
        method, headers, cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body),
      });
    } catch {
      throw new ApiError(0, `cannot reach callme at ${location.origin}: the network is down or the API is stopped`);
    }
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (!response.ok) {
      const message = (data && (data.error || data.message)) || `${response.status} ${response.statusText}`;
      if (response.status === 403 && app.auth === "api_key") forgetKey(message);
      throw new ApiError(response.status, message);
    }
    return { status: response.status, data };
  }

  /** The API key of this tab; asks for one (once) when there is none. */
  function apiKey() {
    if (app.key) return Promise.resolve(app.key);
    return new Promise((resolve) => {
      app.keyWaiters.push(resolve);
      askKey("");
    });
  }

  function forgetKey(message) {
    app.key = "";
    sessionStorage.removeItem(KEY_STORE);
    showAuth();
    askKey(`The API refused this key: ${message}`);
  }

  function askKey(problem) {
    const dialog = $("key-dialog");
    $("key-error").textContent = problem;
    $("key-input").setAttribute("aria-invalid", problem ? "true" : "false");
    if (!dialog.open) {
      $("key-input").value = "";
      dialog.showModal();
    }
  }

  function saveKey(event) {
    event.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) {
      $("key-error").textContent = "Enter the API key (the stack's ApiKeyId output names it).";
      return;
    }
    app.key = key;
    sessionStorage.setItem(KEY_STORE, key);
    $("key-dialog").close();
    showAuth();
    const waiters = app.keyWaiters.splice(0);
    waiters.forEach((resolve) => resolve(key));
    if (!waiters.length) route();
  }

  // -- problems that concern every view -------------------------------------------------------------

  /** Shows what went wrong in the banner when it is not about the request itself (network, storage, key). */
  function problem(error, retry) {
    if (!(error instanceof ApiError)) throw error;
    let text;
    if (error.status === 403 && app.auth === "api_key") return true; // the key dialog says it, and reloads
    if (error.status === 0) text = `Cannot reach the API. ${capital(error.message)}.`;
    else if (error.status === 403) text = `The API refused the request (403): ${error.message}`;
    else if (error.status === 429) text = `Too many requests (429): ${error.message}`;
    else if (error.status === 503) text = `Storage is unavailable right now (503): ${error.message}`;
    else if (error.status >= 500) text = `The API failed (${error.status}): ${error.message}`;
    else return false;
    $("banner-text").textContent = text;
    $("banner").hidden = false;
    app.lastRetry = retry;
    return true;
  }

  function clearProblem() {
    $("banner").hidden = true;
  }

  const capital = (text) => text.charAt(0).toUpperCase() + text.slice(1);

  // -- navigation ---------------------------------------------------------------------------------

  const VIEWS = ["entries", "entry", "new", "stats", "schedules", "iam"];

  function show(view) {
    for (const name of VIEWS) $(`view-${name}`).hidden = name !== view;
    for (const link of document.querySelectorAll("nav a[data-view]")) {
      if (link.dataset.view === (view === "entry" ? "entries" : view)) link.setAttribute("aria-current", "page");
      else link.removeAttribute("aria-current");
    }
    if (app.statsTimer && view !== "stats") {
      clearInterval(app.statsTimer);
      app.statsTimer = null;
    }
  }

  const currentView = () => VIEWS.find((name) => !$(`view-${name}`).hidden);

  function focusHeading(view) {
    const heading = $(`view-${view}`).querySelector("h1");
    heading.setAttribute("tabindex", "-1");
    heading.focus();
  }

  function route(fromUser = false) {
    if (app.auth === "iam") return;
    const hash = location.hash.replace(/^#\/?/, "");
    const [path, query = ""] = hash.split("?");
    const [view, ...rest] = path.split("/");
    const before = currentView();
    clearProblem();
    if (view === "entry" && rest.length) {
      show("entry");
      loadEntry(decodeURIComponent(rest.join("/")), app.notice);
      app.notice = "";
    } else if (view === "new") {
      show("new");
      document.title = "New task · callme";
    } else if (view === "stats") {
      show("stats");
      document.title = "Last hour · callme";
      loadStats();
      if (!app.statsTimer) app.statsTimer = setInterval(loadStats, 60000);
    } else if (view === "schedules") {
      show("schedules");
      document.title = "Schedules · callme";
      loadSchedules(true);
    } else {
      show("entries");
      document.title = "Entries · callme";
      openEntries(query);
    }
    // Keyboard and screen reader users land on the new view's heading; a new filter keeps the focus.
    const now = currentView();
    if (fromUser && (now !== before || now === "entry")) focusHeading(now);
  }

  // -- entries --------------------------------------------------------------------------------------

  function openEntries(query) {
    const params = new URLSearchParams(query);
    $("filter-name").value = params.get("name") || "";
    $("filter-state").value = params.get("state") || "";
    $("filter-future").checked = params.get("future_only") === "true";
    app.entries = { query, rows: [], next: null, looked: 0, busy: false };
    loadEntries();
  }

  function applyFilters(event) {
    event.preventDefault();
    const params = new URLSearchParams();
    const name = $("filter-name").value.trim();
    if (name) params.set("name", name);
    if ($("filter-state").value) params.set("state", $("filter-state").value);
    if ($("filter-future").checked) params.set("future_only", "true");
    navigate(`#/entries${params.toString() ? `?${params}` : ""}`);
  }

  /** Goes to ``hash`` (or shows it again when already there), with a notice for the view to show. */
  function navigate(hash, notice = "") {
    app.notice = notice;
    if (location.hash === hash) route();
    else location.hash = hash;
  }

  function skeleton(body, columns, rows) {
    body.replaceChildren(
      ...Array.from({ length: rows }, () =>
        h("tr", { class: "skeleton", "aria-hidden": "true" }, ...Array.from({ length: columns }, () => h("td"))),
      ),
    );
  }

  async function loadEntries() {
    const state = app.entries;
    const params = new URLSearchParams(state.query);
    const name = params.get("name") || "";
    const wanted = params.get("state") || "";
    const body = $("entries-body");
    const empty = $("entries-empty");
    state.busy = true;
    $("more").disabled = true;
    if (!state.rows.length) {
      skeleton(body, 7, 6);
      empty.hidden = true;
      $("entries-summary").textContent = "Loading…";
    }
    try {
      // The API has no state filter: pages are read until enough entries match, or none remain.
      let found = 0;
      let pages = 0;
      do {
        const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
        if (params.get("future_only") === "true") query.set("future_only", "true");
        if (state.next) query.set("start_from", state.next);
        const path = name ? `/status/${encodeURIComponent(name)}` : "/status/";
        let page;
        try {
          page = (await api("GET", `${path}?${query}`)).data;
        } catch (error) {
          if (error instanceof ApiError && error.status === 404 && name) page = { tasks: [] };
          else throw error;
        }
        if (app.entries !== state) return; // the filters changed meanwhile
        state.looked += page.tasks.length;
        const matching = page.tasks.filter((task) => !wanted || task.task_state === wanted);
        if (!state.rows.length) body.replaceChildren();
        body.append(...matching.map(entryRow));
        state.rows.push(...matching);
        state.next = page.next || null;
        found += matching.length;
        pages += 1;
      } while (wanted && state.next && found < 20 && pages < 10);
      summarizeEntries(name, wanted);
    } catch (error) {
      if (app.entries !== state) return;
      if (!state.rows.length) body.replaceChildren();
      const shown = problem(error, () => openEntries(state.query));
      empty.hidden = false;
      empty.textContent = shown ? "Entries could not be loaded." : error.message;
      $("entries-summary").textContent = " ";
    } finally {
      state.busy = false;
      $("more").disabled = false;
      $("more").hidden = !state.next;
    }
  }

  function summarizeEntries(name, wanted) {
    const state = app.entries;
    const empty = $("entries-empty");
    const what = [wanted ? `${wanted} ` : "", "entr", state.rows.length === 1 ? "y" : "ies"].join("");
    const of = name ? ` of task ${name}` : "";
    let summary = `${state.rows.length} ${what}${of}`;
    if (wanted) summary += ` among ${state.looked} looked at`;
    if (state.next) summary += "; more below";
    $("entries-summary").textContent = summary;
    empty.hidden = state.rows.length > 0;
    empty.replaceChildren();
    if (!state.rows.length) {
      if (!state.looked && !name && !wanted) {
        empty.append("No entries yet. ", h("a", { href: "#/new", text: "Create a task" }), ".");
      } else if (name && !state.looked) {
        empty.append(`Task ${name} has no entries.`);
      } else {
        empty.append(`No ${wanted || ""} entries${of}${state.next ? " in the entries looked at so far" : ""}.`);
      }
    }
  }

  function host(url) {
    try {
      return new URL(url).host;
    } catch {
      return url;
    }
  }

  function badge(state) {
    return h("span", { class: `state state-${state}`, text: state });
  }

  function lastStatus(task) {
    if (task.response_status !== null && task.response_status !== undefined) return String(task.response_status);
    const last = task.history && task.history[task.history.length - 1];
    return last && last.error ? h("span", { title: last.error, text: "error" }) : "—";
  }

  function entryRow(task) {
    const key = `${task.task_name}@${task.trigger_at}`;
    const late = lateness(task);
    return h(
      "tr",
      {},
      h("td", { "data-label": "Entry" }, h("a", { href: `#/entry/${encodeURIComponent(key)}`, title: key, text: task.task_name })),
      h("td", { "data-label": "State" }, badge(task.task_state)),
      h("td", { "data-label": "Trigger minute" }, when(task.trigger_at)),
      h("td", { "data-label": "Callback host", title: `${task.callback_method} ${task.callback}`, text: host(task.callback) }),
      h("td", { class: "num", "data-label": "Attempts", text: String(task.attempts) }),
      h("td", { class: "num", "data-label": "Last status" }, lastStatus(task)),
      h("td", { class: "num", "data-label": "Lateness", text: late === null ? "—" : span(late) }),
    );
  }

  // -- one entry ----------------------------------------------------------------------------------

  async function loadEntry(key, notice = "") {
    app.entryKey = key;
    const body = $("entry-body");
    $("entry-title").textContent = key;
    document.title = `${key} · callme`;
    $("cancel-entry").hidden = true;
    $("reschedule-entry").hidden = true;
    body.replaceChildren(h("p", { class: "summary", text: "Loading…" }));
    try {
      const task = (await api("GET", `/status/${encodeURIComponent(key)}`)).data;
      if (app.entryKey !== key || $("view-entry").hidden) return; // another view was opened meanwhile
      renderEntry(task, notice);
    } catch (error) {
      if (app.entryKey !== key) return;
      const shown = problem(error, () => loadEntry(key));
      body.replaceChildren(h("p", { class: "empty", text: shown ? "This entry could not be loaded." : error.message }));
    }
  }

  function fact(label, value) {
    return [h("dt", { text: label }), h("dd", {}, value)];
  }

  function entryLink(key) {
    return key ? h("a", { href: `#/entry/${encodeURIComponent(key)}`, text: key }) : "—";
  }

  function renderEntry(task, notice) {
    const key = `${task.task_name}@${task.trigger_at}`;
    const late = lateness(task);
    const definition = h(
      "dl",
      { class: "facts" },
      fact("Callback", h("span", { class: "mono", text: `${task.callback_method} ${task.callback}` })),
      fact("Expected status", String(task.expected_http_status)),
      fact("Retries", String(task.retry)),
      fact("Max delay", `${task.max_delay} min`),
      fact("Payload", task.payload ? h("pre", { text: task.payload }) : "(empty)"),
      fact("Headers", headerNames(task.headers)),
      task.on_failure ? fact("On failure", h("span", { class: "mono", text: `POST ${task.on_failure}` })) : null,
      fact("Webhook id", h("span", { class: "mono", text: task.webhook_id })),
    );
    const outcome = h(
      "dl",
      { class: "facts" },
      fact("State", badge(task.task_state)),
      fact("Trigger minute", [when(task.trigger_at), h("small", { text: ` (${relative(task.trigger_at)})` })]),
      fact("Executed", when(task.executed_at, true)),
      fact("Lateness", late === null ? "—" : span(late)),
      fact("Attempts", String(task.attempts)),
      fact("Last status", task.response_status === null ? "—" : String(task.response_status)),
      fact("Answer (first 256 bytes)", task.response_body ? h("pre", { text: task.response_body }) : "—"),
      fact("Created", when(task.created_at, true)),
      task.on_failure_call ? fact("Failure hook", hookOutcome(task.on_failure_call)) : null,
      task.rescheduled_from ? fact("Rescheduled from", entryLink(task.rescheduled_from)) : null,
      task.rescheduled_to ? fact("Rescheduled to", entryLink(task.rescheduled_to)) : null,
    );
    $("entry-body").replaceChildren(
      notice ? h("p", { class: "notice", role: "status", text: notice }) : "",
      h("div", { class: "columns" }, h("div", {}, h("h2", { text: "Definition" }), definition),
        h("div", {}, h("h2", { text: "Outcome" }), outcome)),
      h("h2", { text: "Attempts" }),
      timeline(task),
    );
    const finished = ["successful", "failed", "skipped", "cancelled"].includes(task.task_state);
    $("cancel-entry").hidden = !["pending", "running"].includes(task.task_state);
    $("reschedule-entry").hidden = !finished || Boolean(task.rescheduled_to);
    $("cancel-entry").onclick = () => confirmCancel(key);
    $("reschedule-entry").onclick = () => confirmReschedule(key, task.task_state);
  }

  // Header values never leave the API: it shows names only, each value as "***".
  function headerNames(headers) {
    const names = Object.keys(headers || {});
    if (!names.length) return "—";
    return [h("span", { class: "mono", text: names.join(", ") }), h("small", { text: " (values hidden)" })];
  }

  function hookOutcome(call) {
    const calls = `${call.attempts} call${call.attempts === 1 ? "" : "s"}`;
    const last = call.status !== null && call.status !== undefined ? `, last HTTP ${call.status}` : "";
    const parts = [badge(call.state), ` ${calls}${last}`];
    if (call.error) parts.push(h("div", { text: call.error }));
    if (call.next_at) parts.push(h("small", { text: `next call ${relative(call.next_at)}` }));
    return parts;
  }

  function timeline(task) {
    const items = task.history.map((attempt, index) => {
      const ok = attempt.status === task.expected_http_status;
      const what = attempt.status !== null && attempt.status !== undefined
        ? `HTTP ${attempt.status}${ok ? "" : ` (expected ${task.expected_http_status})`}`
        : attempt.error || "no answer";
      return h(
        "li",
        { class: ok ? "ok" : "bad" },
        h("div", { class: "what" }, `Attempt ${index + 1}: `, what),
        attempt.status !== null && attempt.error ? h("div", { text: attempt.error }) : "",
        h("div", { class: "when" }, when(attempt.at, true), ` · took ${attempt.duration_ms} ms`,
          ` · ${span(attempt.at - task.trigger_at)} after the trigger minute`),
      );
    });
    const ended = { successful: "ok", failed: "bad", skipped: "bad" }[task.task_state];
    if (ended && items.length) {
      items.push(h("li", { class: `${ended} end` }, h("div", { class: "what", text: `Ended ${task.task_state}` }),
        h("div", { class: "when" }, when(task.executed_at, true))));
    }
    if (task.next_attempt_at && ["pending", "running"].includes(task.task_state)) {
      items.push(h("li", { class: "pending" }, h("div", { class: "what", text: "Next attempt" }),
        h("div", { class: "when" }, when(task.next_attempt_at, true))));
    }
    if (!items.length) {
      const why = {
        pending: ["Not called yet: due ", when(task.trigger_at), ` (${relative(task.trigger_at)}).`],
        running: ["Being called now."],
        cancelled: ["Cancelled before any call."],
        skipped: [`Skipped: its max delay (${task.max_delay} min) ran out before a call.`],
      }[task.task_state] || ["No attempt recorded."];
      return h("p", { class: "summary" }, ...why);
    }
    return h("ol", { class: "timeline", "aria-label": "Attempt history" }, ...items);
  }

  // -- confirmations: cancel and reschedule -------------------------------------------------------------

  function confirm({ title, text, extra, yes, action }) {
    const dialog = $("confirm-dialog");
    $("confirm-title").textContent = title;
    $("confirm-text").textContent = text;
    $("confirm-extra").replaceChildren(...(extra ? [extra] : []));
    $("confirm-error").textContent = "";
    $("confirm-yes").textContent = yes;
    $("confirm-yes").disabled = false;
    $("confirm-form").onsubmit = async (event) => {
      event.preventDefault();
      $("confirm-yes").disabled = true;
      $("confirm-error").textContent = "";
      try {
        await action();
        dialog.close();
        // The button that opened the dialog may be gone (an entry cancelled): then the view's heading.
        const back = document.activeElement;
        if (!back || back === document.body || !back.offsetParent) focusHeading(currentView());
      } catch (error) {
        if (!(error instanceof ApiError)) throw error;
        $("confirm-error").textContent = error.message;
      } finally {
        $("confirm-yes").disabled = false;
      }
    };
    dialog.showModal();
    (extra ? extra.querySelector("input") : $("confirm-yes")).focus();
  }

  function confirmCancel(key) {
    confirm({
      title: `Cancel ${key}?`,
      text: "It will not be called. The entry stays readable, in state cancelled.",
      yes: "Cancel entry",
      action: async () => {
        await api("DELETE", `/task/${encodeURIComponent(key)}`);
        await loadEntry(key, "Cancelled.");
      },
    });
  }

  function confirmReschedule(key, state) {
    const input = h("input", { id: "reschedule-at", autocomplete: "off", spellcheck: "false", placeholder: "+1m" });
    const extra = h("div", {}, h("label", { for: "reschedule-at", text: "New trigger minute" }), input,
      h("small", { text: "Empty: the next minute. +<n>m, +<n>h, +<n>d, or a Unix timestamp." }));
    const again = !["failed", "skipped"].includes(state);
    confirm({
      title: `Reschedule ${key}?`,
      text: again
        ? `It ended ${state}; a new pending entry will copy its definition and be called again.`
        : "A new pending entry will copy its definition and be called at the new minute.",
      extra,
      yes: "Reschedule",
      action: async () => {
        const at = input.value.trim();
        const body = at ? { trigger_at: /^\d+$/.test(at) ? Number(at) : at } : undefined;
        const answer = await api("POST", `/reschedule/${encodeURIComponent(key)}${again ? "?all=true" : ""}`, body);
        const created = answer.data.tasks[0];
        const next = `${created.task_name}@${created.trigger_at}`;
        navigate(`#/entry/${encodeURIComponent(next)}`, `Rescheduled from ${key}.`);
      },
    });
  }

  // -- create -----------------------------------------------------------------------------------------

  /** The field an error of the API names: the one named first in its message, else none. */
  function fieldNamed(message) {
    let best = null;
    let at = Infinity;
    for (const field of FIELDS) {
      const words = field === "task_name" ? "task_name|task name" : field;
      const match = new RegExp(`(^|[^A-Za-z0-9_])(${words})(?![A-Za-z0-9_])`).exec(message);
      if (match && match.index < at) {
        best = field;
        at = match.index;
      }
    }
    return /^(unknown field|request body)/.test(message) ? null : best;
  }

  function clearErrors() {
    for (const field of [...FIELDS, "form"]) {
      $(`e-${field}`).textContent = "";
      const input = $(`f-${field}`);
      if (input) input.removeAttribute("aria-invalid");
    }
  }

  function fieldError(field, message) {
    const target = field || "form";
    $(`e-${target}`).textContent = message;
    const input = $(`f-${target}`);
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  }

  async function create(event) {
    event.preventDefault();
    clearErrors();
    const form = event.target;
    const values = Object.fromEntries(FIELDS.map((field) => [field, form.elements[field].value]));
    const name = values.task_name.trim();
    if (!name) return fieldError("task_name", "task_name is required");
    const body = {};
    for (const field of FIELDS.slice(1)) {
      const value = field === "payload" ? values[field] : values[field].trim();
      if (value === "") continue;
      const number = (NUMERIC.has(field) || field === "trigger_at") && /^-?\d+$/.test(value);
      body[field] = number ? Number(value) : value;
    }
    const submit = form.querySelector("button[type=submit]");
    submit.disabled = true;
    try {
      const answer = await api("PUT", `/task/${encodeURIComponent(name)}`, body);
      const task = answer.data;
      const key = `${task.task_name}@${task.trigger_at}`;
      form.reset();
      navigate(`#/entry/${encodeURIComponent(key)}`,
        answer.status === 201 ? "Created." : "Replaced the entry's definition (it was not called yet).");
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      if (!problem(error, null)) fieldError(fieldNamed(error.message), error.message);
      else fieldError(null, "The task was not created.");
    } finally {
      submit.disabled = false;
    }
  }

  // -- stats --------------------------------------------------------------------------------------------

  async function loadStats() {
    const minutes = Number($("stats-minutes").value);
    $("stats-title").textContent = minutes === 60 ? "Last hour" : `Last ${$("stats-minutes").selectedOptions[0].text}`;
    const plots = [...document.querySelectorAll("#view-stats .plot")];
    if (!app.features.stats) return noStats(plots, "This API does not serve /stats yet.");
    for (const plot of plots) if (!plot.firstChild) plot.classList.add("loading");
    try {
      const stats = (await api("GET", `/stats?minutes=${minutes}`)).data;
      if ($("view-stats").hidden) return;
      plots.forEach((plot) => plot.classList.remove("loading"));
      renderStats(stats);
    } catch (error) {
      if (error instanceof ApiError && error.status === 404) return noStats(plots, "The API answered 404 for /stats.");
      plots.forEach((plot) => plot.classList.remove("loading"));
      const shown = problem(error, loadStats);
      noStats(plots, shown ? "Stats could not be loaded." : error.message);
    }
  }

  function noStats(plots, why) {
    $("stats-summary").textContent = "No stats yet.";
    for (const plot of plots) {
      plot.classList.remove("loading");
      plot.replaceChildren(h("div", { class: "nodata" },
        h("p", {}, `${why} The charts appear once the dispatcher records per-minute stats.`)));
    }
  }

  function renderStats(stats) {
    const minutes = stats.minutes || [];
    const totals = Object.fromEntries(["calls", ...OUTCOMES].map((k) => [k, minutes.reduce((n, m) => n + (m[k] || 0), 0)]));
    $("stats-summary").textContent = `${totals.calls} calls from ${clockMinute.format(new Date(stats.from * 1000))} to `
      + `${clockMinute.format(new Date(stats.to * 1000))}: ${OUTCOMES.map((k) => `${totals[k]} ${k}`).join(", ")}.`;
    const [callsPlot, latePlot] = document.querySelectorAll("#view-stats .plot");
    drawChart(callsPlot, minutes, {
      stacked: OUTCOMES,
      label: (m) => `${OUTCOMES.map((k) => `${m[k] || 0} ${k}`).join(", ")}`,
      unit: "",
    });
    drawChart(latePlot, minutes, {
      lines: ["lateness_p50", "lateness_p99"],
      names: { lateness_p50: "p50", lateness_p99: "p99" },
      unit: " s",
    });
  }

  /** Steps of 1, 2 or 5 times a power of ten, so that about four grid lines cover [0, top]. */
  function ticks(top) {
    if (!(top > 0)) return [0, 1];
    const raw = top / 4;
    const power = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((f) => f * power).find((candidate) => candidate >= raw);
    const values = [];
    for (let v = 0; v < top + step / 2; v += step) values.push(Number(v.toPrecision(12)));
    if (values[values.length - 1] < top) values.push(values[values.length - 1] + step);
    return values;
  }

  function drawChart(plot, minutes, spec) {
    const width = Math.max(plot.clientWidth, 280);
    const height = plot.clientHeight || 240;
    const pad = { left: 44, right: 8, top: 8, bottom: 24 };
    const innerW = width - pad.left - pad.right;
    const innerH = height - pad.top - pad.bottom;
    const n = Math.max(minutes.length, 1);
    const slot = innerW / n;
    const valuesOf = (m) => (spec.stacked ? [spec.stacked.reduce((t, k) => t + (m[k] || 0), 0)] : spec.lines.map((k) => m[k]));
    const top = Math.max(0, ...minutes.flatMap(valuesOf).filter((v) => v !== null && v !== undefined));
    const grid = ticks(top);
    const max = grid[grid.length - 1];
    const y = (v) => pad.top + innerH - (v / max) * innerH;
    const x = (i) => pad.left + i * slot;
    const chart = s("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": plot.parentElement.querySelector("figcaption").textContent });
    chart.append(s("g", { class: "grid" }, grid.map((v) => s("line", { x1: pad.left, x2: width - pad.right, y1: y(v), y2: y(v) }))));
    chart.append(s("g", { class: "axis" }, grid.map((v) =>
      s("text", { x: pad.left - 6, y: y(v) + 4, "text-anchor": "end", text: `${v}${spec.unit}` }))));
    const every = [1, 5, 10, 15, 30, 60, 120, 180, 360].find((k) => n / k <= Math.max(2, Math.floor(innerW / 70))) || 360;
    const labels = s("g", { class: "axis" });
    minutes.forEach((m, i) => {
      if ((m.minute / 60) % every !== 0) return;
      labels.append(s("text", { x: x(i) + slot / 2, y: height - 6, "text-anchor": "middle", text: clockMinute.format(new Date(m.minute * 1000)) }));
    });
    chart.append(labels);
    if (spec.stacked) {
      const bars = s("g");
      minutes.forEach((m, i) => {
        let base = 0;
        const tip = `${clockMinute.format(new Date(m.minute * 1000))} (${utcText(m.minute)}): ${spec.label(m)}`;
        for (const k of spec.stacked) {
          const v = m[k] || 0;
          if (!v) continue;
          bars.append(s("rect", {
            class: `bar s-${k}`, x: x(i) + slot * 0.1, width: Math.max(slot * 0.8, 1), y: y(base + v), height: y(base) - y(base + v),
          }, s("title", { text: tip })));
          base += v;
        }
      });
      chart.append(bars);
    } else {
      for (const k of spec.lines) {
        let d = "";
        let pen = false;
        minutes.forEach((m, i) => {
          const v = m[k];
          if (v === null || v === undefined) {
            pen = false;
            return;
          }
          d += `${pen ? "L" : "M"}${(x(i) + slot / 2).toFixed(1)},${y(v).toFixed(1)}`;
          pen = true;
          chart.append(s("circle", { class: `s-${spec.names[k]}`, cx: x(i) + slot / 2, cy: y(v), r: 2.5 },
            s("title", { text: `${clockMinute.format(new Date(m.minute * 1000))} (${utcText(m.minute)}): ${spec.names[k]} ${v} s` })));
        });
        chart.append(s("path", { class: `line s-${spec.names[k]}`, d: d || "M0,0" }));
      }
    }
    const keys = spec.stacked || spec.lines;
    const legend = h("ul", { class: "legend" }, keys.map((k) => {
      const name = spec.names ? spec.names[k] : k;
      return h("li", {}, h("span", { class: `swatch s-${name}` }), name);
    }));
    const empty = !minutes.some((m) => valuesOf(m).some((v) => v));
    plot.replaceChildren(chart, ...(empty ? [h("div", { class: "nodata", text: "Nothing ran in this window." })] : []));
    const old = plot.parentElement.querySelector(".legend");
    if (old) old.replaceWith(legend);
    else plot.after(legend);
  }

  // -- schedules ----------------------------------------------------------------------------------------

  async function loadSchedules(reset) {
    const state = app.schedules;
    const body = $("schedules-body");
    const empty = $("schedules-empty");
    if (!app.features.schedules) {
      body.replaceChildren();
      empty.hidden = false;
      empty.textContent = "This API has no recurring schedules yet.";
      $("schedules-summary").textContent = " ";
      return;
    }
    if (reset) {
      state.rows = [];
      state.next = null;
      skeleton(body, 5, 4);
      empty.hidden = true;
    }
    try {
      const query = state.next ? `?start_from=${encodeURIComponent(state.next)}` : "";
      const page = (await api("GET", `/schedule/${query}`)).data;
      const rows = page.schedules || [];
      if (!state.rows.length) body.replaceChildren();
      body.append(...rows.map(scheduleRow));
      state.rows.push(...rows);
      state.next = page.next || null;
      $("schedules-summary").textContent = `${state.rows.length} schedule${state.rows.length === 1 ? "" : "s"}`;
      empty.hidden = state.rows.length > 0;
      empty.textContent = "No schedules yet.";
    } catch (error) {
      if (!state.rows.length) body.replaceChildren();
      empty.hidden = false;
      empty.textContent = problem(error, () => loadSchedules(true)) ? "Schedules could not be loaded." : error.message;
    } finally {
      $("schedules-more").hidden = !state.next;
    }
  }

  function scheduleRow(schedule) {
    const name = schedule.schedule_name || schedule.task_name || schedule.name;
    const runs = (schedule.next_runs || []).slice(0, 3);
    return h(
      "tr",
      {},
      h("td", { "data-label": "Schedule" }, h("a", { href: `#/entries?name=${encodeURIComponent(name)}`, text: name })),
      h("td", { "data-label": "State" }, badge(schedule.paused ? "paused" : "active")),
      h("td", { "data-label": "When", class: "mono", text: schedule.cron || (schedule.every ? `every ${schedule.every}` : "—") }),
      h("td", { "data-label": "Time zone", text: schedule.timezone || "UTC" }),
      h("td", { "data-label": "Next runs" }, runs.length ? runs.flatMap((run, i) => [i ? ", " : "", when(run)]) : "—"),
    );
  }

  // -- start ------------------------------------------------------------------------------------------

  function showAuth() {
    const text = { none: "local · no key needed", api_key: app.key ? "API key set for this tab" : "API key needed", iam: "IAM: signed requests only" };
    $("auth-state").textContent = text[app.auth];
    $("key-button").hidden = app.auth !== "api_key";
  }

  function showIam() {
    show("iam");
    document.querySelector(".top nav").hidden = true;
    const region = (/\.execute-api\.([a-z0-9-]+)\./.exec(location.hostname) || [])[1] || "<region>";
    $("iam-command").textContent = [
      `CALLME_DYNAMODB_ENDPOINT=https://dynamodb.${region}.amazonaws.com \\`,
      `CALLME_TABLE_NAME=<the stack's TasksTableName output> AWS_REGION=${region} \\`,
      "  .venv/bin/python -m local --no-ticks",
    ].join("\n");
  }

  async function boot() {
    clearProblem();
    let config;
    try {
      const response = await fetch(`${BASE}/console/config.json`, { cache: "no-store" });
      if (!response.ok) throw new ApiError(response.status, `${response.status} ${response.statusText}`);
      config = await response.json();
    } catch (error) {
      problem(error instanceof ApiError ? error : new ApiError(0, `cannot reach callme at ${location.origin}`), boot);
      return;
    }
    app.auth = config.auth;
    app.features = config.features;
    document.querySelector('nav a[data-view="schedules"]').hidden = !app.features.schedules;
    showAuth();
    if (app.auth === "iam") return showIam();
    route();
  }

  document.addEventListener("DOMContentLoaded", () => {
    $("filters").addEventListener("submit", applyFilters);
    $("more").addEventListener("click", () => loadEntries());
    $("schedules-more").addEventListener("click", () => loadSchedules(false));
    $("create").addEventListener("submit", create);
    $("key-form").addEventListener("submit", saveKey);
    $("key-button").addEventListener("click", () => askKey(""));
    $("key-dialog").addEventListener("close", () => {
      if (app.key) return;
      $("banner-text").textContent = "This API needs a key (x-api-key) before the console can show anything.";
      $("banner").hidden = false;
      app.lastRetry = () => askKey("");
    });
    $("confirm-no").addEventListener("click", () => $("confirm-dialog").close());
    $("stats-minutes").addEventListener("change", loadStats);
    $("banner-retry").addEventListener("click", () => {
      clearProblem();
      (app.lastRetry || route)();
    });
    window.addEventListener("hashchange", () => route(true));
    let resized = null;
    window.addEventListener("resize", () => {
      clearTimeout(resized);
      resized = setTimeout(() => {
        if (!$("view-stats").hidden && app.features.stats) loadStats();
      }, 200);
    });
    boot();
  });
})();
