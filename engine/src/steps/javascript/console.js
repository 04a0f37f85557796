// `console` for scripts: console.log / info / warn / error / debug / trace print to the
// step's log, as `utils.log` does, at the level of their name (`log` is info). Evaluated
// before the user's script, so top-level code can log too. `runtime.rs` replaces the
// contract marker (`__FE_` + `CONTRACT__`) with the contract's constants.
(function (log) {
  'use strict';
  __FE_CONTRACT__
  function text(v) {
    if (typeof v === 'string') return v;
    try {
      if (v instanceof Error) return v.name && v.name !== 'Error' ? `${v.name}: ${v.message}` : String(v.message);
      if (v !== null && typeof v === 'object') return JSON.stringify(v);
    } catch (_) {
      // A value whose description throws is still printed somehow.
    }
    return String(v);
  }
  function at(level) {
    return function () {
      log(level, Array.prototype.map.call(arguments, text).join(' '));
    };
  }
  const console = Object.freeze({
    log: at(LOG_LEVEL_OF.info),
    info: at(LOG_LEVEL_OF.info),
    warn: at(LOG_LEVEL_OF.warn),
    error: at(LOG_LEVEL_OF.error),
    debug: at(LOG_LEVEL_OF.debug),
    trace: at(LOG_LEVEL_OF.trace),
  });
  Object.defineProperty(globalThis, 'console', { value: console, writable: true, configurable: true, enumerable: false });
})
