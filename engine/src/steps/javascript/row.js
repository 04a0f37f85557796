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
