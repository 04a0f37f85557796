// One row of the chunk loop in prelude.js (inserted twice there; `r` is the row index).
// Constants are the contract's (runtime::contract), copied to locals of `run`.
if ((r & tickMask) === 0) tick();
R = r;
try {
  if (proc(ctx) === false) status[r] = filtered;
} catch (e) {
  // Running out of memory is the engine's failure, not the row's. When even the error
  // object cannot be allocated, QuickJS throws null: Rust tells that from a script's own
  // `throw null` (a row error like any other thrown value) by the heap's size.
  if ((e === null && oom()) || (e instanceof Error && e.name === 'InternalError' && /out of memory/.test(e.message))) throw e;
  // Drop the routes of the failed row (they are the last entries).
  while (ROUTES.length > 0 && ROUTES[ROUTES.length - ROUTE_STRIDE] === r) ROUTES.length -= ROUTE_STRIDE;
  status[r] = failed;
  errors.push(r, e instanceof Error && e.feField !== undefined ? e.feField : null, describe(e));
}
