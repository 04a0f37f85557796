// The context API of the original FlowEngine, and the chunk loop that drives `process`.
//
// Evaluated once per engine, after the user's script. `runtime.rs` replaces the `__FE_*__`
// markers with the contract's constants (from `runtime::contract`), code generated from
// the input schema (locals for the input columns, the statements that fill the reused row
// object) and `row.js` (one row's call of `process`), then calls the resulting factory with
// the native helpers and the schema description. The factory returns `run`, which Rust
// calls once per chunk, and a function giving the row being processed.
//
// Every value Rust and this file must agree on (row statuses, the layout of `run`'s result,
// the names of the native helpers and of `cfg`'s keys, log levels) is a constant of
// `runtime::contract`, declared at the top of the factory under the same name: write the
// name, never its value, here and in `row.js`.
//
// Speed: one JS call per chunk; one context object and one row object reused for every
// row; setField is one store into a per-column array, which Rust reads back directly.
(function (native, cfg) {
  'use strict';
  // Generated from runtime::contract (Rust); do not edit.
const EMIT = 0;
const FILTERED = 1;
const ROUTED_ONLY = 2;
const FAILED = 3;
const RESULT_STATUS = 0;
const RESULT_ERRORS = 1;
const RESULT_ROUTES = 2;
const RESULT_COLUMNS = 3;
const RESULT_LEN = 4;
const ERROR_STRIDE = 4;
const ROUTE_STRIDE = 2;
const RUNNER_RUN = 0;
const RUNNER_CURRENT_ROW = 1;
const RUNNER_TO_TEXT = 2;
const RUNNER_LEN = 3;
const CFG_OUTPUTS = "outputs";
const CFG_QUEUES = "queues";
const CFG_INPUTS = "inputs";
const INPUT_NAME = 0;
const INPUT_TYPE = 1;
const INPUT_REQUIRED = 2;
const BOOL_TRUE = 1;
const MASK_NULL = 1;
const TICK_MASK = 15;
const NATIVE_TICK = "tick";
const NATIVE_GUID = "guid";
const NATIVE_OUT_OF_MEMORY = "outOfMemory";
const NATIVE_LOG = "log";
const RUNNER_FILE = "<flowengine>";
const DEFAULT_LOG_LEVEL = "info";
const BOOL_TYPE = "bool";
const LOG_LEVEL_OF = Object.freeze(Object.assign(Object.create(null), {"critical":"fatal","debug":"debug","error":"error","fatal":"fatal","info":"info","information":"info","trace":"trace","warn":"warn","warning":"warn"}));

  const userProcess = globalThis.process;
  if (typeof userProcess !== 'function') {
    throw new TypeError('the script must define function process(context)');
  }
  const TICK = native[NATIVE_TICK];
  const OOM = native[NATIVE_OUT_OF_MEMORY];
  const GUID = native[NATIVE_GUID];
  const LOG = native[NATIVE_LOG];
  const OUT_NAMES = cfg[CFG_OUTPUTS];
  const QUEUES = cfg[CFG_QUEUES];
  const INPUTS = cfg[CFG_INPUTS];
  const F = OUT_NAMES.length;
  // One array per output field and chunk (index = row of the chunk), found by name in OIDX.
  // An unknown name falls through to OIDX's prototype, a proxy that throws: setField itself
  // checks nothing, which halves its cost in QuickJS. Rust reads the arrays back value by
  // value (cheaper than any per-value check in interpreted JS); a row that did not set the
  // field reads as undefined.
  const UNKNOWN = new Proxy(Object.create(null), {
    get(target, name) {
      throw fieldError(String(name), `'${String(name)}' is not a field of OutputSchema (fields: ${OUT_NAMES.join(', ')})`);
    },
  });
  const OIDX = Object.create(UNKNOWN);
  function freshColumn(i) {
    const a = [];
    Object.defineProperty(OIDX, OUT_NAMES[i], { value: a, writable: true, enumerable: true, configurable: true });
    return a;
  }
  const OUT = OUT_NAMES.map((name, i) => freshColumn(i));
  const QIDX = Object.create(null);
  for (let i = 0; i < QUEUES.length; i++) QIDX[QUEUES[i]] = i;
  const SCHEMA = Object.freeze({
    fields: Object.freeze(INPUTS.map((f) => Object.freeze({ name: f[INPUT_NAME], type: f[INPUT_TYPE], required: f[INPUT_REQUIRED] }))),
    fieldNames: Object.freeze(INPUTS.map((f) => f[INPUT_NAME])),
  });

  // The reused row: every input field exists from the start, so its shape never changes.
  const row = {};
  for (const f of INPUTS) row[f[INPUT_NAME]] = null;
  // For the column loop of wide inputs (see UNROLL_MAX_COLUMNS in runtime.rs).
  const IN_N = INPUTS.length;
  const IN_NAMES = INPUTS.map((f) => f[INPUT_NAME]);
  const IN_BOOL = INPUTS.map((f) => f[INPUT_TYPE] === BOOL_TYPE);

  // Flat [row, route, row, route, ...] (ROUTE_STRIDE entries a route); the route is the
  // queue's index for route.sendCopy and its bitwise NOT (~index, negative) for route.send,
  // which takes the row off the main output (contract::decode_route in runtime.rs).
  let ROUTES = null;
  let R = 0; // current row
  // addMetadata of row META_ROW (reset lazily: the row loop does not touch it).
  let META = null;
  let META_ROW = -1;

  function fieldError(field, message) {
    const e = new Error(message);
    e.feField = field;
    return e;
  }

  function queueIndex(q, what) {
    const i = QIDX[q];
    if (i === undefined) {
      const known = QUEUES.length ? QUEUES.join(', ') : 'none';
      throw new Error(`${what}: unknown queue '${q}' (queues of this step: ${known}; list dynamic names in Queues)`);
    }
    return i;
  }

  const input = {
    current() {
      return row;
    },
    getValue(name) {
      return row[name];
    },
    schema() {
      return SCHEMA;
    },
  };

  const output = {
    // `undefined` leaves the field unset (copied from the input field of the same name, or
    // null); `null` sets null. Setting a field twice in a row keeps the last value.
    setField(name, value) {
      OIDX[name][R] = value;
    },
    removeField(name) {
      OIDX[name][R] = null;
    },
    getField(name) {
      return Object.prototype.hasOwnProperty.call(OIDX, name) ? OIDX[name][R] : undefined;
    },
    addMetadata(key, value) {
      if (META_ROW !== R) {
        META = Object.create(null);
        META_ROW = R;
      }
      META[String(key)] = value;
    },
    getMetadata() {
      return META_ROW === R ? Object.assign({}, META) : {};
    },
  };

  const ruleCache = new Map();
  function evalRule(expr) {
    let fn = ruleCache.get(expr);
    if (fn === undefined) {
      // Non-strict body, so the row's fields are in scope by name: "age >= 18".
      fn = new Function('row', 'with (row) { return (' + expr + '); }');
      ruleCache.set(expr, fn);
    }
    return fn(row);
  }

  const validate = {
    required(names) {
      const list = Array.isArray(names) ? names : Array.prototype.slice.call(arguments);
      for (let i = 0; i < list.length; i++) {
        const v = row[list[i]];
        if (v === null || v === undefined || v === '') return false;
      }
      return true;
    },
    businessRule(rule) {
      if (typeof rule === 'function') return !!rule(row, context);
      if (typeof rule === 'string') return !!evalRule(rule);
      return !!rule;
    },
    custom(fn) {
      if (typeof fn !== 'function') throw new TypeError('validate.custom expects a function(row, context)');
      return !!fn(row, context);
    },
  };

  const route = {
    send(queue) {
      ROUTES.push(R, ~queueIndex(queue, 'route.send'));
    },
    sendCopy(queue) {
      ROUTES.push(R, queueIndex(queue, 'route.sendCopy'));
    },
  };

  // LOG_LEVEL_OF: every level name and alias (lower-case) to its canonical name.
  function levelOf(x) {
    return typeof x === 'string' ? LOG_LEVEL_OF[x.toLowerCase()] : undefined;
  }
  function text(v) {
    if (typeof v === 'string') return v;
    if (v instanceof Date) return isNaN(v) ? 'Invalid Date' : v.toISOString();
    if (v !== null && typeof v === 'object') {
      try {
        return JSON.stringify(v);
      } catch (e) {
        return String(v);
      }
    }
    return String(v);
  }
  function toDate(d) {
    if (d instanceof Date) return d;
    if (d === undefined || d === null) return new Date();
    return new Date(d);
  }
  function pad(n, w) {
    let s = String(n);
    while (s.length < w) s = '0' + s;
    return s;
  }
  // .NET-style tokens, in UTC: yyyy yy MM M dd d HH H hh h mm m ss s fff ff f tt; 'quoted'
  // text and any other character are copied.
  function formatDate(value, fmt) {
    const d = toDate(value);
    if (isNaN(d)) throw new RangeError(`formatDate: '${value}' is not a date`);
    if (fmt === undefined || fmt === null || fmt === '') return d.toISOString();
    const f = String(fmt);
    let out = '';
    let i = 0;
    while (i < f.length) {
      const c = f[i];
      if (c === "'" || c === '"') {
        const end = f.indexOf(c, i + 1);
        const stop = end < 0 ? f.length : end;
        out += f.slice(i + 1, stop);
        i = stop + 1;
        continue;
      }
      let j = i;
      while (j < f.length && f[j] === c) j++;
      const n = j - i;
      const h = d.getUTCHours();
      switch (c) {
        case 'y':
          out += n === 2 ? pad(d.getUTCFullYear() % 100, 2) : pad(d.getUTCFullYear(), n);
          break;
        case 'M':
          out += pad(d.getUTCMonth() + 1, n);
          break;
        case 'd':
          out += pad(d.getUTCDate(), n);
          break;
        case 'H':
          out += pad(h, n);
          break;
        case 'h':
          out += pad(h % 12 === 0 ? 12 : h % 12, n);
          break;
        case 'm':
          out += pad(d.getUTCMinutes(), n);
          break;
        case 's':
          out += pad(d.getUTCSeconds(), n);
          break;
        case 'f':
          out += pad(d.getUTCMilliseconds(), 3).slice(0, Math.min(n, 3));
          break;
        case 't':
          out += h < 12 ? 'AM' : 'PM';
          break;
        default:
          out += f.slice(i, j);
      }
      i = j;
    }
    return out;
  }

  const utils = {
    now() {
      return new Date();
    },
    newGuid() {
      return GUID();
    },
    formatDate,
    // Both argument orders: log(level, message) and log(message, level); otherwise every
    // argument is part of the message, at info level.
    log(a, b) {
      let level;
      let message;
      if (arguments.length === 2 && levelOf(a) !== undefined && levelOf(b) === undefined) {
        level = levelOf(a);
        message = text(b);
      } else if (arguments.length === 2 && levelOf(b) !== undefined) {
        level = levelOf(b);
        message = text(a);
      } else {
        level = DEFAULT_LOG_LEVEL;
        message = Array.prototype.map.call(arguments, text).join(' ');
      }
      LOG(level, message);
    },
  };

  const context = { input, output, validate, route, utils };

  // Describing a thrown value runs the script's code (getters, proxy traps, toString), which
  // may throw in turn: that must not escape the row loop and fail the whole chunk.
  function describe(e) {
    try {
      if (e instanceof Error) return e.name && e.name !== 'Error' ? `${e.name}: ${e.message}` : String(e.message);
      return 'uncaught ' + text(e);
    } catch (_) {
      return 'uncaught exception (describing the thrown value threw as well)';
    }
  }
  // Where the script threw, as `file:line:column`: the first stack frame outside the
  // engine's own code (QuickJS writes frames as `at name (file:line:column)`); '' when the
  // thrown value is not an Error or has no such frame.
  function locate(e) {
    try {
      if (!(e instanceof Error) || typeof e.stack !== 'string') return '';
      for (const l of e.stack.split('\n')) {
        const m = /^\s*at (?:[^(]* \()?(.+?):(\d+):(\d+)\)?\s*$/.exec(l);
        if (m && m[1] !== RUNNER_FILE) return `${m[1]}:${m[2]}:${m[3]}`;
      }
    } catch (_) {
      // A hostile `stack` getter: no location.
    }
    return '';
  }
  function fieldOf(e) {
    try {
      return e instanceof Error && typeof e.feField === 'string' ? e.feField : null;
    } catch (_) {
      return null;
    }
  }
  // Running out of memory is the engine's failure, not the row's. When even the error
  // object cannot be allocated, QuickJS throws null: Rust tells that from a script's own
  // `throw null` (a row error like any other thrown value) by the heap's size.
  function outOfMemory(e) {
    if (e === null) return OOM();
    try {
      return e instanceof Error && e.name === 'InternalError' && /out of memory/.test(e.message);
    } catch (_) {
      return false;
    }
  }

  // Row status: EMIT, FILTERED (process returned false) or FAILED (Rust turns emitted rows
  // with a route.send into ROUTED_ONLY).
  function run(cols, masks, n) {
    // Fresh arrays: one with holes may have left QuickJS's fast-array mode.
    for (let i = 0; i < F; i++) OUT[i] = freshColumn(i);
    ROUTES = [];
    // Zero-filled: every row starts as EMIT (runtime.rs asserts that EMIT is 0).
    const status = new Uint8Array(n);
    const errors = [];
    // Locals: cheaper than closure variables in the per-row code.
    const rw = row;
    const proc = userProcess;
    const ctx = context;
    const tick = TICK;
    const tickMask = TICK_MASK;
    const filtered = FILTERED;
    const failed = FAILED;
    const c0 = cols[0]; const m0 = masks[0];
const c1 = cols[1]; const m1 = masks[1];
const c2 = cols[2]; const m2 = masks[2];
const c3 = cols[3]; const m3 = masks[3];
const c4 = cols[4]; const m4 = masks[4];

    // Two copies of the loop: without null checks when no input column has a null in this
    // chunk (the usual case), and with them.
    if (m0 === null && m1 === null && m2 === null && m3 === null && m4 === null) {
      for (let r = 0; r < n; r++) {
        rw.id = c0[r];
rw.active = c1[r] === 1;
rw["first name"] = c2[r];
rw.amount = c3[r];
rw.born = c4[r];

        // One row of the chunk loop in prelude.js (inserted twice there; `r` is the row index).
// Constants are the contract's (runtime::contract), copied to locals of `run`.
if ((r & tickMask) === 0) tick();
R = r;
try {
  if (proc(ctx) === false) status[r] = filtered;
} catch (e) {
  // Running out of memory is the engine's failure, not the row's (see outOfMemory).
  if (outOfMemory(e)) throw e;
  // Drop the routes of the failed row (they are the last entries).
  while (ROUTES.length > 0 && ROUTES[ROUTES.length - ROUTE_STRIDE] === r) ROUTES.length -= ROUTE_STRIDE;
  status[r] = failed;
  errors.push(r, fieldOf(e), describe(e), locate(e));
}

      }
    } else {
      for (let r = 0; r < n; r++) {
        rw.id = m0 !== null && m0[r] === 1 ? null : c0[r];
rw.active = m1 !== null && m1[r] === 1 ? null : c1[r] === 1;
rw["first name"] = m2 !== null && m2[r] === 1 ? null : c2[r];
rw.amount = m3 !== null && m3[r] === 1 ? null : c3[r];
rw.born = m4 !== null && m4[r] === 1 ? null : c4[r];

        // One row of the chunk loop in prelude.js (inserted twice there; `r` is the row index).
// Constants are the contract's (runtime::contract), copied to locals of `run`.
if ((r & tickMask) === 0) tick();
R = r;
try {
  if (proc(ctx) === false) status[r] = filtered;
} catch (e) {
  // Running out of memory is the engine's failure, not the row's (see outOfMemory).
  if (outOfMemory(e)) throw e;
  // Drop the routes of the failed row (they are the last entries).
  while (ROUTES.length > 0 && ROUTES[ROUTES.length - ROUTE_STRIDE] === r) ROUTES.length -= ROUTE_STRIDE;
  status[r] = failed;
  errors.push(r, fieldOf(e), describe(e), locate(e));
}

      }
    }
    const packed = new Array(F);
    for (let i = 0; i < F; i++) packed[i] = OUT[i].length === 0 ? null : OUT[i];
    const result = new Array(RESULT_LEN);
    result[RESULT_STATUS] = status;
    result[RESULT_ERRORS] = errors;
    result[RESULT_ROUTES] = ROUTES;
    result[RESULT_COLUMNS] = packed;
    ROUTES = null;
    return result;
  }

  const runner = new Array(RUNNER_LEN);
  runner[RUNNER_RUN] = run;
  // The row being processed: names the row when a chunk fails as a whole (a timeout or
  // running out of memory).
  runner[RUNNER_CURRENT_ROW] = () => R;
  // The text of a value as JS prints it, for values Rust cannot read directly (dates,
  // objects, doubles into text fields).
  runner[RUNNER_TO_TEXT] = text;
  return runner;
})
