// One row of the chunk loop in prelude.js (inserted twice there; `r` is the row index).
if ((r & 15) === 0) TICK();
R = r;
EXCLUSIVE = false;
META = null;
const mark = ROUTES.length;
try {
  const ret = userProcess(context);
  status[r] = ret === false ? 1 : EXCLUSIVE ? 2 : 0;
} catch (e) {
  // Running out of memory is the engine's failure, not the row's. When even the error
  // object cannot be allocated, QuickJS throws null: Rust tells the two apart.
  if (e === null || (e instanceof Error && e.name === 'InternalError' && /out of memory/.test(e.message))) throw e;
  ROUTES.length = mark;
  status[r] = 3;
  errors.push(r, e instanceof Error && e.feField !== undefined ? e.feField : null, describe(e));
}
